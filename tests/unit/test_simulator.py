from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhan_postback import lifecycle, payload
from dhan_postback.lifecycle import ChangeKind
from dhan_postback.payload import (
    ExchangeSegment,
    LegName,
    OptionType,
    OrderStatus,
    OrderType,
    OrderUpdate,
    ProductType,
    Validity,
)
from dhan_postback.simulator import (
    DEFAULT_CLIENTS,
    FUTURES,
    INDEX_OPTIONS,
    NOT_AT_EXCHANGE,
    SESSIONS,
    OrderKind,
    SimulatedOrder,
    Simulator,
    interleave,
    with_quirks,
)

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
PROPERTY = settings(max_examples=40, deadline=None)
EQUITY_SEGMENTS = (ExchangeSegment.NSE_EQ, ExchangeSegment.BSE_EQ)


def run(seed: int, n: int = 2 * len(OrderKind)) -> list[SimulatedOrder]:
    return Simulator(seed).orders(n)


def all_updates(orders: list[SimulatedOrder]) -> list[OrderUpdate]:
    return [update for order in orders for update in order.updates]


def by_key(updates: list[OrderUpdate]) -> dict[tuple[str, str | None], list[OrderUpdate]]:
    lifecycles: dict[tuple[str, str | None], list[OrderUpdate]] = defaultdict(list)
    for update in updates:
        lifecycles[lifecycle.order_key(update)].append(update)
    return lifecycles


def of_kind(kind: OrderKind, count: int = 30, seed: int = 11) -> list[SimulatedOrder]:
    simulator = Simulator(seed)
    return [simulator.order(kind) for _ in range(count)]


def clock(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")


def lot_and_tick(update: OrderUpdate) -> tuple[int, float]:
    if update.exchange_segment in EQUITY_SEGMENTS:
        return 1, 0.05
    name = update.trading_symbol.split("-")[0]
    for underlying in INDEX_OPTIONS:
        if underlying.name == name:
            return underlying.lot, 0.05
    for future in FUTURES:
        if future.name == name:
            return future.lot, future.tick
    raise AssertionError(f"unknown instrument {update.trading_symbol}")


def on_tick(price: float, tick: float) -> bool:
    return abs(price / tick - round(price / tick)) < 1e-6


# --------------------------------------------------------------------------------------------
# Properties over many seeds.


@PROPERTY
@given(SEEDS)
def test_every_simulated_lifecycle_is_legal(seed: int) -> None:
    for order in run(seed):
        kinds = lifecycle.check_sequence(order.updates)
        assert kinds[0] is ChangeKind.NEW


@PROPERTY
@given(SEEDS)
def test_every_simulated_update_is_a_change_worth_a_postback(seed: int) -> None:
    for order in run(seed):
        assert None not in lifecycle.check_sequence(order.updates)


@PROPERTY
@given(SEEDS)
def test_filled_qty_never_decreases_and_never_exceeds_quantity(seed: int) -> None:
    for updates in by_key(all_updates(run(seed))).values():
        filled = [update.filled_qty for update in updates]
        assert filled == sorted(filled)
        assert all(u.filled_qty <= u.quantity for u in updates)


@PROPERTY
@given(SEEDS)
def test_nothing_follows_a_terminal_status(seed: int) -> None:
    for updates in by_key(all_updates(run(seed))).values():
        terminal = [i for i, u in enumerate(updates) if lifecycle.is_terminal(u.order_status)]
        assert terminal == [len(updates) - 1]


@PROPERTY
@given(SEEDS)
def test_times_run_forward_and_creation_comes_first(seed: int) -> None:
    for order in run(seed):
        times = [update.update_time for update in order.updates]
        assert times == sorted(times)
        assert all(u.create_time <= u.update_time for u in order.updates)


@PROPERTY
@given(SEEDS)
def test_every_update_passes_strict_validation(seed: int) -> None:
    for update in all_updates(run(seed)):
        assert payload.validate_strict(update.to_dict()) == update


@PROPERTY
@given(SEEDS)
def test_every_update_round_trips_through_the_wire_exactly(seed: int) -> None:
    for update in all_updates(run(seed)):
        body = payload.dumps(update)
        assert payload.parse(body).to_update() == update
        assert tuple(json.loads(body)) == payload.FIELDS


@PROPERTY
@given(SEEDS)
def test_times_fall_inside_the_segments_session(seed: int) -> None:
    for update in all_updates(run(seed)):
        session = SESSIONS[update.exchange_segment]
        when = clock(update.update_time)
        assert when.date() == Simulator(seed).trading_date
        assert when.time() <= session.close
        if not update.after_market_order:
            assert clock(update.create_time).time() >= session.open


@PROPERTY
@given(SEEDS)
def test_exchange_time_is_the_sentinel_until_the_order_reaches_the_exchange(seed: int) -> None:
    for update in all_updates(run(seed)):
        if update.order_status is OrderStatus.TRANSIT:
            assert update.exchange_time == NOT_AT_EXCHANGE
        elif update.exchange_time != NOT_AT_EXCHANGE:
            assert update.create_time <= update.exchange_time <= update.update_time


@PROPERTY
@given(SEEDS)
def test_prices_sit_on_the_tick_and_quantities_on_the_lot(seed: int) -> None:
    for update in all_updates(run(seed)):
        lot, tick = lot_and_tick(update)
        assert update.quantity % lot == 0
        assert update.filled_qty % lot == 0
        for price in (update.price, update.trigger_price):
            assert price == 0.0 or on_tick(price, tick)


@PROPERTY
@given(SEEDS)
def test_order_ids_are_unique_broker_shaped_digits(seed: int) -> None:
    simulator = Simulator(seed)
    orders = simulator.orders(30) + simulator.orders(30)
    ids = [order.order_id for order in orders]
    assert len(set(ids)) == len(ids)
    assert all(i.isdigit() and len(i) in (12, 13) for i in ids)
    assert all(u.order_id == o.order_id for o in orders for u in o.updates)


# --------------------------------------------------------------------------------------------
# Reproducibility.


def test_the_same_seed_gives_the_same_bytes() -> None:
    first = [payload.dumps(u) for u in all_updates(run(7, 40))]
    again = [payload.dumps(u) for u in all_updates(run(7, 40))]
    assert first == again


def test_different_seeds_give_different_orders() -> None:
    assert all_updates(run(1)) != all_updates(run(2))


def test_simulators_share_no_state() -> None:
    alone = run(5, 10)
    a, b = Simulator(5), Simulator(6)
    mixed = []
    for _ in range(10):
        mixed.extend(a.orders(1))
        b.orders(1)
    assert [o.updates for o in mixed] == [o.updates for o in alone]


def test_successive_calls_continue_the_sequence() -> None:
    simulator = Simulator(3)
    first, second = simulator.orders(5), simulator.orders(5)
    assert [o.order_id for o in first + second] == [o.order_id for o in run(3, 10)]


# --------------------------------------------------------------------------------------------
# Configuration.


def test_the_first_orders_of_a_simulator_cover_every_kind() -> None:
    assert {order.kind for order in run(9, len(OrderKind))} == set(OrderKind)


def test_orders_can_be_limited_to_some_kinds() -> None:
    orders = Simulator(1).orders(10, kinds=[OrderKind.IOC, OrderKind.BRACKET])
    assert {order.kind for order in orders} == {OrderKind.IOC, OrderKind.BRACKET}


def test_orders_belong_to_the_configured_clients() -> None:
    orders = Simulator(4, clients=["1100000077", "1100000078"]).orders(40)
    assert {u.dhan_client_id for u in all_updates(orders)} == {"1100000077", "1100000078"}


def test_a_single_client_may_be_given_as_a_string() -> None:
    orders = Simulator(4, clients="1100000077").orders(5)
    assert {u.dhan_client_id for u in all_updates(orders)} == {"1100000077"}


def test_the_default_clients_are_used_without_configuration() -> None:
    assert {u.dhan_client_id for u in all_updates(run(4, 40))} <= set(DEFAULT_CLIENTS)


@pytest.mark.parametrize("clients", [[], [""], ["  "]])
def test_an_empty_client_list_is_refused(clients: list[str]) -> None:
    with pytest.raises(ValueError, match="client"):
        Simulator(1, clients=clients)


def test_a_weekend_start_moves_to_monday() -> None:
    simulator = Simulator(1, start=date(2025, 1, 18))
    assert simulator.trading_date == date(2025, 1, 20)
    assert simulator.orders(1)[0].final.create_time.startswith("2025-01-20")


def test_some_orders_carry_a_correlation_id_and_some_an_algo_id() -> None:
    updates = all_updates(run(2, 80))
    assert 0 < sum(u.correlation_id is not None for u in updates) < len(updates)
    assert 0 < sum(u.algo_id is not None for u in updates) < len(updates)


# --------------------------------------------------------------------------------------------
# The kinds, one by one.


def test_market_orders_have_no_price_and_sometimes_skip_pending() -> None:
    orders = of_kind(OrderKind.MARKET, 40)
    assert all(u.price == 0.0 for o in orders for u in o.updates)
    assert all(o.final.order_status is OrderStatus.TRADED for o in orders)
    statuses = [[u.order_status for u in o.updates] for o in orders]
    assert [OrderStatus.TRANSIT, OrderStatus.TRADED] in statuses


def test_limit_orders_fill_in_several_parts_then_trade() -> None:
    for order in of_kind(OrderKind.LIMIT):
        kinds = lifecycle.check_sequence(order.updates)
        assert ChangeKind.PARTIAL_FILL in kinds
        assert order.final.order_status is OrderStatus.TRADED
        assert order.final.order_type is OrderType.LIMIT


def test_some_large_limit_orders_disclose_part_of_their_quantity() -> None:
    disclosed = [o.final for o in of_kind(OrderKind.LIMIT, 60) if o.final.disclosed_quantity]
    assert disclosed
    assert all(u.quantity * 0.3 <= u.disclosed_quantity < u.quantity for u in disclosed)


def test_expiring_limit_orders_expire_exactly_at_the_close() -> None:
    for order in of_kind(OrderKind.LIMIT_EXPIRED):
        close = SESSIONS[order.final.exchange_segment].close
        assert order.final.order_status is OrderStatus.EXPIRED
        assert clock(order.final.update_time).time() == close


def test_modified_orders_change_price_or_quantity_and_keep_their_status() -> None:
    for order in of_kind(OrderKind.MODIFIED):
        kinds = lifecycle.check_sequence(order.updates)
        assert ChangeKind.MODIFICATION in kinds
        for previous, current, kind in zip(
            order.updates[:-1], order.updates[1:], kinds[1:], strict=True
        ):
            if kind is ChangeKind.MODIFICATION:
                assert current.order_status == previous.order_status
                assert current.update_time >= previous.update_time


def test_cancelled_orders_end_cancelled_sometimes_after_partial_fills() -> None:
    orders = of_kind(OrderKind.CANCELLED)
    assert all(o.final.order_status is OrderStatus.CANCELLED for o in orders)
    assert any(o.final.filled_qty > 0 for o in orders)


def test_rejections_carry_an_oms_error_code_and_description() -> None:
    orders = of_kind(OrderKind.REJECTED, 40)
    for order in orders:
        final = order.final
        assert final.order_status is OrderStatus.REJECTED
        assert final.oms_error_code and final.oms_error_description
        if final.oms_error_description.startswith("RMS:"):
            assert final.oms_error_description.startswith(f"RMS:{final.order_id}:")
            assert final.exchange_time == NOT_AT_EXCHANGE
    descriptions = " ".join(o.final.oms_error_description or "" for o in orders)
    for reason in ("Margin Exceeds", "Circuit Limits", "Freeze Limit", "EXCH:"):
        assert reason in descriptions


def test_stop_loss_orders_carry_a_trigger_on_the_right_side_of_the_price() -> None:
    for order in of_kind(OrderKind.STOP_LOSS):
        first = order.updates[0]
        assert first.order_type is OrderType.STOP_LOSS
        assert first.trigger_price > 0
        if first.transaction_type == "BUY":
            assert first.price >= first.trigger_price
        else:
            assert first.price <= first.trigger_price


def test_stop_loss_market_orders_have_a_trigger_and_no_price() -> None:
    for order in of_kind(OrderKind.STOP_LOSS_MARKET):
        assert all(u.trigger_price > 0 and u.price == 0.0 for u in order.updates)


def test_ioc_orders_end_at_once_traded_or_cancelled() -> None:
    orders = of_kind(OrderKind.IOC, 40)
    assert {o.final.order_status for o in orders} == {OrderStatus.TRADED, OrderStatus.CANCELLED}
    for order in orders:
        assert all(u.validity is Validity.IOC for u in order.updates)
        spent = clock(order.final.update_time) - clock(order.final.create_time)
        assert spent.total_seconds() <= 3


def test_cover_orders_have_an_entry_with_a_trigger_then_a_stop_loss_leg() -> None:
    for order in of_kind(OrderKind.COVER):
        legs = [u.leg_name for u in order.updates]
        assert legs[0] is LegName.ENTRY_LEG and legs[-1] is LegName.STOP_LOSS_LEG
        assert all(u.product_type is ProductType.CO and u.trigger_price > 0 for u in order.updates)


def test_bracket_legs_share_the_order_id_and_one_exit_trades() -> None:
    for order in of_kind(OrderKind.BRACKET):
        assert {u.order_id for u in order.updates} == {order.order_id}
        assert all(u.bo_profit_value > 0 and u.bo_stop_loss_value > 0 for u in order.updates)
        last = {u.leg_name: u for u in order.updates}
        if last[LegName.ENTRY_LEG].order_status is OrderStatus.CANCELLED:
            assert set(last) == {LegName.ENTRY_LEG}
            continue
        exits = {last[LegName.TARGET_LEG].order_status, last[LegName.STOP_LOSS_LEG].order_status}
        assert exits == {OrderStatus.TRADED, OrderStatus.CANCELLED}
        assert last[LegName.TARGET_LEG].transaction_type != last[LegName.ENTRY_LEG].transaction_type


def test_after_market_orders_wait_in_transit_before_the_open() -> None:
    for order in of_kind(OrderKind.AFTER_MARKET):
        open_ = SESSIONS[order.final.exchange_segment].open
        assert all(u.after_market_order for u in order.updates)
        assert order.updates[0].order_status is OrderStatus.TRANSIT
        assert clock(order.updates[0].create_time).time() < open_
        for update in order.updates:
            if update.order_status is not OrderStatus.TRANSIT:
                assert clock(update.update_time).time() >= open_


def test_options_are_index_contracts_with_expiry_type_and_strike() -> None:
    for order in of_kind(OrderKind.OPTION):
        first = order.updates[0]
        underlying = next(i for i in INDEX_OPTIONS if first.trading_symbol.startswith(i.name))
        assert first.exchange_segment is ExchangeSegment.NSE_FNO
        assert first.drv_option_type in (OptionType.CALL, OptionType.PUT)
        assert first.drv_strike_price > 0
        assert first.drv_strike_price % underlying.strike_step == 0
        assert first.quantity % underlying.lot == 0
        assert first.drv_expiry_date is not None
        assert date.fromisoformat(first.drv_expiry_date) >= date.fromisoformat(
            first.create_time[:10]
        )


def test_futures_have_an_expiry_but_no_option_fields() -> None:
    orders = of_kind(OrderKind.FUTURE, 40)
    segments = {o.final.exchange_segment for o in orders}
    assert segments == {ExchangeSegment.MCX_COMM, ExchangeSegment.NSE_CURRENCY}
    for order in orders:
        assert order.final.drv_expiry_date is not None
        assert order.final.drv_option_type is None and order.final.drv_strike_price == 0.0


def test_equities_have_no_derivative_fields() -> None:
    for update in all_updates(run(8, 60)):
        if update.exchange_segment in EQUITY_SEGMENTS:
            assert update.drv_expiry_date is None and update.drv_option_type is None


def test_real_nse_security_ids_are_used_for_the_big_names() -> None:
    ids = {(u.trading_symbol, u.security_id) for u in all_updates(run(3, 200))}
    assert {("RELIANCE", "2885"), ("TCS", "11536"), ("INFY", "1594"), ("HDFCBANK", "1333")} <= ids


# --------------------------------------------------------------------------------------------
# Streams and quirks.


def test_interleave_keeps_every_update_and_each_orders_own_order() -> None:
    orders = run(12, 40)
    stream = interleave(orders, random.Random(1))
    assert Counter(map(payload.dumps, stream)) == Counter(map(payload.dumps, all_updates(orders)))
    for order in orders:
        assert [u for u in stream if u.order_id == order.order_id] == order.updates


def test_interleave_runs_in_time_order() -> None:
    stream = interleave(run(12, 40), random.Random(1))
    times = [update.update_time for update in stream]
    assert times == sorted(times)


def test_interleave_is_reproducible_with_the_same_rng_seed() -> None:
    orders = run(12, 40)
    assert interleave(orders, random.Random(3)) == interleave(orders, random.Random(3))


def test_without_quirks_the_bodies_are_the_exact_payloads_in_order() -> None:
    stream = interleave(run(2), random.Random(0))
    assert with_quirks(stream, random.Random(0)) == [payload.dumps(u) for u in stream]


def test_drop_leg_name_writes_the_docs_hole_where_leg_name_is_null() -> None:
    stream = interleave(run(2, 30), random.Random(0))
    bodies = with_quirks(stream, random.Random(0), drop_leg_name=1.0)
    for update, body in zip(stream, bodies, strict=True):
        if update.leg_name is None:
            assert b'"legName": ,' in body
            with pytest.raises(json.JSONDecodeError):
                json.loads(body)
            received = payload.parse(body)
            assert received.repaired and received.to_update() == update
        else:
            assert body == payload.dumps(update)


def test_duplicates_deliver_bodies_again() -> None:
    stream = interleave(run(2, 30), random.Random(0))
    bodies = with_quirks(stream, random.Random(0), duplicates=1.0)
    assert Counter(bodies) == Counter({payload.dumps(u): 2 for u in stream})


def test_reorder_moves_bodies_but_loses_none() -> None:
    stream = interleave(run(2, 30), random.Random(0))
    bodies = with_quirks(stream, random.Random(0), reorder=0.5)
    originals = [payload.dumps(u) for u in stream]
    assert bodies != originals
    assert sorted(bodies) == sorted(originals)
