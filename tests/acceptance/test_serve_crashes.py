"""``dhan-postback serve`` killed with SIGKILL again and again while updates stream in.

The promise under test: whatever the service acknowledged (202) reaches the receiver, each
order's updates arrive in the order they were submitted, and a re-send after a crash carries
the webhook-id of the earlier attempt. Batches whose 202 was lost to a kill are submitted again
after the restart (the only thing an order system can do); they may arrive twice, with new ids,
so the order check looks at the first arrival of each body.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from tests.helpers.processes import serve_process
from tests.helpers.receivers import RecordingReceiver, Reply, always
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.updates import simulated_bodies
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.timeout(240)

ADMIN_KEY = "crash-test-admin-key"
CLIENT_ID = "1100000888"
UPDATES = 5000
KILLS = 5
BATCH = 50
RETRIES = "0s,50ms,100ms,200ms,400ms,800ms,1s,2s"


def _order_id(body: bytes) -> bytes:
    return body.split(b'"orderId":"', 1)[1].split(b'"', 1)[0]


async def test_nothing_acknowledged_is_lost_across_five_kill_9s_during_a_stream(
    tmp_path: Path,
) -> None:
    bodies = simulated_bodies(1300, seed=11, client_id=CLIENT_ID)[:UPDATES]
    assert len(bodies) == UPDATES
    receiver = RecordingReceiver(always(Reply(delay=0.002)))
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    db = tmp_path / "service.db"
    server = serve_process(db, port, ADMIN_KEY, retry_schedule=RETRIES).start()
    acknowledged: dict[str, bytes] = {}
    kills = 0
    rng = random.Random(5)

    async def killer() -> None:
        nonlocal server, kills
        while kills < KILLS:
            await asyncio.sleep(rng.uniform(0.4, 1.2))
            server.kill()  # SIGKILL, at whatever moment this is
            kills += 1
            server = await asyncio.to_thread(
                serve_process(db, port, ADMIN_KEY, retry_schedule=RETRIES).start
            )

    try:
        with UvicornThread(receiver.app) as hooks:
            async with httpx.AsyncClient(base_url=api, timeout=10) as client:
                created = (
                    await client.post(
                        "/v2/access-tokens",
                        headers={"admin-key": ADMIN_KEY},
                        json={"dhanClientId": CLIENT_ID, "postbackUrl": hooks.url + "/hook"},
                    )
                ).json()
                token = {"access-token": created["accessToken"], "content-type": "application/json"}
                chaos = asyncio.create_task(killer())
                for start in range(0, UPDATES, BATCH):
                    batch = bodies[start : start + BATCH]
                    # Pace the stream so that the kills land while it flows.
                    await asyncio.sleep(0.03)
                    while True:  # until this batch is acknowledged
                        try:
                            reply = await client.post(
                                "/v2/order-updates",
                                content=b"[" + b",".join(batch) + b"]",
                                headers=token,
                            )
                        except httpx.TransportError:
                            await asyncio.sleep(0.1)
                            continue
                        assert reply.status_code == 202, reply.text
                        ids = reply.json()["deliveryIds"]
                        acknowledged.update(zip(ids, batch, strict=True))
                        break
                await chaos
                assert kills == KILLS

                def all_arrived() -> bool:
                    arrived = {r.webhook_id for r in receiver.snapshot()}
                    return set(acknowledged) <= arrived

                await eventually(all_arrived, timeout=120)
    finally:
        server.kill()

    requests = receiver.snapshot()
    # Every acknowledged delivery arrived, with the body it was acknowledged with.
    first = {r.webhook_id: r for r in reversed(requests)}
    for delivery_id, body in acknowledged.items():
        assert first[delivery_id].body == body
    # Every re-send repeats the id and the exact body of the earlier attempt.
    for request in requests:
        assert request.body == first[request.webhook_id].body
    assert len(requests) > len({r.webhook_id for r in requests}), "kills should cause re-sends"
    # Per order, the first arrival of each body follows submission order.
    submitted: dict[bytes, list[bytes]] = defaultdict(list)
    for body in bodies:
        submitted[_order_id(body)].append(body)
    seen: set[bytes] = set()
    arrived: dict[bytes, list[bytes]] = defaultdict(list)
    for request in receiver.first_arrivals():
        if request.body not in seen:
            seen.add(request.body)
            arrived[_order_id(request.body)].append(request.body)
    assert arrived == submitted
