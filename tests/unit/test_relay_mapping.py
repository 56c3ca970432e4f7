"""The relay's translation of the broker's order_alert Data into the postback payload."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dhan_postback import payload
from dhan_postback.payload import OrderUpdate
from dhan_postback.relay.mapping import map_order_alert, parse_frame
from tests.helpers.broker import expected_postback, to_order_alert
from tests.helpers.updates import simulated_updates

# The documentation's example frame, as the page prints it: two empty values, no comma
# after "multiplier" in the original layout, "Remarks" twice.
DOCS_FRAME = b"""{"Data":{"Exchange":"NSE","Segment":"E","Source":"N","SecurityId":"14366",
 "ClientId":"1000000001","ExchOrderNo":"1400000000404591","OrderNo":"1124091136546",
 "Product":"C","TxnType":"B","OrderType":"LMT","Validity":"DAY","DiscQuantity":1,
 "DiscQtyRem":1,"RemainingQuantity":1,"Quantity":1,"TradedQty":0,"Price":13,
 "TriggerPrice":0,"TradedPrice":0,"AvgTradedPrice":0,"AlgoOrdNo": ,"OffMktFlag":"0",
 "OrderDateTime":"2024-09-11 14:39:29","ExchOrderTime":"2024-09-11 14:39:29",
 "LastUpdatedTime":"2024-09-11 14:39:29","Remarks":"NR","MktType":"NL",
 "ReasonDescription":"CONFIRMED","LegNo":1,"Instrument":"EQUITY","Symbol":"IDEA",
 "ProductName":"CNC","Status":"Cancelled","LotSize":1,"StrikePrice": ,
 "ExpiryDate":"0001-01-01 00:00:00","OptType":"XX","DisplayName":"Vodafone Idea",
 "Isin":"INE669E01016","Series":"EQ","GoodTillDaysDate":"2024-09-11","RefLtp":13.21,
 "TickSize":0.01,"AlgoId":"0","Multiplier":1,"CorrelationId":"","Remarks":"Super Order",
 "series":"EQ","goodTillDaysDate":"2024-09-11","instrumentType":"EQ","refLtp":13.21,
 "tickSize":0.01,"algoId":"0","multiplier":1
 "Extra":1},"Type":"order_alert"}"""

LIFECYCLE = simulated_updates(22, seed=3)


def _plain() -> dict[str, Any]:
    """A plain intraday market order, PENDING, as the websocket sends it."""
    return {
        "Exchange": "NSE",
        "Segment": "E",
        "SecurityId": "11536",
        "ClientId": "1000000003",
        "OrderNo": "112111182198",
        "Product": "I",
        "TxnType": "B",
        "OrderType": "MKT",
        "Validity": "DAY",
        "DiscQuantity": 0,
        "Quantity": 5,
        "TradedQty": 1,
        "Price": 0,
        "TriggerPrice": 0,
        "AlgoOrdNo": None,
        "OffMktFlag": "0",
        "OrderDateTime": "2021-11-24 13:33:03",
        "ExchOrderTime": "2021-11-24 13:33:03",
        "LastUpdatedTime": "2021-11-24 13:33:03",
        "Remarks": "NR",
        "ReasonDescription": "CONFIRMED",
        "LegNo": 1,
        "Instrument": "EQUITY",
        "Symbol": "",
        "ProductName": "INTRADAY",
        "Status": "PENDING",
        "StrikePrice": None,
        "ExpiryDate": "0001-01-01 00:00:00",
        "OptType": "XX",
        "AlgoId": "0",
        "CorrelationId": "123abc678",
    }


def _mapped(**changes: Any) -> OrderUpdate:
    result = map_order_alert({**_plain(), **changes})
    assert result.update is not None, result.error
    return result.update


def test_the_plain_order_maps_to_the_documented_postback_example(docs_example: bytes) -> None:
    assert _mapped() == payload.parse(docs_example).to_update()


def test_the_documentation_frame_is_repaired_and_mapped() -> None:
    frame = parse_frame(DOCS_FRAME)
    assert frame.repaired and frame.is_order_alert
    result = map_order_alert(frame.alerts[0])
    assert result.update is not None and result.warnings == ()
    assert result.update.order_status == "CANCELLED"
    assert result.update.exchange_segment == "NSE_EQ"
    assert result.update.price == 13.0
    assert result.update.drv_strike_price == 0.0
    assert result.update.drv_expiry_date is None
    assert result.update.correlation_id is None
    assert result.update.algo_id is None


@pytest.mark.parametrize("update", LIFECYCLE, ids=lambda u: f"{u.order_id}-{u.update_time[-8:]}")
def test_every_lifecycle_update_survives_the_websocket_and_back(update: OrderUpdate) -> None:
    result = map_order_alert(to_order_alert(update))
    assert result.update == expected_postback(update)
    assert result.warnings == ()


def test_camel_case_keys_read_the_same_as_pascal_case() -> None:
    for update in LIFECYCLE[:20]:
        camel = map_order_alert(to_order_alert(update, camel=True))
        assert camel.update == expected_postback(update)


def test_keys_are_read_in_any_case() -> None:
    shouted = {key.upper(): value for key, value in _plain().items()}
    assert map_order_alert(shouted).update == _mapped()


@pytest.mark.parametrize("status", ["Cancelled", "cancelled", "CANCELLED", " Cancelled "])
def test_status_is_read_in_any_case(status: str) -> None:
    assert _mapped(Status=status).order_status == "CANCELLED"


def test_the_camel_case_twin_fills_in_when_the_pascal_one_is_empty() -> None:
    assert _mapped(AlgoId="", algoId="ALGO7").algo_id == "ALGO7"


@pytest.mark.parametrize(("code", "side"), [("B", "BUY"), ("S", "SELL"), ("sell", "SELL")])
def test_transaction_codes(code: str, side: str) -> None:
    assert _mapped(TxnType=code).transaction_type == side


@pytest.mark.parametrize(
    ("code", "order_type"),
    [
        ("LMT", "LIMIT"),
        ("MKT", "MARKET"),
        ("SL", "STOP_LOSS"),
        ("SLM", "STOP_LOSS_MARKET"),
        ("SL-M", "STOP_LOSS_MARKET"),
    ],
)
def test_order_type_codes(code: str, order_type: str) -> None:
    assert _mapped(OrderType=code).order_type == order_type


@pytest.mark.parametrize(
    ("code", "product"),
    [("C", "CNC"), ("I", "INTRADAY"), ("M", "MARGIN"), ("F", "MTF"), ("V", "CO"), ("B", "BO")],
)
def test_product_letters(code: str, product: str) -> None:
    assert _mapped(Product=code, LegNo=1).product_type == product


def test_product_name_is_used_when_the_letter_is_missing() -> None:
    assert _mapped(Product=None, ProductName="Margin").product_type == "MARGIN"


def test_an_unknown_product_letter_falls_back_to_the_name_with_a_warning() -> None:
    result = map_order_alert({**_plain(), "Product": "Z", "ProductName": "CNC"})
    assert result.update is not None and result.update.product_type == "CNC"
    assert "Product 'Z' unknown" in result.warnings[0]


@pytest.mark.parametrize(
    ("exchange", "segment", "expected"),
    [
        ("NSE", "E", "NSE_EQ"),
        ("NSE", "D", "NSE_FNO"),
        ("NSE", "C", "NSE_CURRENCY"),
        ("BSE", "E", "BSE_EQ"),
        ("BSE", "D", "BSE_FNO"),
        ("BSE", "C", "BSE_CURRENCY"),
        ("MCX", "M", "MCX_COMM"),
        ("MCX", "D", "MCX_COMM"),
        ("nse", "e", "NSE_EQ"),
    ],
)
def test_exchange_and_segment_make_the_exchange_segment(
    exchange: str, segment: str, expected: str
) -> None:
    assert _mapped(Exchange=exchange, Segment=segment).exchange_segment == expected


def test_a_missing_segment_is_inferred_from_the_instrument_with_a_warning() -> None:
    result = map_order_alert({**_plain(), "Segment": None, "Instrument": "OPTIDX"})
    assert result.update is not None and result.update.exchange_segment == "NSE_FNO"
    assert "inferred from Instrument" in result.warnings[0]


@pytest.mark.parametrize(
    ("leg", "name"),
    [(1, "ENTRY_LEG"), (2, "STOP_LOSS_LEG"), (3, "TARGET_LEG"), ("3", "TARGET_LEG")],
)
def test_leg_numbers_of_bracket_orders(leg: Any, name: str) -> None:
    assert _mapped(Product="B", LegNo=leg).leg_name == name


def test_a_plain_order_has_no_leg_name_although_the_broker_sends_leg_1() -> None:
    assert _mapped(LegNo=1).leg_name is None


def test_a_super_order_leg_has_a_leg_name() -> None:
    assert _mapped(LegNo=1, Remarks="Super Order").leg_name == "ENTRY_LEG"


@pytest.mark.parametrize(
    ("code", "name"), [("CE", "CALL"), ("PE", "PUT"), ("XX", None), ("", None)]
)
def test_option_types(code: str, name: str | None) -> None:
    assert _mapped(OptType=code).drv_option_type == name


def test_an_option_carries_expiry_and_strike() -> None:
    update = _mapped(Segment="D", OptType="PE", ExpiryDate="2024-09-26", StrikePrice=25000)
    assert update.drv_expiry_date == "2024-09-26"
    assert update.drv_strike_price == 25000.0
    assert b'"drvStrikePrice":25000.0' in payload.dumps(update)


def test_the_no_expiry_sentinel_becomes_null() -> None:
    assert _mapped(ExpiryDate="0001-01-01 00:00:00").drv_expiry_date is None


@pytest.mark.parametrize("strike", [None, ""])
def test_an_empty_strike_price_is_zero(strike: Any) -> None:
    assert _mapped(StrikePrice=strike).drv_strike_price == 0.0


def test_an_empty_correlation_id_is_null() -> None:
    assert _mapped(CorrelationId="").correlation_id is None


def test_the_reason_is_the_error_description_of_a_rejection_only() -> None:
    rejected = _mapped(Status="Rejected", ReasonDescription="RMS:Margin Exceeds")
    assert rejected.oms_error_description == "RMS:Margin Exceeds"
    assert rejected.oms_error_code is None
    assert _mapped(ReasonDescription="CONFIRMED").oms_error_description is None


def test_algo_id_comes_from_algo_id_never_from_the_leg_link() -> None:
    assert _mapped(AlgoOrdNo="1124091136546", AlgoId="0").algo_id is None
    assert _mapped(AlgoOrdNo="1124091136546", AlgoId="NSE-ALGO-1").algo_id == "NSE-ALGO-1"


@pytest.mark.parametrize(("flag", "amo"), [("1", True), ("0", False), (1, True), (None, False)])
def test_off_market_flag_is_the_after_market_order(flag: Any, amo: bool) -> None:
    assert _mapped(OffMktFlag=flag).after_market_order is amo


def test_numbers_sent_as_text_are_read() -> None:
    update = _mapped(Quantity="10", TradedQty="4", Price="13.50", OrderNo=1124091136546)
    assert (update.quantity, update.filled_qty, update.price) == (10, 4, 13.5)
    assert update.order_id == "1124091136546"


def test_iso_times_are_written_the_broker_way() -> None:
    update = _mapped(LastUpdatedTime="2021-11-24T08:03:03.120Z")
    assert update.update_time == "2021-11-24 13:33:03"


def test_part_traded_is_sent_as_pending_with_a_warning() -> None:
    result = map_order_alert({**_plain(), "Status": "Part_Traded"})
    assert result.update is not None and result.update.order_status == "PENDING"
    assert result.warnings


def test_an_unreadable_optional_value_is_defaulted_with_a_warning() -> None:
    result = map_order_alert({**_plain(), "TriggerPrice": "n/a", "OptType": "ZZ"})
    assert result.update is not None
    assert result.update.trigger_price == 0.0 and result.update.drv_option_type is None
    assert len(result.warnings) == 2


def test_a_missing_exchange_time_means_never_at_the_exchange_with_a_warning() -> None:
    result = map_order_alert({**_plain(), "ExchOrderTime": ""})
    assert result.update is not None and result.update.exchange_time == "0001-01-01 00:00:00"
    assert "ExchOrderTime missing" in result.warnings[0]


def test_the_never_at_the_exchange_time_is_kept_silently() -> None:
    result = map_order_alert({**_plain(), "ExchOrderTime": "0001-01-01 00:00:00"})
    assert result.update is not None and result.update.exchange_time == "0001-01-01 00:00:00"
    assert result.warnings == ()


def test_a_missing_creation_time_borrows_the_update_time_with_a_warning() -> None:
    result = map_order_alert({**_plain(), "OrderDateTime": None})
    assert result.update is not None
    assert result.update.create_time == result.update.update_time
    assert "OrderDateTime missing" in result.warnings[0]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"Status": "Triggered"}, "Status 'Triggered'"),
        ({"Status": None}, "Status is missing"),
        ({"OrderNo": ""}, "OrderNo is missing"),
        ({"ClientId": None}, "ClientId is missing"),
        ({"TxnType": "X"}, "TxnType 'X'"),
        ({"Exchange": "NYSE"}, "Exchange 'NYSE'"),
        ({"Validity": "GTC"}, "Validity 'GTC'"),
        ({"Quantity": None}, "Quantity is missing"),
        ({"TradedQty": 9}, "filled_qty (9) is larger than quantity (5)"),
        ({"LastUpdatedTime": None, "OrderDateTime": None, "ExchOrderTime": None}, "missing"),
    ],
)
def test_an_update_without_an_honest_postback_is_an_error_not_a_crash(
    changes: dict[str, Any], reason: str
) -> None:
    result = map_order_alert({**_plain(), **changes})
    assert result.update is None
    assert result.error is not None and reason in result.error


_data_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12), st.just("")
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(sorted(_plain())), _data_values, max_size=6))
def test_mapping_never_raises_and_what_it_returns_passes_the_strict_ingest(
    changes: dict[str, Any],
) -> None:
    result = map_order_alert({**_plain(), **changes})
    assert (result.update is None) == (result.error is not None)
    if result.update is not None:
        assert payload.validate_strict(result.update.to_dict()) == result.update
