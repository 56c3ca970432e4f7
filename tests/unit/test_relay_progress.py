"""Whether an update is newer than the last state the relay took for its order."""

from __future__ import annotations

import pytest

from dhan_postback.payload import OrderStatus, OrderUpdate
from dhan_postback.relay import OrderState, Verdict, compare
from tests.helpers.updates import simulated_updates

UPDATES = simulated_updates(6)
OPEN = next(u for u in UPDATES if u.order_status is OrderStatus.PENDING and u.filled_qty == 0)
LAST = OrderState.of(OPEN)


def test_an_order_never_seen_is_newer() -> None:
    assert compare(OPEN, None) is Verdict.NEWER


def test_the_same_state_is_the_same_whatever_else_the_body_says() -> None:
    from_the_book = OPEN.replace(bo_profit_value=3.0, oms_error_code="X", algo_id="7")
    assert compare(from_the_book, LAST) is Verdict.SAME


@pytest.mark.parametrize(
    "change",
    [
        {"update_time": "2099-01-01 00:00:00"},
        {"order_status": OrderStatus.TRADED, "filled_qty": 1},
        {"filled_qty": 1},
        {"price": 99.5},
        {"quantity": 1000},
        {"trigger_price": 4.0},
    ],
    ids=["later", "further-status", "more-fills", "price", "quantity", "trigger"],
)
def test_a_change_of_time_status_fills_quantity_or_price_is_newer(
    change: dict[str, object],
) -> None:
    assert compare(OPEN.replace(**change), LAST) is Verdict.NEWER


@pytest.mark.parametrize(
    "change",
    [
        {"update_time": "2000-01-01 00:00:00"},
        {"order_status": OrderStatus.TRANSIT},
    ],
    ids=["earlier", "status-back"],
)
def test_an_update_that_would_move_the_order_back_is_older(change: dict[str, object]) -> None:
    assert compare(OPEN.replace(**change), LAST) is Verdict.OLDER


def test_fewer_fills_are_older_even_at_a_later_time() -> None:
    filled = OrderState.of(OPEN.replace(filled_qty=5))
    later = OPEN.replace(filled_qty=3, update_time="2099-01-01 00:00:00")
    assert compare(later, filled) is Verdict.OLDER


@pytest.mark.parametrize("status", [OrderStatus.CANCELLED, OrderStatus.TRADED])
def test_nothing_follows_a_terminal_state(status: OrderStatus) -> None:
    done = OPEN.replace(order_status=status, filled_qty=OPEN.quantity * (status == "TRADED"))
    later: OrderUpdate = done.replace(update_time="2099-01-01 00:00:00", price=1.0)
    assert compare(later, OrderState.of(done)) is Verdict.OLDER
