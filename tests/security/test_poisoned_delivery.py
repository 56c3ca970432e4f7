"""One client's poisoned deliveries must not hold back another client's on the same partner URL.

The scenario of issue 20, against a real ``serve`` process and a real receiver: client X sends
8 updates that the partner's receiver refuses every time; client Y streams one update a second
to the same partner URL. Y's copies keep arriving within a second, and X's deliveries still
follow their own retry schedule to ``dead``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from dhan_postback.durations import parse_schedule
from tests.helpers.processes import serve_process
from tests.helpers.receivers import Received, RecordingReceiver, Reply
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.updates import new_client_id, update
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.timeout(300)

ADMIN_KEY = "poisoned-delivery-admin-key"
SCHEDULE = "0s,1s,2s,4s,8s"
"""Five attempts over at most 15 s, then dead: the whole schedule fits in the test."""
POISONED = 8
STREAM_SECONDS = 25


def test_poisoned_deliveries_do_not_delay_another_clients_partner_copies(
    tmp_path: Path,
) -> None:
    poisoner, healthy = new_client_id(), new_client_id()
    arrived: dict[str, float] = {}

    def plan(request: Received) -> Reply:
        if poisoner.encode() in request.body:
            return Reply(500, body=b"refused: this update cannot be stored")
        arrived.setdefault(request.webhook_id, request.arrived)
        return Reply()

    partner = RecordingReceiver(plan)
    port = free_port()
    with (
        UvicornThread(partner.app) as hooks,
        serve_process(tmp_path / "service.db", port, ADMIN_KEY, retry_schedule=SCHEDULE),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api,
    ):
        admin = {"admin-key": ADMIN_KEY}
        created = api.post(
            "/v2/partners",
            headers=admin,
            json={"partnerId": "platform", "postbackUrl": hooks.url + "/partner"},
        )
        assert created.status_code in (200, 201), created.text
        tokens = {
            client: api.post(
                "/v2/access-tokens",
                headers=admin,
                json={"dhanClientId": client, "partnerId": "platform"},
            ).json()["accessToken"]
            for client in (poisoner, healthy)
        }
        sent: dict[str, float] = {}
        streaming = threading.Thread(
            target=_stream, args=(api, tokens[healthy], healthy, sent), daemon=True
        )
        streaming.start()
        time.sleep(3)  # the healthy stream is flowing when the poison arrives
        poison = [update(poisoner, f"{poisoner}-{n}") for n in range(POISONED)]
        answer = api.post(
            "/v2/order-updates", headers={"access-token": tokens[poisoner]}, json=poison
        )
        assert answer.status_code == 202, answer.text
        poisoned_ids: list[str] = answer.json()["deliveryIds"]
        streaming.join()
        with contextlib.suppress(TimeoutError):  # generous, so a failure says how late
            asyncio.run(eventually(lambda: set(sent) <= set(arrived), timeout=60))
        late = [delivery_id for delivery_id in sent if delivery_id not in arrived]
        assert not late, f"{len(late)} of {len(sent)} healthy copies not there 60 s later"
        asyncio.run(eventually(lambda: _all_dead(api, poisoned_ids), timeout=60))
        histories = [_delivery(api, delivery_id) for delivery_id in poisoned_ids]

    latencies = sorted(arrived[delivery_id] - at for delivery_id, at in sent.items())
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
    print(f"healthy copies: {len(latencies)}, p99 {p99 * 1000:.0f} ms, max {latencies[-1]:.3f} s")
    assert len(latencies) == STREAM_SECONDS
    assert p99 < 1.0, latencies
    delays = parse_schedule(SCHEDULE)
    for history in histories:
        assert history["status"] == "dead"
        times = [datetime.fromisoformat(a["time"]).timestamp() for a in history["attempts"]]
        assert len(times) == len(delays)
        for number, (before, after) in enumerate(itertools.pairwise(times), start=1):
            assert after - before >= delays[number] / 2 - 0.05, (number, times)


def _stream(api: httpx.Client, token: str, client: str, sent: dict[str, float]) -> None:
    """One update a second for :data:`STREAM_SECONDS`; ``sent`` maps its id to the 202."""
    started = time.monotonic()
    for number in range(STREAM_SECONDS):
        time.sleep(max(0.0, started + number - time.monotonic()))
        body = update(client, f"{client}-{number % 5}", updateTime=f"2024-01-02 10:00:{number:02d}")
        answer = api.post("/v2/order-updates", headers={"access-token": token}, json=body)
        assert answer.status_code == 202, answer.text
        sent[answer.json()["deliveryIds"][0]] = time.monotonic()


def _delivery(api: httpx.Client, delivery_id: str) -> dict[str, Any]:
    answer = api.get(f"/v2/deliveries/{delivery_id}", headers={"admin-key": ADMIN_KEY})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _all_dead(api: httpx.Client, delivery_ids: list[str]) -> bool:
    return all(_delivery(api, delivery_id)["status"] == "dead" for delivery_id in delivery_ids)
