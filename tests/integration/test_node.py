"""The service node: one object that opens the store, runs the dispatcher, and answers what
the API, the dashboard and the commands ask of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dhan_postback.errors import StoreUnavailable, URLRefused
from dhan_postback.service.node import ServiceNode
from dhan_postback.service.store.memory import MemoryStore
from tests.helpers.dispatching import fast_settings
from tests.helpers.outbox import Outbox
from tests.helpers.receivers import RecordingReceiver, Reply
from tests.helpers.servers import UvicornThread
from tests.helpers.updates import order_updates
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.timeout(60)


async def test_endpoint_health_is_the_dispatchers_live_view_of_a_failing_url() -> None:
    store = MemoryStore()
    receiver = RecordingReceiver(lambda request: Reply(500))
    settings = fast_settings(breaker_min_attempts=2, breaker_cooldown=30.0)
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        await outbox.add(server.url + "/hook", order_updates(3, 1))
        async with ServiceNode(settings, store=store) as node:
            url = server.url + "/hook"
            await eventually(
                lambda: any(h.url == url and h.breaker == "open" for h in node.endpoint_health())
            )
    assert node.endpoint_health() == []  # stopped: no dispatcher, no live view


async def test_a_database_that_cannot_be_opened_is_one_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    db = f"sqlite:///{tmp_path / 'a-file' / 'service.db'}"
    node = ServiceNode(fast_settings(db=db))
    with pytest.raises(StoreUnavailable, match="cannot open the database sqlite:///"):
        await node.start()
    assert not node.running and node.dispatcher is None


async def test_a_store_handed_in_stays_open_for_its_owner() -> None:
    store = MemoryStore()
    async with ServiceNode(fast_settings(), store=store, dispatch=False) as node:
        assert node.store is store
    await store.ping()
    with pytest.raises(StoreUnavailable, match="not running"):
        _ = node.store


async def test_a_token_made_elsewhere_is_registered_once_through_the_registry() -> None:
    async with ServiceNode(fast_settings(), dispatch=False, store=MemoryStore()) as node:
        made = {
            "dhan_client_id": "1000000001",
            "postback_url": "http://127.0.0.1:8999/hook",
            "signing_secret": "whsec_" + "A" * 32,
            "lifetime": 3600.0,
        }
        assert await node.ensure_token("relay_x", **made)
        assert await node.ensure_token("relay_x", **made)
        principal = await node.authenticate(admin_key=None, access_token="relay_x")
        assert principal.dhan_client_id == "1000000001"


async def test_a_token_made_elsewhere_meets_the_url_policy() -> None:
    settings = fast_settings(allow_loopback=False)
    async with ServiceNode(settings, dispatch=False, store=MemoryStore()) as node:
        with pytest.raises(URLRefused):
            await node.ensure_token(
                "relay_y",
                dhan_client_id="1000000001",
                postback_url="http://127.0.0.1:8999/hook",
                signing_secret="whsec_" + "A" * 32,
                lifetime=3600.0,
            )
