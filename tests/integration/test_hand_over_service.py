"""No claim on the hot path, over HTTP, with a real receiver, on SQLite and PostgreSQL.

A real service (uvicorn on loopback, its node sending the outbox) takes orders of several
updates through its API: the ingest's commit hands each new queue's head to the node's
dispatcher, each outcome's commit hands over the next update, so none of them is claimed;
and each order's updates arrive in the order they were ingested, each once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dhan_postback.service.store import Claim, Store, create_store
from tests.helpers.receivers import RecordingReceiver
from tests.helpers.servers import UvicornThread
from tests.helpers.service import running_service
from tests.helpers.updates import new_client_id, update
from tests.helpers.waiting import wait_until

ORDERS = 4
UPDATES_PER_ORDER = 4


@pytest.fixture
def claimed(service_db: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the claims of the service's store hand out (commits' hand-overs aside)."""
    store_class = type(create_store(service_db))  # (not opened: for its class)
    real_claim = store_class.claim
    handed_out: list[str] = []

    async def claim(self: Store, **kwargs: Any) -> list[Claim]:
        claims = await real_claim(self, **kwargs)
        handed_out.extend(claim.id for claim in claims)
        return claims

    monkeypatch.setattr(store_class, "claim", claim)
    return handed_out


@pytest.fixture
def receiver() -> Iterator[tuple[RecordingReceiver, str]]:
    recording = RecordingReceiver()
    with UvicornThread(recording.app) as server:
        yield recording, server.url


@pytest.mark.parametrize("requests", ["one request", "a request per update"])
def test_ingested_orders_go_in_order_and_none_is_claimed(
    service_db: str,
    tmp_path: Path,
    receiver: tuple[RecordingReceiver, str],
    claimed: list[str],
    requests: str,
) -> None:
    recording, url = receiver
    client = new_client_id()
    updates = [
        update(client, f"{client}-{order}", correlationId=f"{order}-{step}")
        for step in range(UPDATES_PER_ORDER)
        for order in range(ORDERS)
    ]
    with running_service(
        tmp_path, db=service_db, dispatch=True, retry_schedule="0s,50ms"
    ) as service:
        token = service.create_token(client, postback_url=f"{url}/hook")["accessToken"]
        if requests == "one request":
            ids = service.delivery_ids(token, updates)
        else:
            ids = [i for body in updates for i in service.delivery_ids(token, body)]
        wait_until(lambda: len(recording.accepted()) >= len(ids))

    arrived = recording.snapshot()
    assert sorted(r.webhook_id for r in arrived) == sorted(ids)  # each once
    assert claimed == []
    for order in range(ORDERS):
        steps = [
            json.loads(r.body)["correlationId"]
            for r in arrived
            if json.loads(r.body)["orderId"] == f"{client}-{order}"
        ]
        assert steps == [f"{order}-{step}" for step in range(UPDATES_PER_ORDER)]
