"""The ``relay`` command against a fake broker that serves the websocket and the REST order
book (kept consistent with what it streams), delivering to a real receiver: what happens while
the websocket is down reaches the receiver from the order book, once, never backwards; an
expired token stops the relay with status 3; a rate-limited book is waited out.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dhan_postback.lifecycle import order_key
from dhan_postback.payload import OrderStatus, OrderUpdate
from dhan_postback.relay import OrderState
from dhan_postback.signing import generate_secret
from tests.helpers.broker import FakeBroker
from tests.helpers.processes import ServerProcess
from tests.helpers.relay import CLIENT_ID, TOKEN, Trader, relay_process, stop_process, wait_for_exit
from tests.helpers.updates import simulated_updates
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.timeout(180)

UPDATES = simulated_updates(60, seed=17)
BEFORE, AWAY, AFTER = UPDATES[:80], UPDATES[80:130], UPDATES[130:]

Key = tuple[str, str | None]
_decode = msgspec.json.Decoder(OrderUpdate).decode


def _received(trader: Trader) -> list[OrderUpdate]:
    return [_decode(body) for body in list(trader.bodies)]


def _latest(updates: list[OrderUpdate]) -> dict[Key, OrderState]:
    return {order_key(u): OrderState.of(u) for u in updates}


def _caught_up(trader: Trader, broker: FakeBroker) -> bool:
    return _latest(_received(trader)) == _latest(list(broker.book.values()))


@pytest.fixture
def trader(tmp_path: Path) -> Iterator[Trader]:
    """A receiver at the Postback URL, serving for the whole test."""
    trader = Trader(tmp_path, generate_secret())
    with trader.server:
        yield trader


@pytest.fixture
async def broker(trader: Trader) -> AsyncIterator[FakeBroker]:
    """The broker of :data:`CLIENT_ID`, its websocket and order book; it stops before the
    ``trader`` does (so nothing it relayed is cut off on the receiving side). A test that checks
    how its connections closed opens its own, to stop it before the asserts."""
    async with FakeBroker(CLIENT_ID, TOKEN) as broker:
        yield broker


def _relay(trader: Trader, broker: FakeBroker, tmp_path: Path, *flags: str) -> ServerProcess:
    return relay_process(trader, broker.ws_url, tmp_path, "--api-url", broker.api_url, *flags)


async def _go_away_and_change(broker: FakeBroker, updates: list[OrderUpdate]) -> None:
    """Cut the relay off, change ``updates`` in the book (their frames are lost), and let it
    back in once it has been turned away at least once."""
    broker.ws.away = True
    broker.ws.drop()
    broker.change(updates, stream=False)
    await eventually(lambda: broker.ws.turned_away >= 1)
    broker.ws.away = False


def _events(tmp_path: Path) -> list[dict[str, Any]]:
    events = []
    for line in (tmp_path / "relay.log").read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events


def _summary(tmp_path: Path) -> dict[str, Any]:
    return next(e for e in _events(tmp_path) if e["event"] == "relay.summary")


async def test_orders_changed_while_the_relay_is_away_reach_the_receiver_once_in_order(
    tmp_path: Path, trader: Trader, capsys: pytest.CaptureFixture[str]
) -> None:
    seen_before = {order_key(u) for u in BEFORE}
    assert any(order_key(u) not in seen_before for u in AWAY)  # new orders
    assert any(u.order_status is OrderStatus.CANCELLED for u in AWAY)  # cancels
    assert any(u.filled_qty > 0 for u in AWAY)  # fills
    async with FakeBroker(CLIENT_ID, TOKEN) as broker:  # stopped before the asserts
        process = _relay(trader, broker, tmp_path, "--reconcile-interval", "1h")
        try:
            await eventually(lambda: len(broker.book_requests) == 1, timeout=30)
            broker.change(BEFORE)
            await eventually(lambda: _caught_up(trader, broker), timeout=60)
            live_before = len(trader.bodies)
            await _go_away_and_change(broker, AWAY)
            await eventually(lambda: _caught_up(trader, broker), timeout=60)
            from_the_book = len(trader.bodies) - live_before
            broker.change(AFTER)
            await eventually(lambda: _caught_up(trader, broker), timeout=60)
        finally:
            code = await stop_process(process)
    received = _received(trader)
    states = [(order_key(u), OrderState.of(u)) for u in received]
    duplicates = sum(n - 1 for n in Counter(states).values())
    out_of_order = 0
    for key, history in broker.history.items():
        true_states = [OrderState.of(u) for u in history]
        positions = [true_states.index(state) for k, state in states if k == key]
        out_of_order += sum(1 for a, b in itertools.pairwise(positions) if b <= a)
        assert positions[-1] == len(true_states) - 1  # the order's final state arrived
    with capsys.disabled():
        print(
            f"\nrelay away: changes while away {len(AWAY)}, postbacks received {len(received)} "
            f"({from_the_book} from the order book), duplicates {duplicates}, "
            f"out of order {out_of_order}"
        )
    assert code == 0
    assert (duplicates, out_of_order) == (0, 0)
    assert from_the_book == len({order_key(u) for u in AWAY})  # each order's latest state once
    assert len(received) == len(BEFORE) + from_the_book + len(AFTER)
    assert broker.ws.close_codes[-1] == 1000
    summary = _summary(tmp_path)
    assert summary["reconciled"] == from_the_book and summary["duplicates"] == 0


async def test_a_book_row_and_a_late_frame_for_the_same_state_are_relayed_once(
    tmp_path: Path,
    trader: Trader,
    broker: FakeBroker,
) -> None:
    order = [u for u in UPDATES if order_key(u) == order_key(UPDATES[0])]
    assert len(order) >= 4
    opened, older, latest, after = order[0], order[1], order[2], order[3]
    process = _relay(trader, broker, tmp_path, "--reconcile-interval", "1h")
    try:
        await eventually(lambda: len(broker.book_requests) == 1, timeout=30)
        broker.change([opened])
        await eventually(lambda: _caught_up(trader, broker), timeout=30)
        await _go_away_and_change(broker, [older, latest])
        await eventually(lambda: _caught_up(trader, broker), timeout=30)
        broker.send_frame_only(older)  # late, and older than what was relayed
        broker.send_frame_only(latest)  # late, the state the book already gave
        broker.change([after])
        await eventually(lambda: _caught_up(trader, broker), timeout=30)
    finally:
        code = await stop_process(process)
    assert code == 0
    assert [OrderState.of(u) for u in _received(trader)] == [
        OrderState.of(u) for u in (opened, latest, after)
    ]
    summary = _summary(tmp_path)
    assert (summary["reconciled"], summary["duplicates"], summary["stale"]) == (1, 1, 1)


async def test_a_change_lost_without_a_disconnect_is_found_by_the_next_reconciliation(
    tmp_path: Path,
    trader: Trader,
    broker: FakeBroker,
) -> None:
    process = _relay(trader, broker, tmp_path, "--reconcile-interval", "200ms")
    try:
        broker.change(UPDATES[:5])
        await eventually(lambda: _caught_up(trader, broker), timeout=30)
        broker.change(UPDATES[5:8], stream=False)
        await eventually(lambda: _caught_up(trader, broker), timeout=30)
    finally:
        code = await stop_process(process)
    assert code == 0
    assert broker.ws.connections == 1


async def test_reconcile_interval_0_never_reads_the_order_book(
    tmp_path: Path, trader: Trader, broker: FakeBroker
) -> None:
    process = _relay(trader, broker, tmp_path, "--reconcile-interval", "0")
    try:
        broker.change(UPDATES[:5])
        await eventually(lambda: _caught_up(trader, broker), timeout=30)
    finally:
        code = await stop_process(process)
    assert code == 0
    assert broker.book_requests == []


def _the_error_line(tmp_path: Path) -> str:
    text = (tmp_path / "relay.log").read_text()
    assert TOKEN not in text
    (line,) = [line for line in text.splitlines() if line.startswith("Error:")]
    return line


async def test_an_expired_token_at_login_exits_3_saying_how_to_pass_a_new_one(
    tmp_path: Path,
    trader: Trader,
    broker: FakeBroker,
) -> None:
    await broker.expire_token()
    process = _relay(trader, broker, tmp_path)
    code = await wait_for_exit(process)
    assert code == 3
    line = _the_error_line(tmp_path)
    assert f"refused the access token of client {CLIENT_ID}" in line
    assert "--access-token or DHAN_POSTBACK_RELAY_ACCESS_TOKEN" in line
    assert len(broker.ws.bad_logins) <= 1  # not redialled forever


async def test_a_token_the_order_book_refuses_mid_session_exits_3(
    tmp_path: Path, trader: Trader
) -> None:
    async with FakeBroker(CLIENT_ID, TOKEN) as broker:  # stopped before the asserts
        process = _relay(trader, broker, tmp_path, "--reconcile-interval", "200ms")
        try:
            broker.change(UPDATES[:5])
            await eventually(lambda: _caught_up(trader, broker), timeout=30)
            await broker.expire_token(websocket=False)
            code = await wait_for_exit(process)
        finally:
            process.kill()
    assert code == 3
    line = _the_error_line(tmp_path)
    assert "HTTP 401 DH-901" in line and "--access-token" in line
    assert broker.ws.close_codes == [1000]


async def test_a_websocket_that_refuses_the_login_again_mid_session_exits_3(
    tmp_path: Path,
    trader: Trader,
    broker: FakeBroker,
) -> None:
    process = _relay(trader, broker, tmp_path, "--reconcile-interval", "1h")
    try:
        broker.change(UPDATES[:5])
        await eventually(lambda: _caught_up(trader, broker), timeout=30)
        await broker.expire_token()
        code = await wait_for_exit(process)
    finally:
        process.kill()
    assert code == 3
    assert "refused the access token" in _the_error_line(tmp_path)
    assert len(broker.ws.bad_logins) == 1  # one refused login is enough: no redial loop


async def test_a_rate_limited_order_book_is_waited_out(
    tmp_path: Path, trader: Trader, broker: FakeBroker
) -> None:
    broker.change(UPDATES[:10], stream=False)  # happened before the relay started
    broker.rate_limit(2)
    process = _relay(trader, broker, tmp_path, "--reconcile-interval", "1h")
    try:
        await eventually(lambda: _caught_up(trader, broker), timeout=60)
    finally:
        code = await stop_process(process)
    assert code == 0
    first, second, third = broker.book_requests[:3]
    assert second - first >= 1.0 and third - second >= 1.0  # Retry-After honoured
    retries = [e for e in _events(tmp_path) if e["event"] == "relay.orderbook.retry"]
    assert len(retries) == 2 and "DH-904" in retries[0]["reason"]
    assert len(trader.bodies) == len(_latest(UPDATES[:10]))
