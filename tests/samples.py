"""Valid order updates for tests, as the JSON objects an order system would send."""

from __future__ import annotations

import itertools
from typing import Any

__all__ = ["new_client_id", "update"]

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
