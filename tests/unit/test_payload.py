from __future__ import annotations

import json

import msgspec
import pytest

from dhan_postback import payload
from dhan_postback.errors import InvalidUpdate, UnreadablePayload
from dhan_postback.payload import FIELDS, OrderStatus, OrderUpdate


def test_there_are_exactly_29_fields_with_filled_qty_in_snake_case() -> None:
    assert len(FIELDS) == 29
    assert FIELDS[0] == "dhanClientId"
    assert FIELDS[-2:] == ("filled_qty", "algoId")


def test_the_docs_example_is_invalid_json(docs_example: bytes) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(docs_example)


def test_parse_accepts_the_docs_example_and_reads_the_hole_as_null(docs_example: bytes) -> None:
    received = payload.parse(docs_example)
    assert received.repaired
    assert received.fields["legName"] is None
    assert received.order_id == "112111182198"
    assert received.missing_fields == ()
    assert received.unknown_values == ()


def test_docs_example_round_trips_to_valid_json_in_documented_order(docs_example: bytes) -> None:
    body = payload.dumps(payload.parse(docs_example).to_update())
    decoded = json.loads(body)
    assert tuple(decoded) == FIELDS
    assert decoded["legName"] is None
    assert b'"price":0.0' in body


def test_dumps_writes_floats_as_floats_even_when_built_from_ints(
    docs_example: bytes,
) -> None:
    update = payload.parse(docs_example).to_update().replace(price=250, drv_strike_price=0)
    body = payload.dumps(update)
    assert b'"price":250.0' in body
    assert b'"drvStrikePrice":0.0' in body


def test_dumps_is_compact() -> None:
    update = _update()
    assert b": " not in payload.dumps(update)
    assert b", " not in payload.dumps(update)


def test_parse_keeps_unknown_fields_after_the_documented_ones() -> None:
    body = _wire(extraField="x")
    received = payload.parse(body)
    assert received.extra_fields == ("extraField",)
    assert list(received.fields)[-1] == "extraField"


def test_parse_keeps_unknown_enum_values_and_flags_them() -> None:
    received = payload.parse(_wire(orderStatus="TRIGGERED"))
    assert received.order_status == "TRIGGERED"
    assert received.unknown_values == ("orderStatus=TRIGGERED",)


def test_parse_upper_cases_title_case_statuses() -> None:
    assert payload.parse(_wire(orderStatus="Cancelled")).order_status == "CANCELLED"


def test_parse_knows_part_traded() -> None:
    received = payload.parse(_wire(orderStatus="PART_TRADED"))
    assert received.order_status == "PART_TRADED"
    assert received.unknown_values == ()


def test_parse_keeps_an_integer_too_large_for_a_database_and_counts_it_as_zero() -> None:
    body = json.dumps({**_update().to_dict(), "quantity": 2**63, "filled_qty": 10**30})
    received = payload.parse(body)
    assert received.fields["quantity"] == 2**63
    assert (received.quantity, received.filled_qty) == (0, 0)
    assert received.unknown_values == ("quantity=out of range", "filled_qty=out of range")


def test_parse_refuses_a_body_that_is_not_json() -> None:
    with pytest.raises(UnreadablePayload, match="not JSON"):
        payload.parse(b"orderId=1")


def test_parse_refuses_a_json_array() -> None:
    with pytest.raises(UnreadablePayload, match="not an object"):
        payload.parse(b"[1, 2]")


def test_parse_refuses_a_body_without_order_id() -> None:
    with pytest.raises(UnreadablePayload, match="orderId"):
        payload.parse(b'{"orderStatus": "TRADED"}')


def test_repair_leaves_colons_inside_strings_alone() -> None:
    raw = b'{"a": "x: ,y", "b": }'
    assert json.loads(payload.repair_json(raw)) == {"a": "x: ,y", "b": None}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("orderStatus", "DONE", "Invalid enum value 'DONE'"),
        ("quantity", "5", "Expected `int`, got `str`"),
        ("afterMarketOrder", 1, "Expected `bool`, got `int`"),
        ("price", "12.5", "Expected `float`, got `str`"),
        ("updateTime", "2024-01-01T10:00:00", "YYYY-MM-DD HH:MM:SS"),
        ("orderId", "", "length >= 1"),
        ("quantity", -1, ">= 0"),
    ],
)
def test_validate_strict_names_the_bad_field(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidUpdate, match=message) as caught:
        payload.validate_strict({**_update().to_dict(), field: value})
    assert caught.value.field == field
    assert field in str(caught.value)


def test_validate_strict_refuses_unknown_fields() -> None:
    with pytest.raises(InvalidUpdate, match="unknown field `surprise`"):
        payload.validate_strict({**_update().to_dict(), "surprise": 1})


def test_validate_strict_refuses_missing_required_fields() -> None:
    obj = _update().to_dict()
    del obj["orderId"]
    with pytest.raises(InvalidUpdate, match="missing required field `orderId`"):
        payload.validate_strict(obj)


def test_validate_strict_refuses_filled_qty_above_quantity() -> None:
    with pytest.raises(InvalidUpdate, match="filled_qty"):
        payload.validate_strict({**_update().to_dict(), "filled_qty": 6})


def test_validate_strict_accepts_a_complete_update() -> None:
    update = _update()
    assert payload.validate_strict(update.to_dict()) == update


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quantity", payload.MAX_SAFE_INTEGER + 1),
        ("disclosedQuantity", 2**63),
        ("quantity", 10**30),
    ],
)
def test_validate_strict_refuses_integers_past_two_to_the_53(field: str, value: int) -> None:
    obj = {**_update().to_dict(), field: value, "filled_qty": 0}
    with pytest.raises(InvalidUpdate, match="<= 9007199254740991") as caught:
        payload.validate_strict(obj)
    assert caught.value.field == field


def test_validate_strict_accepts_the_largest_safe_integer() -> None:
    obj = {**_update().to_dict(), "quantity": payload.MAX_SAFE_INTEGER}
    assert payload.validate_strict(obj).quantity == payload.MAX_SAFE_INTEGER


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("dhanClientId", payload.MAX_ID_LENGTH),
        ("orderId", payload.MAX_ID_LENGTH),
        ("correlationId", payload.MAX_ID_LENGTH),
        ("tradingSymbol", payload.MAX_ID_LENGTH),
        ("securityId", payload.MAX_ID_LENGTH),
        ("omsErrorCode", payload.MAX_ID_LENGTH),
        ("algoId", payload.MAX_ID_LENGTH),
        ("omsErrorDescription", payload.MAX_TEXT_LENGTH),
    ],
)
def test_validate_strict_refuses_a_string_past_its_field_maximum(field: str, limit: int) -> None:
    accepted = {**_update().to_dict(), field: "x" * limit}
    assert payload.validate_strict(accepted).to_dict()[field] == "x" * limit
    with pytest.raises(InvalidUpdate, match=f"length <= {limit}") as caught:
        payload.validate_strict({**accepted, field: "x" * (limit + 1)})
    assert caught.value.field == field


def test_validate_strict_refuses_an_update_too_large_as_sent() -> None:
    escaped = "\x01" * payload.MAX_ID_LENGTH  # each is six bytes on the wire: \u0001
    obj = {
        **_update().to_dict(),
        **dict.fromkeys(("correlationId", "tradingSymbol", "omsErrorCode", "algoId"), escaped),
        "omsErrorDescription": "\x01" * payload.MAX_TEXT_LENGTH,
    }
    with pytest.raises(InvalidUpdate, match=f"at most {payload.MAX_UPDATE_BYTES}") as caught:
        payload.validate_strict(obj)
    assert caught.value.field is None


def test_order_update_is_immutable() -> None:
    with pytest.raises(AttributeError):
        _update().quantity = 3  # type: ignore[misc]


def _update() -> OrderUpdate:
    return OrderUpdate(
        dhan_client_id="1000000003",
        order_id="112111182198",
        order_status=OrderStatus.PENDING,
        transaction_type=payload.TransactionType.BUY,
        exchange_segment=payload.ExchangeSegment.NSE_EQ,
        product_type=payload.ProductType.INTRADAY,
        order_type=payload.OrderType.MARKET,
        validity=payload.Validity.DAY,
        security_id="11536",
        quantity=5,
        create_time="2021-11-24 13:33:03",
        update_time="2021-11-24 13:33:03",
        exchange_time="2021-11-24 13:33:03",
        filled_qty=1,
    )


def _wire(**changes: object) -> bytes:
    return msgspec.json.encode({**_update().to_dict(), **changes})
