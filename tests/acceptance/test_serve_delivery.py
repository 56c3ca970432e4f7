"""The whole service as a process: ingest over HTTP, kill -9 mid-delivery, restart, all arrive."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks

from tests.helpers.processes import serve_process
from tests.helpers.receivers import RecordingReceiver, Reply, always
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.updates import simulated_bodies
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.timeout(120)

ADMIN_KEY = "delivery-test-admin-key"
CLIENT_ID = "1100000777"


def delivered_count(api: str) -> int:
    count, params = 0, {"status": "delivered", "limit": "1000"}
    while True:
        page = httpx.get(f"{api}/v2/deliveries", params=params, headers={"admin-key": ADMIN_KEY})
        body: dict[str, Any] = page.json()
        count += len(body["deliveries"])
        if body["nextCursor"] is None:
            return count
        params["cursor"] = body["nextCursor"]


async def test_updates_acknowledged_by_the_service_all_arrive_across_a_kill_9(
    tmp_path: Path,
) -> None:
    receiver = RecordingReceiver(always(Reply(delay=0.1)))  # the kill lands with POSTs under way
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    bodies = simulated_bodies(60, seed=5, client_id=CLIENT_ID)
    with UvicornThread(receiver.app) as hooks:
        first = serve_process(tmp_path / "service.db", port, ADMIN_KEY).start()
        try:
            created = httpx.post(
                f"{api}/v2/access-tokens",
                headers={"admin-key": ADMIN_KEY},
                json={"dhanClientId": CLIENT_ID, "postbackUrl": hooks.url + "/hook"},
            ).json()
            ingest = httpx.post(
                f"{api}/v2/order-updates",
                content=b"[" + b",".join(bodies) + b"]",
                headers={
                    "access-token": created["accessToken"],
                    "content-type": "application/json",
                },
                timeout=30,
            )
            assert ingest.status_code == 202, ingest.text
            ids: list[str] = ingest.json()["deliveryIds"]
            await eventually(lambda: len(receiver.snapshot()) >= 40, timeout=30)
        finally:
            first.kill()  # SIGKILL

        with serve_process(tmp_path / "service.db", port, ADMIN_KEY):
            await eventually(lambda: delivered_count(api) == len(ids), timeout=60)

    requests = receiver.snapshot()
    assert {r.webhook_id for r in requests} == set(ids)
    assert any(len(receiver.arrivals_of(i)) > 1 for i in ids)  # resent after the kill
    assert sorted(r.body for r in receiver.first_arrivals()) == sorted(bodies)
    verifier = standardwebhooks.Webhook(created["signingSecret"])
    for request in requests:
        verifier.verify(request.body, dict(request.headers))
    # The updates of each order arrived in the order they were ingested.
    order_of = dict(zip(ids, bodies, strict=True))
    sent: dict[bytes, list[str]] = defaultdict(list)
    arrived: dict[bytes, list[str]] = defaultdict(list)
    for delivery_id in ids:
        sent[_order_id(order_of[delivery_id])].append(delivery_id)
    for request in receiver.first_arrivals():
        arrived[_order_id(request.body)].append(request.webhook_id)
    assert arrived == sent


def _order_id(body: bytes) -> bytes:
    return body.split(b'"orderId":"', 1)[1].split(b'"', 1)[0]
