"""Order updates for tests, in every form a test needs them.

* :func:`update`: the documented example as a JSON object, for one client and order, and
  :func:`new_client_id`, a client no other test uses.
* :func:`update_body`: a valid postback body with any status string; :func:`signed`, the
  Standard Webhooks headers a receiver verifies.
* :func:`simulated_updates`: the simulator's realistic day of one account, every order kind,
  interleaved as a busy broker would post them (:func:`simulated_bodies`: the same as
  payloads), for the big runs; :func:`order_updates`, a fixed number of updates per order,
  where a test needs exact counts. Either way one order's updates are separated by other
  orders' updates.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import msgspec

from dhan_postback import payload, signing
from dhan_postback.payload import (
    ExchangeSegment,
    OrderStatus,
    OrderType,
    OrderUpdate,
    ProductType,
    TransactionType,
    Validity,
)
from dhan_postback.simulator import Simulator, interleave

__all__ = [
    "CLIENT_ID",
    "limit_buy",
    "new_client_id",
    "order_updates",
    "signed",
    "simulated_bodies",
    "simulated_updates",
    "update",
    "update_body",
]

CLIENT_ID = "1000000003"

_clients = itertools.count(1_100_000_000)

_BASE: dict[str, Any] = {
    "dhanClientId": "1000000003",
    "orderId": "112111182198",
    "correlationId": "123abc678",
    "orderStatus": "PENDING",
    "transactionType": "BUY",
    "exchangeSegment": "NSE_EQ",
    "productType": "INTRADAY",
    "orderType": "MARKET",
    "validity": "DAY",
    "tradingSymbol": "",
    "securityId": "11536",
    "quantity": 5,
    "disclosedQuantity": 0,
    "price": 0.0,
    "triggerPrice": 0.0,
    "afterMarketOrder": False,
    "boProfitValue": 0.0,
    "boStopLossValue": 0.0,
    "legName": None,
    "createTime": "2021-11-24 13:33:03",
    "updateTime": "2021-11-24 13:33:03",
    "exchangeTime": "2021-11-24 13:33:03",
    "drvExpiryDate": None,
    "drvOptionType": None,
    "drvStrikePrice": 0.0,
    "omsErrorCode": None,
    "omsErrorDescription": None,
    "filled_qty": 1,
    "algoId": None,
}


def new_client_id() -> str:
    """A dhanClientId no other test uses, so that tests sharing a server do not mix."""
    return str(next(_clients))


def update(
    client_id: str = "1000000003", order_id: str | None = None, **changes: Any
) -> dict[str, Any]:
    """The documented example (null for its legName hole), for one client and order.

    Without an ``order_id`` the order is the client's own, so that tests sharing a service
    never queue behind each other's deliveries (a queue is one order to one URL).
    """
    order = order_id if order_id is not None else f"{client_id}-order"
    return {**_BASE, "dhanClientId": client_id, "orderId": order, **changes}


DOCS_EXAMPLE = Path(__file__).parent.parent / "fixtures" / "docs_example.json"
_BASE = payload.parse(DOCS_EXAMPLE.read_bytes()).to_update().to_dict()
_encode = msgspec.json.Encoder().encode


def update_body(
    order_id: str,
    status: str = "PENDING",
    update_time: str = "2024-01-02 10:00:00",
    filled_qty: int = 0,
    *,
    quantity: int = 10,
    client_id: str = "1000000003",
    leg_name: str | None = None,
    **extra: Any,
) -> bytes:
    """A valid postback body (any status string, PART_TRADED included) in documented order."""
    fields = dict(_BASE)
    fields.update(
        dhanClientId=client_id,
        orderId=order_id,
        orderStatus=status,
        quantity=quantity,
        filled_qty=filled_qty,
        updateTime=update_time,
        exchangeTime=update_time,
        legName=leg_name,
    )
    fields.update(extra)
    return _encode(fields)


def signed(
    secret: str, body: bytes, msg_id: str, *, timestamp: int | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, plus the content type."""
    headers = signing.Signer(secret).headers(msg_id, body, timestamp)
    headers["content-type"] = "application/json"
    return headers


def simulated_updates(
    orders: int, *, seed: int = 7, client_id: str = "1000000001"
) -> list[OrderUpdate]:
    """``orders`` simulated orders of one account, every kind, as one time-ordered stream (in
    the order a broker would post them)."""
    simulator = Simulator(seed, clients=(client_id,))
    return interleave(simulator.orders(orders), random.Random(seed))


def simulated_bodies(orders: int, *, seed: int, client_id: str = CLIENT_ID) -> list[bytes]:
    """The payloads of :func:`simulated_updates`, for an outbox (:class:`~.outbox.Outbox`)."""
    return [
        payload.dumps(update)
        for update in simulated_updates(orders, seed=seed, client_id=client_id)
    ]


def limit_buy(**fields: Any) -> OrderUpdate:
    """A day LIMIT BUY of TCS on NSE, cash (CNC), with ``fields`` added or replaced: the
    order tests write out by hand."""
    values: dict[str, Any] = {
        "transaction_type": TransactionType.BUY,
        "exchange_segment": ExchangeSegment.NSE_EQ,
        "product_type": ProductType.CNC,
        "order_type": OrderType.LIMIT,
        "validity": Validity.DAY,
        "trading_symbol": "TCS",
        "security_id": "11536",
    }
    return OrderUpdate(**{**values, **fields})


def order_updates(orders: int, per_order: int, *, client_id: str = CLIENT_ID) -> list[bytes]:
    """``orders * per_order`` payloads, interleaved by order, each order's in lifecycle order."""
    per_order = max(per_order, 1)
    lifecycles = []
    for number in range(orders):
        order_id = f"{112111182198 + number}"
        statuses = [OrderStatus.TRANSIT, OrderStatus.PENDING]
        statuses += [OrderStatus.PENDING] * max(per_order - 3, 0) + [OrderStatus.TRADED]
        statuses = statuses[-per_order:] if per_order < 3 else statuses
        quantity = 10 * per_order
        lifecycle = []
        for step, status in enumerate(statuses):
            filled = quantity if status is OrderStatus.TRADED else max(step - 1, 0) * 10
            second = step % 60
            lifecycle.append(
                limit_buy(
                    dhan_client_id=client_id,
                    order_id=order_id,
                    correlation_id=f"corr-{number}",
                    order_status=status,
                    quantity=quantity,
                    price=3345.8,
                    create_time="2024-11-25 09:15:00",
                    update_time=f"2024-11-25 09:16:{second:02d}",
                    exchange_time="2024-11-25 09:15:01",
                    filled_qty=filled,
                )
            )
        lifecycles.append([payload.dumps(update) for update in lifecycle])
    return [lc[step] for step in range(per_order) for lc in lifecycles if step < len(lc)]
