from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhan_postback import errors, lifecycle
from dhan_postback.lifecycle import ChangeKind, Violation
from dhan_postback.payload import (
    LegName,
    OrderStatus,
    OrderType,
    OrderUpdate,
    ProductType,
    TransactionType,
    Validity,
)
from tests.helpers.updates import limit_buy

T0 = "2025-01-15 10:00:00"
T1 = "2025-01-15 10:00:01"
T2 = "2025-01-15 10:05:00"

TERMINAL = ("TRADED", "CANCELLED", "EXPIRED", "REJECTED")


def snapshot(**changes: Any) -> OrderUpdate:
    base = limit_buy(
        dhan_client_id="1000000001",
        order_id="1225011512345",
        order_status=OrderStatus.PENDING,
        product_type=ProductType.INTRADAY,
        trading_symbol="RELIANCE",
        security_id="2885",
        quantity=10,
        price=1270.05,
        create_time=T0,
        update_time=T0,
        exchange_time=T0,
    )
    return base.replace(**changes)


# --------------------------------------------------------------------------------------------
# Statuses as strings.


def test_status_ranks_run_transit_pending_part_traded_terminal() -> None:
    ranks = [lifecycle.status_rank(s) for s in ("TRANSIT", "PENDING", "PART_TRADED", "TRADED")]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == 4


def test_every_terminal_status_has_the_same_top_rank() -> None:
    assert {lifecycle.status_rank(status) for status in TERMINAL} == {3}


def test_pending_with_fills_ranks_as_part_traded() -> None:
    assert lifecycle.status_rank("PENDING", filled_qty=3) == lifecycle.status_rank("PART_TRADED")
    assert lifecycle.status_rank("PENDING", filled_qty=0) < lifecycle.status_rank("PART_TRADED")


def test_an_unknown_status_ranks_as_open_and_is_not_terminal() -> None:
    assert lifecycle.status_rank("TRIGGERED") == lifecycle.status_rank("PENDING")
    assert not lifecycle.is_terminal("TRIGGERED")
    assert not lifecycle.is_known_status("TRIGGERED")


@pytest.mark.parametrize("status", TERMINAL)
def test_terminal_statuses_are_terminal(status: str) -> None:
    assert lifecycle.is_terminal(status)


@pytest.mark.parametrize("status", ["TRANSIT", "PENDING", "PART_TRADED"])
def test_open_statuses_are_not_terminal(status: str) -> None:
    assert not lifecycle.is_terminal(status)


def test_status_helpers_ignore_case_and_spaces() -> None:
    assert lifecycle.is_terminal(" Cancelled ")
    assert lifecycle.is_known_status("part_traded")
    assert lifecycle.status_rank("transit") == 0


def test_progress_key_prefers_later_time_then_further_status_then_more_fills() -> None:
    key = lifecycle.progress_key
    assert key(T1, "TRANSIT", 0) > key(T0, "TRADED", 10)
    assert key(T0, "PENDING", 0) > key(T0, "TRANSIT", 0)
    assert key(T0, "PENDING", 5) > key(T0, "PENDING", 2)
    assert key(T0, "TRADED", 10) > key(T0, "PENDING", 9)


# --------------------------------------------------------------------------------------------
# What counts as a change.


def test_a_first_snapshot_is_new() -> None:
    assert lifecycle.change_kind(None, snapshot()) is ChangeKind.NEW


def test_a_new_status_is_a_status_change() -> None:
    before = snapshot(order_status=OrderStatus.TRANSIT)
    assert lifecycle.change_kind(before, snapshot(update_time=T1)) is ChangeKind.STATUS


def test_a_status_change_that_also_fills_is_a_status_change() -> None:
    done = snapshot(order_status=OrderStatus.TRADED, filled_qty=10, update_time=T1)
    assert lifecycle.change_kind(snapshot(), done) is ChangeKind.STATUS


def test_a_rising_filled_qty_with_the_same_status_is_a_partial_fill() -> None:
    assert lifecycle.change_kind(snapshot(), snapshot(filled_qty=4)) is ChangeKind.PARTIAL_FILL


@pytest.mark.parametrize(
    "change",
    [
        {"price": 1271.0},
        {"quantity": 20},
        {"trigger_price": 1260.0},
        {"disclosed_quantity": 3},
        {"order_type": OrderType.MARKET, "price": 0.0},
        {"validity": Validity.IOC},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_changed_term_is_a_modification(change: dict[str, Any]) -> None:
    modified = snapshot(update_time=T1, **change)
    assert lifecycle.change_kind(snapshot(), modified) is ChangeKind.MODIFICATION


def test_an_identical_snapshot_is_no_change() -> None:
    assert lifecycle.change_kind(snapshot(), snapshot()) is None


def test_a_snapshot_differing_only_in_update_time_is_no_change() -> None:
    assert lifecycle.change_kind(snapshot(), snapshot(update_time=T2)) is None


# --------------------------------------------------------------------------------------------
# Legal transitions.


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"order_status": OrderStatus.TRANSIT}, {}),
        ({"order_status": OrderStatus.TRANSIT}, {"order_status": OrderStatus.REJECTED}),
        (
            {"order_status": OrderStatus.TRANSIT},
            {"order_status": OrderStatus.TRADED, "filled_qty": 10},
        ),
        ({}, {"order_status": OrderStatus.TRADED, "filled_qty": 10}),
        ({}, {"order_status": OrderStatus.CANCELLED}),
        ({}, {"order_status": OrderStatus.EXPIRED}),
        ({}, {"order_status": OrderStatus.REJECTED}),
        ({"filled_qty": 4}, {"order_status": OrderStatus.CANCELLED, "filled_qty": 4}),
        ({"filled_qty": 4}, {"order_status": OrderStatus.EXPIRED, "filled_qty": 4}),
        ({"filled_qty": 4}, {"filled_qty": 7}),
        ({"filled_qty": 4}, {"filled_qty": 4, "price": 1268.0}),
    ],
    ids=[
        "transit-pending",
        "transit-rejected",
        "transit-traded",
        "pending-traded",
        "pending-cancelled",
        "pending-expired",
        "pending-rejected",
        "partly-filled-cancelled",
        "partly-filled-expired",
        "partial-fill",
        "modification-after-partial-fill",
    ],
)
def test_legal_transitions_pass(before: dict[str, Any], after: dict[str, Any]) -> None:
    previous = snapshot(**before)
    current = snapshot(update_time=T1, **after)
    assert lifecycle.check_transition(previous, current) is not None


def test_a_modification_keeps_the_status() -> None:
    kind = lifecycle.check_transition(snapshot(), snapshot(update_time=T1, price=1265.0))
    assert kind is ChangeKind.MODIFICATION


def test_a_repeat_of_a_terminal_snapshot_is_allowed_and_is_no_change() -> None:
    done = snapshot(order_status=OrderStatus.CANCELLED)
    assert lifecycle.check_transition(done, done) is None
    assert lifecycle.check_transition(done, done.replace(update_time=T1)) is None


def test_the_first_snapshot_is_checked_on_its_own() -> None:
    assert lifecycle.check_transition(None, snapshot()) is ChangeKind.NEW
    with pytest.raises(errors.IllegalTransition):
        lifecycle.check_transition(None, snapshot(update_time="2025-01-15 09:00:00"))


def test_bracket_legs_are_separate_lifecycles_sharing_one_order_id() -> None:
    entry = snapshot(product_type=ProductType.BO, leg_name=LegName.ENTRY_LEG)
    traded = entry.replace(order_status=OrderStatus.TRADED, filled_qty=10, update_time=T1)
    target = entry.replace(
        leg_name=LegName.TARGET_LEG,
        transaction_type=TransactionType.SELL,
        create_time=T1,
        update_time=T1,
    )
    kinds = lifecycle.check_sequence([entry, traded, target])
    assert kinds == [ChangeKind.NEW, ChangeKind.STATUS, ChangeKind.NEW]
    assert lifecycle.order_key(target) == (entry.order_id, LegName.TARGET_LEG)


# --------------------------------------------------------------------------------------------
# Illegal transitions: one test per rule.


def refused(previous: OrderUpdate, current: OrderUpdate) -> errors.IllegalTransition:
    with pytest.raises(errors.IllegalTransition) as caught:
        lifecycle.check_transition(previous, current)
    return caught.value


def test_status_going_back_is_refused() -> None:
    error = refused(snapshot(), snapshot(order_status=OrderStatus.TRANSIT, update_time=T1))
    assert error.rule == Violation.STATUS_BACKWARDS
    assert error.field == "orderStatus"
    assert "PENDING" in error.message and "TRANSIT" in error.message


def test_part_traded_going_back_to_an_unfilled_pending_is_refused() -> None:
    # PENDING with fills ranks as PART_TRADED; losing the fills is a decrease first.
    error = refused(snapshot(filled_qty=5), snapshot(filled_qty=0, update_time=T1))
    assert error.rule == Violation.FILLED_DECREASED


@pytest.mark.parametrize("terminal", TERMINAL)
def test_a_change_after_a_terminal_status_is_refused(terminal: str) -> None:
    filled = 10 if terminal == "TRADED" else 0
    done = snapshot(order_status=OrderStatus(terminal), filled_qty=filled)
    error = refused(done, done.replace(update_time=T1, price=1300.0))
    assert error.rule == Violation.AFTER_TERMINAL


def test_one_terminal_status_cannot_become_another() -> None:
    cancelled = snapshot(order_status=OrderStatus.CANCELLED)
    traded = snapshot(order_status=OrderStatus.TRADED, filled_qty=10, update_time=T1)
    assert refused(cancelled, traded).rule == Violation.AFTER_TERMINAL


def test_filled_qty_decreasing_is_refused() -> None:
    error = refused(snapshot(filled_qty=6), snapshot(filled_qty=4, update_time=T1))
    assert error.rule == Violation.FILLED_DECREASED
    assert error.field == "filled_qty"


def test_filled_qty_above_quantity_is_refused() -> None:
    error = refused(snapshot(filled_qty=6), snapshot(filled_qty=6, quantity=5, update_time=T1))
    assert error.rule == Violation.FILLED_ABOVE_QUANTITY


def test_update_time_going_back_is_refused() -> None:
    error = refused(snapshot(update_time=T2), snapshot(update_time=T1, filled_qty=2))
    assert error.rule == Violation.TIME_BACKWARDS
    assert error.field == "updateTime"


def test_create_time_changing_is_refused() -> None:
    error = refused(snapshot(), snapshot(create_time=T1, update_time=T1))
    assert error.rule == Violation.CREATE_TIME_CHANGED
    assert error.field == "createTime"


@pytest.mark.parametrize(
    ("attribute", "value", "wire"),
    [
        ("security_id", "11536", "securityId"),
        ("transaction_type", TransactionType.SELL, "transactionType"),
        ("dhan_client_id", "1000000002", "dhanClientId"),
        ("product_type", ProductType.CNC, "productType"),
        ("after_market_order", True, "afterMarketOrder"),
    ],
)
def test_fields_fixed_at_placement_cannot_change(attribute: str, value: Any, wire: str) -> None:
    error = refused(snapshot(), snapshot(update_time=T1, **{attribute: value}))
    assert error.rule == Violation.IDENTITY_CHANGED
    assert error.field == wire


@pytest.mark.parametrize(
    "other", [{"order_id": "9925011599999"}, {"leg_name": LegName.TARGET_LEG}], ids=str
)
def test_a_snapshot_of_another_order_or_leg_is_refused(other: dict[str, Any]) -> None:
    assert refused(snapshot(), snapshot(update_time=T1, **other)).rule == Violation.DIFFERENT_ORDER


def test_created_after_updated_is_refused() -> None:
    error = refused(snapshot(), snapshot(update_time="2025-01-15 09:59:59"))
    assert error.rule == Violation.CREATED_AFTER_UPDATED


def test_traded_without_the_whole_quantity_filled_is_refused() -> None:
    error = refused(snapshot(), snapshot(order_status=OrderStatus.TRADED, filled_qty=9))
    assert error.rule == Violation.TRADED_NOT_FILLED


def test_rejected_after_a_fill_is_refused() -> None:
    partly = snapshot(filled_qty=3)
    error = refused(partly, snapshot(order_status=OrderStatus.REJECTED, filled_qty=3))
    assert error.rule == Violation.REJECTED_AFTER_FILL


def test_an_illegal_transition_is_a_400_input_error_in_the_brokers_shape() -> None:
    error = refused(snapshot(), snapshot(order_status=OrderStatus.TRANSIT, update_time=T1))
    assert isinstance(error, errors.InvalidUpdate)
    assert error.http_status == 400
    assert errors.error_body(error)["errorCode"] == "DH-905"


def test_check_sequence_stops_at_the_first_illegal_update() -> None:
    good = [snapshot(order_status=OrderStatus.TRANSIT), snapshot(update_time=T1)]
    with pytest.raises(errors.IllegalTransition, match="went back"):
        lifecycle.check_sequence(
            [*good, snapshot(order_status=OrderStatus.TRANSIT, update_time=T2)]
        )


# --------------------------------------------------------------------------------------------
# Properties.

STATUS_PATH = ("TRANSIT", "PENDING", "TRADED")


@st.composite
def forward_lifecycles(draw: st.DrawFn) -> list[OrderUpdate]:
    """A random lifecycle that only ever moves forward."""
    quantity = draw(st.integers(min_value=1, max_value=50))
    steps = draw(st.integers(min_value=1, max_value=8))
    updates = [snapshot(order_status=OrderStatus.TRANSIT, quantity=quantity, filled_qty=0)]
    for second in range(1, steps + 1):
        previous = updates[-1]
        filled = draw(st.integers(min_value=previous.filled_qty, max_value=quantity - 1))
        updates.append(
            previous.replace(
                order_status=OrderStatus.PENDING,
                filled_qty=filled,
                price=previous.price + draw(st.sampled_from((0.0, 0.05))),
                update_time=f"2025-01-15 10:00:{second:02d}",
            )
        )
    end = draw(st.sampled_from(TERMINAL))
    last = updates[-1]
    filled = quantity if end == "TRADED" else (0 if end == "REJECTED" else last.filled_qty)
    if end != "REJECTED" or last.filled_qty == 0:
        updates.append(
            last.replace(
                order_status=OrderStatus(end), filled_qty=filled, update_time="2025-01-15 10:01:00"
            )
        )
    return updates


@settings(max_examples=60, deadline=None)
@given(forward_lifecycles())
def test_any_forward_lifecycle_is_legal(updates: list[OrderUpdate]) -> None:
    lifecycle.check_sequence(updates)


@settings(max_examples=60, deadline=None)
@given(forward_lifecycles(), st.data())
def test_replaying_an_earlier_different_snapshot_is_refused(
    updates: list[OrderUpdate], data: st.DataObject
) -> None:
    later = data.draw(st.integers(min_value=1, max_value=len(updates) - 1))
    earlier = data.draw(st.integers(min_value=0, max_value=later - 1))
    old, new = updates[earlier], updates[later]
    if lifecycle.change_kind(new, old) is None:
        return
    with pytest.raises(errors.IllegalTransition):
        lifecycle.check_transition(new, old)
