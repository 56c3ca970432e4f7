"""The relay feeding the real postback service (its strict ingest, its SQLite outbox)."""

from __future__ import annotations

import random
from pathlib import Path

from dhan_postback.payload import dumps
from dhan_postback.relay import HttpIngest, Login
from dhan_postback.service.store import DeliveryQuery, create_store
from dhan_postback.simulator import Simulator, interleave
from tests.helpers.broker import (
    DhanWsServer,
    alert_frame,
    docs_style_frame,
    expected_postback,
    individual_login,
    partner_login,
)
from tests.helpers.relay import CLIENT_ID, TOKEN, running_relay
from tests.helpers.service import running_service
from tests.helpers.updates import simulated_updates
from tests.helpers.waiting import eventually

UPDATES = simulated_updates(40, seed=4)


async def _outbox(db: str) -> list[bytes]:
    """Every payload the service's outbox holds, oldest first."""
    store = create_store(db)
    await store.open()
    try:
        found = await store.list_deliveries(DeliveryQuery(limit=100_000, newest_first=False))
    finally:
        await store.close()
    return [delivery.payload for delivery in found]


async def test_the_service_commits_every_relayed_update_once_in_order_byte_for_byte(
    tmp_path: Path,
) -> None:
    frames = [
        docs_style_frame(u) if n % 3 == 0 else alert_frame(u, camel=n % 3 == 1)
        for n, u in enumerate(UPDATES)
    ]
    broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN), resend=5, drop_after={10, 60})
    broker.feed(frames)
    with running_service(tmp_path) as service:
        token = service.create_token(CLIENT_ID)["accessToken"]
        sink = HttpIngest(service.url, token)
        async with broker, running_relay(broker.url, sink, tmp_path / "relay.db") as relay:
            await eventually(lambda: relay.status().relayed == len(UPDATES))
            await eventually(lambda: relay.status().duplicates == 10)
        assert service.commits
    assert await _outbox(service.db) == [dumps(expected_postback(u)) for u in UPDATES]
    assert relay.status().dead_letters == 0


async def test_with_a_partner_login_other_clients_updates_are_dead_lettered_not_blocking(
    tmp_path: Path,
) -> None:
    other = "1000000002"
    simulator = Simulator(seed=9, clients=[CLIENT_ID, other])
    updates = interleave(simulator.orders(30), random.Random(9))
    broker = DhanWsServer(partner_login("partner-1", "partner-secret"))
    broker.feed(alert_frame(u) for u in updates)
    mine = [u for u in updates if u.dhan_client_id == CLIENT_ID]
    theirs = len(updates) - len(mine)
    assert mine and theirs
    with running_service(tmp_path) as service:
        token = service.create_token(CLIENT_ID)["accessToken"]
        sink = HttpIngest(service.url, token)
        login = Login.partner("partner-1", "partner-secret")
        async with (
            broker,
            running_relay(broker.url, sink, tmp_path / "relay.db", login=login) as relay,
        ):
            await eventually(lambda: relay.status().relayed == len(mine))
            await eventually(lambda: relay.status().refused == theirs)
    assert await _outbox(service.db) == [dumps(expected_postback(u)) for u in mine]
