"""The relay's translation of a row of the broker's REST order book into the postback."""

from __future__ import annotations

from typing import Any

import pytest

from dhan_postback.payload import LegName, OrderStatus, OrderUpdate
from dhan_postback.relay import map_book_row
from tests.helpers.broker import to_book_row
from tests.helpers.updates import simulated_updates

LIFECYCLE = simulated_updates(22, seed=3)


def _row(**changes: Any) -> dict[str, Any]:
    """A partly filled limit order as the book shows it (the reference's field list)."""
    row: dict[str, Any] = {
        "dhanClientId": "1000000003",
        "orderId": "112111182198",
        "exchangeOrderId": "1400000000404591",
        "correlationId": "123abc678",
        "orderStatus": "PART_TRADED",
        "transactionType": "BUY",
        "exchangeSegment": "NSE_EQ",
        "productType": "INTRADAY",
        "orderType": "LIMIT",
        "validity": "DAY",
        "tradingSymbol": "IDEA",
        "securityId": "14366",
        "quantity": 10,
        "disclosedQuantity": 0,
        "price": 13.5,
        "triggerPrice": 0,
        "afterMarketOrder": False,
        "boProfitValue": 0,
        "boStopLossValue": 0,
        "legName": None,
        "createTime": "2025-01-15 09:20:01",
        "updateTime": "2025-01-15 09:31:12",
        "exchangeTime": "2025-01-15 09:20:02",
        "drvExpiryDate": None,
        "drvOptionType": None,
        "drvStrikePrice": 0,
        "omsErrorCode": None,
        "omsErrorDescription": None,
        "algoId": None,
        "remainingQuantity": 6,
        "averageTradedPrice": 13.5,
        "filledQty": 4,
    }
    row.update(changes)
    return row


def _mapped(**changes: Any) -> OrderUpdate:
    result = map_book_row(_row(**changes))
    assert result.update is not None, result.error
    return result.update


def test_every_simulated_state_comes_back_from_its_book_row_unchanged() -> None:
    for update in LIFECYCLE:
        result = map_book_row(to_book_row(update))
        assert result.update == update, result.error


def test_filled_qty_comes_from_the_books_filledQty() -> None:
    assert _mapped(filledQty=7).filled_qty == 7


def test_part_traded_is_sent_as_pending_with_its_fills() -> None:
    result = map_book_row(_row())
    assert result.update is not None
    assert (result.update.order_status, result.update.filled_qty) == (OrderStatus.PENDING, 4)
    assert any("PART_TRADED" in warning for warning in result.warnings)


def test_the_book_row_is_relayed_as_it_is_even_when_states_were_skipped() -> None:
    """PENDING straight to TRADED in the book: the postback says TRADED, nothing between."""
    update = _mapped(orderStatus="TRADED", filledQty=10, remainingQuantity=0)
    assert (update.order_status, update.filled_qty) == (OrderStatus.TRADED, 10)


def test_values_the_websocket_lacks_come_from_the_row() -> None:
    update = _mapped(
        productType="BO",
        legName="TARGET_LEG",
        boProfitValue=5,
        boStopLossValue=2.5,
        orderStatus="REJECTED",
        filledQty=0,
        omsErrorCode="16283",
        omsErrorDescription="RMS:Margin Exceeds",
    )
    assert update.leg_name is LegName.TARGET_LEG
    assert (update.bo_profit_value, update.bo_stop_loss_value) == (5.0, 2.5)
    assert (update.oms_error_code, update.oms_error_description) == (
        "16283",
        "RMS:Margin Exceeds",
    )


@pytest.mark.parametrize("leg", [None, "", "NA"])
def test_a_row_without_a_leg_has_a_null_leg_name(leg: str | None) -> None:
    assert _mapped(legName=leg).leg_name is None


def test_statuses_and_keys_are_read_in_any_case_and_extra_fields_are_ignored() -> None:
    update = _mapped(orderStatus="Cancelled", filledQty=0, somethingNew=1)
    assert update.order_status is OrderStatus.CANCELLED


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("orderId", None, "orderId is missing"),
        ("orderStatus", "PARKED", "Status 'PARKED'"),
        ("exchangeSegment", "NYSE", "exchangeSegment 'NYSE'"),
        ("quantity", None, "quantity is missing"),
    ],
)
def test_a_row_without_an_honest_postback_is_an_error_not_a_guess(
    field: str, value: Any, reason: str
) -> None:
    result = map_book_row(_row(**{field: value}))
    assert result.update is None and result.error is not None and reason in result.error
