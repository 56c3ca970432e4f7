"""An endpoint that fails 30 % of requests keeps flowing: its breaker must not stall it.

A real ``serve`` process delivers 1,283 simulated updates to the bundled receiver behind
:class:`~dhan_postback.chaos.ChaosMiddleware`, which fails 30 % of POSTs with 5xx answers,
answers lost after storing, time-outs, dropped connections and 429s. Every update must be
stored, in order for each order, within 60 seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from pathlib import Path

import httpx
import msgspec
import pytest

from dhan_postback.chaos import FAULTS, ChaosMiddleware
from dhan_postback.receiver import Receiver
from tests.helpers.processes import serve_process
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.updates import new_client_id, simulated_bodies
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.timeout(180)

ADMIN_KEY = "degraded-endpoint-admin-key"
UPDATES = 1283
SCHEDULE = "0s,50ms,100ms,200ms,400ms,800ms,1s,1s,2s,2s,3s,3s,5s,5s"
"""The demo's quick schedule: 14 attempts, so 30 % chaos never exhausts one."""


def test_a_thirty_percent_faulty_receiver_gets_every_update_in_order_within_a_minute(
    tmp_path: Path,
) -> None:
    client = new_client_id()
    bodies = simulated_bodies(400, seed=20, client_id=client)[:UPDATES]
    assert len(bodies) == UPDATES
    receiver = Receiver(db=tmp_path / "receiver.db")
    chaos = ChaosMiddleware(receiver, rate=0.3, hold=0.8, seed=20)
    port = free_port()
    flags = ["--timeout", "500ms", "--max-in-flight-per-url", "16"]
    with (
        UvicornThread(chaos, log_level="critical") as hooks,  # no traceback per chaos reset
        serve_process(
            tmp_path / "service.db",
            port,
            ADMIN_KEY,
            retry_schedule=SCHEDULE,
            flags=flags,
            log_path=tmp_path / "serve.log",
        ),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as api,
    ):
        token = api.post(
            "/v2/access-tokens",
            headers={"admin-key": ADMIN_KEY},
            json={"dhanClientId": client, "postbackUrl": hooks.url + "/"},
        ).json()["accessToken"]
        started = time.monotonic()
        for start in range(0, UPDATES, 500):
            answer = api.post(
                "/v2/order-updates",
                headers={"access-token": token, "content-type": "application/json"},
                content=b"[" + b",".join(bodies[start : start + 500]) + b"]",
            )
            assert answer.status_code == 202, answer.text
        with contextlib.suppress(TimeoutError):  # generous, so a failure says how far it got
            asyncio.run(eventually(lambda: receiver.store.counts().updates >= UPDATES, timeout=120))
        took = time.monotonic() - started
        stored = receiver.store.history_all()

    print(f"{len(stored)} updates stored in {took:.1f} s; chaos injected {dict(chaos.injected)}")
    assert len(stored) == UPDATES and took < 60, (len(stored), took)
    assert set(chaos.injected) == set(FAULTS)
    sent: dict[str, list[bytes]] = defaultdict(list)
    for body in bodies:
        sent[msgspec.json.decode(body)["orderId"]].append(body)
    received: dict[str, list[bytes]] = defaultdict(list)
    for row in stored:
        received[row.order_id].append(row.body)
    assert received == sent
