"""Fault injection: a websocket that keeps dropping must not cost or double a single update."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from dhan_postback.payload import OrderUpdate
from dhan_postback.relay import HttpIngest, change_key
from tests.helpers.broker import (
    DhanWsServer,
    IngestRecorder,
    alert_frame,
    docs_style_frame,
    expected_postback,
    individual_login,
)
from tests.helpers.relay import CLIENT_ID, TOKEN, running_relay
from tests.helpers.servers import UvicornThread
from tests.helpers.updates import simulated_updates
from tests.helpers.waiting import eventually


def _by_order(updates: list[OrderUpdate]) -> dict[str, list[OrderUpdate]]:
    orders: dict[str, list[OrderUpdate]] = defaultdict(list)
    for update in updates:
        orders[update.order_id].append(update)
    return orders


async def test_twenty_abrupt_disconnects_during_2000_updates_lose_none_and_double_none(
    tmp_path: Path,
) -> None:
    rng = random.Random(20)
    updates = simulated_updates(520, seed=11)[:2000]
    assert len(updates) == 2000
    frames = []
    for update in updates:
        style = rng.randrange(4)
        if style == 3:
            frames.append(docs_style_frame(update))
        else:
            frames.append(alert_frame(update, camel=style == 1, title_status=style == 2))
    drops = set(rng.sample(range(50, 1950), 20))
    expected = [expected_postback(u) for u in updates]

    ingest = IngestRecorder()
    broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN), resend=8, drop_after=drops)
    broker.feed(frames)
    with UvicornThread(ingest.app) as service:
        sink = HttpIngest(service.url, ingest.token)
        async with broker, running_relay(broker.url, sink, tmp_path / "relay.db") as relay:
            await eventually(lambda: len(ingest.received) >= len(expected), timeout=60)
            await eventually(lambda: relay.status().duplicates == 20 * 8)

    assert broker.drops == 20 and len(broker.logins) == 21
    assert len(ingest.received) == len(expected)
    assert len({change_key(u) for u in ingest.received}) == len(expected)  # no duplicate
    assert _by_order(ingest.received) == _by_order(expected)  # per-order order kept
    assert ingest.received == expected  # and the broker's overall order too
