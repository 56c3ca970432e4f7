"""How long a ``kill -9`` of a node delays delivery: at most one lease, 15 s in all.

The killed node's claims (POSTs under way, claims waiting in its lanes) are leased for the
default ``--lease`` of 10 s and renewed by its heartbeat while it lives; after the kill
nobody renews them, so they run out within one lease, and another node (PostgreSQL) or the
restarted node (SQLite) sends them. Each test streams 1,000 updates (200 orders, 5 each)
through the API to a receiver that takes 20 ms per answer, kills a node with SIGKILL while
it has POSTs under way, and measures the time from the kill to the arrival of the last
update not yet received:

* every update reaches the receiver;
* each order's updates arrive in order (a re-send may repeat one, never go back);
* the last one arrives within 15 s of the kill.

The measured times are printed (``pytest -s``).
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.helpers.processes import FAST_RETRIES, ServerProcess, serve_process
from tests.helpers.receivers import Received, RecordingReceiver, Reply, always
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.updates import order_updates
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ORDERS = 200
PER_ORDER = 5
UPDATES = ORDERS * PER_ORDER
BATCH = 100
ADMIN_KEY = "crash-recovery-admin-key"
CLIENT_ID = "1100000777"
RECOVERY_BOUND = 15.0
"""Seconds from the kill to the last update's arrival, as issue 19 asks."""


def position(request: Received) -> tuple[str, int]:
    """(orderId, its update's number): order_updates stamps update n at second n."""
    return _position(request.body)


@functools.cache
def _position(body: bytes) -> tuple[str, int]:
    update = msgspec.json.decode(body)
    return update["orderId"], int(update["updateTime"][-2:])


class Stream:
    """The stream's batches and what the receiver got of them."""

    def __init__(self, receiver: RecordingReceiver) -> None:
        bodies = order_updates(ORDERS, PER_ORDER, client_id=CLIENT_ID)
        self.batches = [
            b"[" + b",".join(bodies[start : start + BATCH]) + b"]"
            for start in range(0, UPDATES, BATCH)
        ]
        self.receiver = receiver

    def distinct(self) -> int:
        return len({position(request) for request in self.receiver.snapshot()})

    def last_new_arrival(self) -> float:
        """When the last update not received before arrived (``time.monotonic``)."""
        seen: set[tuple[str, int]] = set()
        last = 0.0
        for request in self.receiver.snapshot():
            if (key := position(request)) not in seen:
                seen.add(key)
                last = request.arrived
        return last

    def __str__(self) -> str:
        arrivals = len(self.receiver.snapshot())
        return f"{arrivals} POSTs for {self.distinct()} updates"

    def out_of_order(self) -> dict[str, list[int]]:
        numbers: defaultdict[str, list[int]] = defaultdict(list)
        for request in self.receiver.snapshot():
            order_id, number = position(request)
            numbers[order_id].append(number)
        return {order_id: seen for order_id, seen in numbers.items() if seen != sorted(seen)}


@pytest.fixture
def receiver() -> Iterator[tuple[RecordingReceiver, str]]:
    recorder = RecordingReceiver(always(Reply(delay=0.02)))
    with UvicornThread(recorder.app) as server:
        yield recorder, server.url + "/hook"


def token_headers(api: httpx.Client, hook_url: str) -> dict[str, str]:
    made = api.post(
        "/v2/access-tokens",
        headers={"admin-key": ADMIN_KEY},
        json={"dhanClientId": CLIENT_ID, "postbackUrl": hook_url},
    )
    assert made.status_code == 201, made.text
    return {"access-token": made.json()["accessToken"], "content-type": "application/json"}


def submit(api: httpx.Client, token: dict[str, str], batches: list[bytes]) -> None:
    for batch in batches:
        answer = api.post("/v2/order-updates", content=batch, headers=token)
        assert answer.status_code == 202, answer.text


def posts_under_way(metrics_url: str) -> float:
    """The ``dhan_postback_in_flight`` gauges of a node's /metrics, summed."""
    try:
        text = httpx.get(metrics_url, timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("dhan_postback_in_flight{")
    )


def kill_while_sending(stream: Stream, node: ServerProcess, metrics_url: str) -> float:
    """SIGKILL ``node`` once a tenth of the stream arrived and it has POSTs under way; the
    time of the kill (``time.monotonic``)."""
    wait_until(lambda: stream.distinct() >= UPDATES // 10, 60, "the first deliveries")
    wait_until(lambda: posts_under_way(metrics_url) > 0, 30, "POSTs under way on the node")
    killed_at = time.monotonic()
    node.kill()
    return killed_at


@pytest.mark.postgres
def test_a_worker_killed_mid_stream_costs_at_most_15_s_on_postgresql(
    pg_url: str, receiver: tuple[RecordingReceiver, str], tmp_path: Path
) -> None:
    recorder, hook_url = receiver
    stream = Stream(recorder)
    port, worker_port = free_port(), free_port()
    env = {"DHAN_POSTBACK_RETRY_SCHEDULE": FAST_RETRIES}  # the default lease: 10 s
    serve = ServerProcess(
        [
            *("serve", "--db", pg_url, "--admin-key", ADMIN_KEY),
            *("--allow-loopback", "--port", str(port)),
        ],
        env=env,
        health_url=f"http://127.0.0.1:{port}/healthz",
        log_path=tmp_path / "serve.log",
    )
    worker = ServerProcess(
        ["worker", "--db", pg_url, "--allow-loopback", "--port", str(worker_port)],
        env=env,
        health_url=f"http://127.0.0.1:{worker_port}/healthz",
        log_path=tmp_path / "worker.log",
    )
    half = len(stream.batches) // 2
    with serve, worker, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
        token = token_headers(api, hook_url)
        submit(api, token, stream.batches[:half])
        killed_at = kill_while_sending(stream, worker, f"http://127.0.0.1:{worker_port}/metrics")
        submit(api, token, stream.batches[half:])
        wait_until(lambda: stream.distinct() == UPDATES, 60, "every update delivered")

    recovery = stream.last_new_arrival() - killed_at
    print(f"\nPostgreSQL, worker killed: {recovery:.2f} s to the last update, {stream}")
    assert stream.out_of_order() == {}
    assert recovery <= RECOVERY_BOUND


def test_a_sqlite_node_killed_and_restarted_mid_stream_costs_at_most_15_s(
    receiver: tuple[RecordingReceiver, str], tmp_path: Path
) -> None:
    recorder, hook_url = receiver
    stream = Stream(recorder)
    port = free_port()
    db = tmp_path / "service.db"

    def node() -> ServerProcess:  # with the defaults, not the helper's quicker settings
        flags = ["--lease", "10s", "--timeout", "5s", "--max-in-flight-per-url", "16"]
        return serve_process(db, port, ADMIN_KEY, flags=flags, log_path=tmp_path / "serve.log")

    first = node().start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            token = token_headers(api, hook_url)
            submit(api, token, stream.batches)
            killed_at = kill_while_sending(stream, first, f"http://127.0.0.1:{port}/metrics")
        with node():
            wait_until(lambda: stream.distinct() == UPDATES, 60, "every update delivered")
    finally:
        first.kill()

    recovery = stream.last_new_arrival() - killed_at
    print(f"\nSQLite, node killed and restarted: {recovery:.2f} s to the last update, {stream}")
    assert stream.out_of_order() == {}
    assert recovery <= RECOVERY_BOUND
