"""Order lifecycles for the relay's tests: realistic sequences of postback payloads.

Each order goes through a lifecycle the broker really produces (market fill, limit with
partial fills, modification then cancel, rejection, SL and SL-M, bracket and cover order
legs, after-market order, F&O option, end-of-day expiry); the orders are interleaved as on a
busy account, and every update carries a later ``updateTime`` than the one before.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import Any

from dhan_postback.payload import (
    ExchangeSegment,
    LegName,
    OptionType,
    OrderStatus,
    OrderType,
    OrderUpdate,
    ProductType,
    TransactionType,
    Validity,
)

__all__ = ["interleaved_lifecycles"]

S = OrderStatus
Step = dict[str, Any]  # changes to apply to the order's previous update


def _market() -> list[Step]:
    return [
        {"order_status": S.TRANSIT},
        {"order_status": S.PENDING},
        {"order_status": S.TRADED, "filled": 1.0},
    ]


def _limit_partial() -> list[Step]:
    return [
        {"order_status": S.PENDING, "order_type": OrderType.LIMIT, "price": 250.5},
        {"filled": 0.3},
        {"filled": 0.7},
        {"order_status": S.TRADED, "filled": 1.0},
    ]


def _modify_cancel() -> list[Step]:
    return [
        {"order_status": S.PENDING, "order_type": OrderType.LIMIT, "price": 100.0},
        {"price": 101.5},
        {"price": 101.5, "quantity_times": 2},
        {"order_status": S.CANCELLED},
    ]


def _rejected() -> list[Step]:
    return [
        {"order_status": S.TRANSIT},
        {
            "order_status": S.REJECTED,
            "oms_error_description": "RMS:Margin Exceeds, Required Margin: 1500.00",
        },
    ]


def _stop_loss() -> list[Step]:
    return [
        {"order_status": S.PENDING, "order_type": OrderType.STOP_LOSS, "price": 99.0},
        {"order_status": S.TRADED, "filled": 1.0},
    ]


def _stop_loss_market() -> list[Step]:
    return [
        {"order_status": S.PENDING, "order_type": OrderType.STOP_LOSS_MARKET},
        {"order_status": S.TRADED, "filled": 1.0},
    ]


def _bracket() -> list[Step]:
    entry = {"product_type": ProductType.BO, "order_type": OrderType.LIMIT, "price": 500.0}
    return [
        {**entry, "order_status": S.PENDING, "leg_name": LegName.ENTRY_LEG},
        {"order_status": S.TRADED, "filled": 1.0, "leg_name": LegName.ENTRY_LEG},
        {"order_status": S.PENDING, "filled": 0.0, "leg_name": LegName.TARGET_LEG},
        {"order_status": S.PENDING, "leg_name": LegName.STOP_LOSS_LEG, "trigger": True},
        {"order_status": S.TRADED, "filled": 1.0, "leg_name": LegName.TARGET_LEG},
        {"order_status": S.CANCELLED, "filled": 0.0, "leg_name": LegName.STOP_LOSS_LEG},
    ]


def _cover() -> list[Step]:
    return [
        {
            "order_status": S.TRADED,
            "product_type": ProductType.CO,
            "filled": 1.0,
            "leg_name": LegName.ENTRY_LEG,
        },
        {"order_status": S.PENDING, "filled": 0.0, "leg_name": LegName.STOP_LOSS_LEG},
        {"order_status": S.TRADED, "filled": 1.0, "leg_name": LegName.STOP_LOSS_LEG},
    ]


def _after_market() -> list[Step]:
    return [
        {"order_status": S.TRANSIT, "after_market_order": True, "product_type": ProductType.CNC},
        {"order_status": S.PENDING},
        {"order_status": S.TRADED, "filled": 1.0},
    ]


def _option() -> list[Step]:
    return [
        {
            "order_status": S.PENDING,
            "exchange_segment": ExchangeSegment.NSE_FNO,
            "product_type": ProductType.MARGIN,
            "order_type": OrderType.LIMIT,
            "price": 120.25,
            "trading_symbol": "NIFTY-Sep2024-25000-CE",
            "drv_expiry_date": "2024-09-26",
            "drv_option_type": OptionType.CALL,
            "drv_strike_price": 25000.0,
            "lots": True,
        },
        {"filled": 0.5},
        {"order_status": S.TRADED, "filled": 1.0},
    ]


def _expired() -> list[Step]:
    return [
        {"order_status": S.PENDING, "order_type": OrderType.LIMIT, "price": 10.0},
        {"order_status": S.EXPIRED},
    ]


_KINDS: list[Callable[[], list[Step]]] = [
    _market,
    _limit_partial,
    _modify_cancel,
    _rejected,
    _stop_loss,
    _stop_loss_market,
    _bracket,
    _cover,
    _after_market,
    _option,
    _expired,
]

_SEGMENTS = [ExchangeSegment.NSE_EQ, ExchangeSegment.BSE_EQ]
_SYMBOLS = ["IDEA", "RELIANCE", "TCS", "INFY", "HDFCBANK", ""]


def _order(steps: list[Step], order_id: str, client_id: str, rng: random.Random) -> list[Step]:
    """Fill in the fields every update of one order shares."""
    base = {
        "dhan_client_id": client_id,
        "order_id": order_id,
        "correlation_id": rng.choice([None, f"tag-{order_id[-4:]}"]),
        "transaction_type": rng.choice(list(TransactionType)),
        "exchange_segment": rng.choice(_SEGMENTS),
        "product_type": rng.choice([ProductType.INTRADAY, ProductType.CNC]),
        "order_type": OrderType.MARKET,
        "validity": Validity.DAY,
        "trading_symbol": rng.choice(_SYMBOLS),
        "security_id": str(rng.randint(1, 30000)),
        "quantity": rng.choice([1, 5, 10, 30, 100]),
        "disclosed_quantity": 0,
        "algo_id": None,
    }
    return [base, *steps]


def interleaved_lifecycles(
    orders: int, *, seed: int = 7, client_id: str = "1000000001"
) -> list[OrderUpdate]:
    """``orders`` lifecycles of every kind, interleaved, as the postbacks they should give."""
    rng = random.Random(seed)
    plans = []
    for number in range(orders):
        kind = _KINDS[number % len(_KINDS)]
        plans.append(_order(kind(), f"52{seed:03d}{number:07d}", client_id, rng))
    clock = dt.datetime(2024, 9, 11, 9, 15, 0)
    cursors = [1] * len(plans)
    previous: list[OrderUpdate | None] = [None] * len(plans)
    live = list(range(len(plans)))
    updates: list[OrderUpdate] = []
    while live:
        index = rng.choice(live)
        plan = plans[index]
        clock += dt.timedelta(seconds=rng.randint(1, 3))
        update = _apply(plan[0], plan[cursors[index]], previous[index], clock)
        updates.append(update)
        previous[index] = update
        cursors[index] += 1
        if cursors[index] == len(plan):
            live.remove(index)
    return updates


def _apply(base: Step, step: Step, previous: OrderUpdate | None, clock: dt.datetime) -> OrderUpdate:
    now = clock.strftime("%Y-%m-%d %H:%M:%S")
    if previous is None:
        fields = dict(base)
        fields.update({k: v for k, v in step.items() if k in _FIELD_NAMES})
        quantity = fields["quantity"] * (50 if step.get("lots") else 1)
        fields.update(
            quantity=quantity,
            create_time=now,
            update_time=now,
            exchange_time=now,
            filled_qty=int(quantity * step.get("filled", 0.0)),
        )
        if fields["order_type"] in (OrderType.STOP_LOSS, OrderType.STOP_LOSS_MARKET):
            fields["trigger_price"] = 98.5
        return OrderUpdate(**fields)
    changes = {k: v for k, v in step.items() if k in _FIELD_NAMES}
    quantity = previous.quantity * step.get("quantity_times", 1)
    changes["quantity"] = quantity
    if "filled" in step:
        changes["filled_qty"] = int(quantity * step["filled"])
    if step.get("trigger"):
        changes["trigger_price"] = 480.0
    if "oms_error_description" not in step:
        changes["oms_error_description"] = None
    changes["update_time"] = now
    return previous.replace(**changes)


_FIELD_NAMES = frozenset(
    {
        "order_status",
        "order_type",
        "price",
        "product_type",
        "leg_name",
        "after_market_order",
        "exchange_segment",
        "trading_symbol",
        "drv_expiry_date",
        "drv_option_type",
        "drv_strike_price",
        "oms_error_description",
    }
)
