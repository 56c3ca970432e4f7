"""The whole way: broker websocket -> relay -> postback service (ingest, outbox, dispatcher)
-> the trader's receiver, every hop a real server on loopback.

What the trader sees is checked in the receiver: every update once, signed with the secret it
was given, each order's updates in the broker's order, each body exactly the postback the
relay should make of the frame.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dhan_postback.cli.serve import build_app
from dhan_postback.payload import OrderUpdate, dumps
from dhan_postback.relay import EmbeddedService, HttpIngest
from dhan_postback.service.registry import register_token
from dhan_postback.service.store import TokenRecord, create_store
from dhan_postback.settings import ServiceSettings
from dhan_postback.signing import generate_secret
from tests.helpers.broker import (
    DhanWsServer,
    alert_frame,
    docs_style_frame,
    expected_postback,
    individual_login,
)
from tests.helpers.relay import CLIENT_ID, TOKEN, Trader, relay_process, running_relay, stop_process
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.updates import simulated_updates
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.timeout(120)

UPDATES = simulated_updates(60, seed=21)
FAST = {"retry_schedule": "0s,50ms,100ms,200ms", "timeout": "2s", "allow_loopback": True}


def _frames(updates: list[OrderUpdate]) -> list[str]:
    """As the broker might send them, with a malformed frame and a foreign one mixed in."""
    frames = [
        docs_style_frame(u) if n % 5 == 0 else alert_frame(u, camel=n % 5 == 1)
        for n, u in enumerate(updates)
    ]
    frames.insert(7, "<html>502 Bad Gateway</html>")
    frames.insert(3, '{"Type":"LoginRsp","MsgCode":43}')
    return frames


def _by_order(bodies: list[bytes]) -> dict[str, list[bytes]]:
    orders: dict[str, list[bytes]] = defaultdict(list)
    for body in bodies:
        order_id = body.split(b'"orderId":"', 1)[1].split(b'"', 1)[0].decode()
        orders[order_id].append(body)
    return orders


def _assert_trader_saw_exactly(trader: Trader, updates: list[OrderUpdate]) -> None:
    expected = [dumps(expected_postback(u)) for u in updates]
    assert sorted(trader.bodies) == sorted(expected)  # each once, byte for byte
    assert _by_order(trader.bodies) == _by_order(expected)  # each order in the broker's order
    stats = trader.receiver.stats()
    assert stats.rejected == 0  # every signature verified
    assert stats.duplicates == 0


async def test_embedded_service_delivers_every_update_once_in_order_signed(
    tmp_path: Path,
) -> None:
    secret = generate_secret()
    trader = Trader(tmp_path, secret)
    broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN), resend=6, drop_after={20, 90, 150})
    broker.feed(_frames(UPDATES))
    settings = ServiceSettings(db=f"sqlite:///{tmp_path / 'outbox.db'}", **FAST)
    with trader.server:
        sink = EmbeddedService(trader.url, secret, settings=settings)
        async with broker, running_relay(broker.url, sink, tmp_path / "relay.db") as relay:
            await eventually(lambda: len(trader.bodies) >= len(UPDATES), timeout=60)
            status = relay.status()
    _assert_trader_saw_exactly(trader, UPDATES)
    assert (status.relayed, status.duplicates, status.dead_letters) == (len(UPDATES), 18, 1)


async def test_a_restarted_embedded_relay_resends_nothing_and_keeps_signing_the_same_way(
    tmp_path: Path,
) -> None:
    secret = generate_secret()
    trader = Trader(tmp_path, secret)
    settings = ServiceSettings(db=f"sqlite:///{tmp_path / 'outbox.db'}", **FAST)
    half = len(UPDATES) // 2
    with trader.server:
        for count in (half, len(UPDATES)):
            broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN))
            broker.feed(alert_frame(u) for u in UPDATES[:count])  # each run from the start
            sink = EmbeddedService(trader.url, secret, settings=settings)
            async with broker, running_relay(broker.url, sink, tmp_path / "relay.db") as relay:
                await eventually(lambda: len(trader.bodies) >= count, timeout=60)  # noqa: B023
                await eventually(lambda: relay.status().frames >= count)  # noqa: B023
    _assert_trader_saw_exactly(trader, UPDATES)
    assert relay.status().duplicates == half


async def test_a_running_service_delivers_what_the_relay_hands_it(tmp_path: Path) -> None:
    """The other sink: relay -> HTTP ingest of `serve`'s app (with its dispatcher)."""
    settings = ServiceSettings(
        db=f"sqlite:///{tmp_path / 'service.db'}", admin_key="admin-key-e2e-0123456789", **FAST
    )
    broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN), resend=4, drop_after={30})
    broker.feed(_frames(UPDATES))
    receiver_port = free_port()
    with UvicornThread(build_app(settings)) as service:
        postback_url = f"http://127.0.0.1:{receiver_port}/"
        created = await _create_token(service.url, postback_url)
        trader = Trader(tmp_path, created["signingSecret"], port=receiver_port)
        sink = HttpIngest(service.url, created["accessToken"])
        with trader.server:
            async with broker, running_relay(broker.url, sink, tmp_path / "relay.db"):
                await eventually(lambda: len(trader.bodies) >= len(UPDATES), timeout=60)
    _assert_trader_saw_exactly(trader, UPDATES)


async def _create_token(service_url: str, postback_url: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{service_url}/v2/access-tokens",
            json={"dhanClientId": CLIENT_ID, "postbackUrl": postback_url},
            headers={"admin-key": "admin-key-e2e-0123456789"},
        ) as response,
    ):
        assert response.status == 201, await response.text()
        created: dict[str, Any] = await response.json()
        return created


async def test_the_relay_command_with_an_embedded_service_reaches_the_receiver(
    tmp_path: Path,
) -> None:
    secret = generate_secret()
    trader = Trader(tmp_path, secret)
    broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN))
    broker.feed(alert_frame(u) for u in UPDATES[:25])
    with trader.server:
        async with broker:
            process = relay_process(trader, broker.url, tmp_path, "--reconcile-interval", "0")
            try:
                await eventually(lambda: len(trader.bodies) >= 25, timeout=60)
            finally:
                code = await stop_process(process)
    assert code == 0
    _assert_trader_saw_exactly(trader, UPDATES[:25])
    text = (tmp_path / "relay.log").read_text()
    assert "SANDBOX" in text and (tmp_path / "relay-outbox.db").exists()
    assert TOKEN not in text and secret not in text


async def test_an_embedded_service_given_another_secret_rotates_its_endpoint_to_it(
    tmp_path: Path,
) -> None:
    """The outbox remembers the endpoint an earlier run made with its secret; a run with a
    new secret rotates to it (the old one signs beside it for the grace period), so a
    receiver given only the new secret accepts every postback."""
    old, new = generate_secret(), generate_secret()
    trader = Trader(tmp_path, new)
    settings = ServiceSettings(db=f"sqlite:///{tmp_path / 'outbox.db'}", **FAST)
    store = create_store(settings.db)
    await store.open()
    try:
        earlier = TokenRecord("earlier-run", CLIENT_ID, trader.url, None, time.time(), 2e9)
        await register_token(store, earlier, old)
    finally:
        await store.close()
    bodies = [dumps(expected_postback(u)) for u in UPDATES[:12]]
    with trader.server:
        sink = EmbeddedService(trader.url, new, settings=settings)
        await sink.start()
        try:
            await sink.submit(bodies)
            await eventually(lambda: len(trader.bodies) >= len(bodies), timeout=60)
        finally:
            await sink.close()
    assert sorted(trader.bodies) == sorted(bodies)
    assert trader.receiver.stats().rejected == 0
    store = create_store(settings.db)
    await store.open()
    try:
        [endpoint] = await store.list_endpoints()
    finally:
        await store.close()
    assert endpoint.signing_secret == new
    assert endpoint.grace_secrets(time.time()) == (old,)
