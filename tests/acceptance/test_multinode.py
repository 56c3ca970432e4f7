"""Several nodes on one PostgreSQL outbox, one of them killed mid-stream.

One ``dhan-postback serve`` and two ``dhan-postback worker`` processes share a database; 10,000
order updates (2,000 orders, 5 updates each, interleaved) are streamed in through the API while
a receiver on loopback records every POST. Halfway through, one worker is killed with SIGKILL.
Then:

* every update reaches the receiver, and the outbox has nothing pending and nothing dead;
* each order's updates arrive in order (a re-send may repeat the last one, never go back);
* an update that arrives twice is a re-send of one delivery: same ``webhook-id``.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from dhan_postback.payload import (
    OrderStatus,
    OrderUpdate,
    dumps,
)
from tests.helpers.processes import ServerProcess
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.updates import limit_buy

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ORDERS = 2_000
LIFECYCLE = [  # (status, filled quantity) of each update of one order, in order
    (OrderStatus.TRANSIT, 0),
    (OrderStatus.PENDING, 0),
    (OrderStatus.PENDING, 1),
    (OrderStatus.PENDING, 2),
    (OrderStatus.TRADED, 4),
]
UPDATES = ORDERS * len(LIFECYCLE)
BATCH = 500
CLIENT = "1100000001"
ADMIN_KEY = "multinode-admin-key"
DEADLINE = 90.0  # seconds for the whole stream to be delivered


class RecordingReceiver:
    """A bare ASGI receiver: answers 200 to every POST and remembers what came, in order."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, str, int]] = []  # (webhook-id, orderId, position)
        self._lock = threading.Lock()

    def distinct(self) -> int:
        with self._lock:
            return len({(order, position) for _, order, position in self.arrivals})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        update = msgspec.json.decode(body)
        webhook_id = dict(scope["headers"]).get(b"webhook-id", b"").decode()
        with self._lock:
            self.arrivals.append((webhook_id, update["orderId"], int(update["correlationId"])))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def update(order_id: str, position: int) -> OrderUpdate:
    """Update number ``position`` of an order; ``correlationId`` carries the number."""
    status, filled = LIFECYCLE[position]
    stamp = f"2025-01-06 10:{position:02d}:00"
    return limit_buy(
        dhan_client_id=CLIENT,
        order_id=order_id,
        correlation_id=str(position),
        order_status=status,
        quantity=4,
        price=3900.0,
        create_time="2025-01-06 10:00:00",
        update_time=stamp,
        exchange_time=stamp,
        filled_qty=filled,
    )


def stream_bodies(seed: int = 11) -> list[bytes]:
    """The whole stream as request bodies: orders interleaved at random, each in order."""
    picks = [n for n in range(ORDERS) for _ in LIFECYCLE]
    random.Random(seed).shuffle(picks)
    next_position: defaultdict[int, int] = defaultdict(int)
    updates = []
    for n in picks:
        updates.append(dumps(update(f"52{n:010d}", next_position[n])))
        next_position[n] += 1
    return [
        b"[" + b",".join(updates[start : start + BATCH]) + b"]"
        for start in range(0, len(updates), BATCH)
    ]


@pytest.fixture
def receiver() -> Iterator[tuple[RecordingReceiver, str]]:
    app = RecordingReceiver()
    with UvicornThread(app) as server:
        yield app, f"{server.url}/hook"


def wait_until(condition: Any, timeout: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(
                f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
                for log in sorted(logs.glob("*.log"))
            )
            pytest.fail(f"{what} did not happen within {timeout}s\n{tails}")
        time.sleep(0.1)


def test_two_workers_and_a_server_deliver_everything_in_order_through_a_worker_crash(
    pg_url: str, receiver: tuple[RecordingReceiver, str], tmp_path: Path
) -> None:
    app, hook_url = receiver
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "DHAN_POSTBACK_LEASE": "4s",  # a killed worker's claims come back after this
        "DHAN_POSTBACK_TIMEOUT": "2s",
        "DHAN_POSTBACK_RETRY_SCHEDULE": "0s,50ms,100ms,200ms,500ms,1s,1s,1s,1s,1s,1s,1s",
    }
    serve = ServerProcess(
        [
            *("serve", "--db", pg_url, "--admin-key", ADMIN_KEY),
            *("--allow-loopback", "--port", str(port)),
        ],
        env=env,
        health_url=f"{base}/healthz",
        log_path=tmp_path / "serve.log",
    )
    workers = [
        ServerProcess(
            ["worker", "--db", pg_url, "--allow-loopback"],
            env=env,
            log_path=tmp_path / f"worker-{n}.log",
        )
        for n in (1, 2)
    ]
    bodies = stream_bodies()
    with serve, workers[0], workers[1], httpx.Client(base_url=base, timeout=30) as api:
        made = api.post(
            "/v2/access-tokens",
            headers={"admin-key": ADMIN_KEY},
            json={"dhanClientId": CLIENT, "postbackUrl": hook_url},
        )
        assert made.status_code == 201, made.text
        token = {"access-token": made.json()["accessToken"]}

        for number, body in enumerate(bodies):
            if number == len(bodies) // 2:
                started = lambda: app.distinct() >= UPDATES // 10  # noqa: E731
                wait_until(started, 30, "the first deliveries", tmp_path)
                workers[0].kill(signal.SIGKILL)
            answer = api.post(
                "/v2/order-updates",
                content=body,
                headers={**token, "content-type": "application/json"},
            )
            assert answer.status_code == 202, answer.text

        wait_until(lambda: app.distinct() == UPDATES, DEADLINE, "every delivery", tmp_path)

        def outbox_settled() -> bool:
            pending = api.get(
                "/v2/deliveries", params={"status": "pending", "limit": 1}, headers=token
            )
            return pending.status_code == 200 and pending.json()["deliveries"] == []

        wait_until(outbox_settled, 30, "an empty outbox", tmp_path)
        dead = api.get("/v2/deliveries", params={"status": "dead"}, headers=token)
        assert dead.json()["deliveries"] == []

    positions: defaultdict[str, list[int]] = defaultdict(list)
    first_id: dict[tuple[str, int], str] = {}
    resent_with_another_id = []
    for webhook_id, order_id, position in app.arrivals:
        positions[order_id].append(position)
        known = first_id.setdefault((order_id, position), webhook_id)
        if known != webhook_id:
            resent_with_another_id.append((order_id, position, known, webhook_id))

    assert len(positions) == ORDERS
    out_of_order = {order_id: seen for order_id, seen in positions.items() if seen != sorted(seen)}
    assert out_of_order == {}
    assert all(set(seen) == set(range(len(LIFECYCLE))) for seen in positions.values())
    assert resent_with_another_id == []
