"""Reading the broker's websocket frames, however broken their JSON is."""

from __future__ import annotations

import json

import pytest

from dhan_postback.relay.mapping import UnreadableFrame, parse_frame, repair_frame


def test_a_valid_order_alert_is_read_without_repair() -> None:
    frame = parse_frame('{"Type":"order_alert","Data":{"OrderNo":"1"}}')
    assert frame.is_order_alert and not frame.repaired
    assert frame.alerts == ({"OrderNo": "1"},)


def test_type_and_data_keys_are_read_in_any_case() -> None:
    frame = parse_frame(b'{"type":"Order_Alert","data":{"orderNo":"1"}}')
    assert frame.is_order_alert
    assert frame.alerts == ({"orderNo": "1"},)


def test_a_data_list_gives_one_alert_per_object() -> None:
    frame = parse_frame('{"Type":"order_alert","Data":[{"OrderNo":"1"},{"OrderNo":"2"}]}')
    assert [alert["OrderNo"] for alert in frame.alerts] == ["1", "2"]


def test_other_message_types_carry_no_alerts() -> None:
    frame = parse_frame('{"Type":"LoginRsp","MsgCode":43}')
    assert not frame.is_order_alert
    assert frame.kind == "LoginRsp" and frame.alerts == ()


def test_a_message_without_type_is_not_an_order_alert() -> None:
    assert not parse_frame("{}").is_order_alert


@pytest.mark.parametrize(
    "raw",
    [
        "not json at all",
        "[1, 2]",
        '"text"',
        "",
        '{"Type":"order_alert"}',
        '{"Type":"order_alert","Data":3}',
    ],
)
def test_unreadable_frames_are_refused_with_a_reason(raw: str) -> None:
    with pytest.raises(UnreadableFrame):
        parse_frame(raw)


@pytest.mark.parametrize(
    ("broken", "fixed"),
    [
        (b'{"a": ,"b":1}', {"a": None, "b": 1}),
        (b'{"a":1 "b":2}', {"a": 1, "b": 2}),
        (
            b'{"a":"x"\n "b":true "c":null "d":{} "e":[]}',
            {"a": "x", "b": True, "c": None, "d": {}, "e": []},
        ),
        (b'{"a":[1,2,],"b":1,}', {"a": [1, 2], "b": 1}),
        (b'{"a":"keep , \\" \\"b\\" inside"}', {"a": 'keep , " "b" inside'}),
    ],
)
def test_repair_fills_holes_and_commas(broken: bytes, fixed: object) -> None:
    assert json.loads(repair_frame(broken)) == fixed


def test_repair_leaves_valid_json_unchanged() -> None:
    text = b'{"a": [1, "2", {"b": null}], "c": "d:, e"}'
    assert repair_frame(text) == text


def test_a_repaired_frame_says_so() -> None:
    frame = parse_frame('{"Type":"order_alert","Data":{"OrderNo":"1" "StrikePrice": }}')
    assert frame.repaired
    assert frame.alerts == ({"OrderNo": "1", "StrikePrice": None},)
