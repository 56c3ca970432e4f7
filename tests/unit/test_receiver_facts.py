"""read_facts() decodes only what the store and the book need; it must always agree with
payload.parse(), which the handlers get and which decides every tolerated value."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhan_postback import payload
from dhan_postback.errors import UnreadablePayload
from dhan_postback.receiver import facts
from dhan_postback.receiver.facts import Facts, facts_of, read_facts
from tests.helpers.updates import simulated_bodies, update, update_body

_encode = msgspec.json.Encoder().encode


def full_read(body: bytes) -> Facts:
    return facts_of(payload.parse(body))


def test_a_documented_update_is_read_without_the_full_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def not_called(body: bytes) -> Any:
        raise AssertionError("payload.parse was called")

    monkeypatch.setattr(facts, "parse", not_called)
    body = update_body("7", "PART_TRADED", "2024-01-02 10:00:01", 4, leg_name="TARGET_LEG")
    assert read_facts(body) == Facts(
        "7", "TARGET_LEG", "1000000003", "PART_TRADED", "2024-01-02 10:00:01", 4, 10, None
    )


def test_the_docs_invalid_example_is_read_through_the_repair(docs_example: bytes) -> None:
    assert read_facts(docs_example) == full_read(docs_example)
    assert read_facts(docs_example).order_id == "112111182198"


def test_every_simulated_update_gives_the_facts_of_the_full_parse() -> None:
    bodies = simulated_bodies(60, seed=3)
    assert [read_facts(body) for body in bodies] == [full_read(body) for body in bodies]


@pytest.mark.parametrize(
    "changes",
    [
        {"orderStatus": "Traded"},
        {"orderStatus": "TRIGGERED"},
        {"transactionType": "buy"},
        {"legName": ""},
        {"drvOptionType": "STRADDLE"},
        {"quantity": 2**63},
        {"disclosedQuantity": -(2**64)},
        {"filled_qty": 5.0},
        {"filled_qty": True},
        {"quantity": "12"},
        {"orderId": 112111182198},
        {"dhanClientId": 1000000003},
        {"updateTime": 20240102},
        {"somethingNew": {"nested": [1, 2, {"x": 2**70}]}},
        {"price": "free"},
    ],
    ids=lambda changes: ",".join(f"{k}={v!r}" for k, v in changes.items()),
)
def test_a_tolerated_value_gives_the_facts_of_the_full_parse(changes: dict[str, Any]) -> None:
    body = _encode(update(order_id="9", **changes))
    assert read_facts(body) == full_read(body)


def test_a_missing_field_reads_as_none_or_zero_like_the_full_parse() -> None:
    fields = update(order_id="9")
    for name in ("legName", "dhanClientId", "orderStatus", "updateTime", "quantity", "filled_qty"):
        del fields[name]
    body = _encode(fields)
    assert read_facts(body) == full_read(body) == Facts("9", "", None, None, None, 0, 0, None)


def test_a_repeated_key_counts_its_last_value_like_the_full_parse() -> None:
    body = update_body("9", "PENDING").replace(
        b'"orderStatus":"PENDING"', b'"orderStatus":"PENDING","orderStatus":"TRADED"'
    )
    assert read_facts(body) == full_read(body)
    assert read_facts(body).status == "TRADED"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'"just a string"',
        b'{"orderStatus": "TRADED"}',
        b'{"orderId": "   "}',
        b'{"orderId": null}',
        b'{"orderId": "1", "x": ' + b"[" * 40 + b"]" * 40 + b"}",
        b"\xff\xfe",
    ],
)
def test_an_unreadable_body_is_refused_with_the_full_parse_s_reason(body: bytes) -> None:
    with pytest.raises(UnreadablePayload) as full:
        payload.parse(body)
    with pytest.raises(UnreadablePayload) as quick:
        read_facts(body)
    assert quick.value.message == full.value.message


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.sampled_from(["TRADED", "Part_Traded", " cancelled ", "ENTRY_LEG", "SELL", "NSE_FNO"]),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from([*payload.FIELDS, "extra"]), value=_VALUES)
def test_any_value_of_any_field_gives_what_the_full_parse_gives(name: str, value: Any) -> None:
    body = _encode(update(order_id="5", **{name: value}))
    try:
        expected: Facts | str = full_read(body)
    except UnreadablePayload as exc:
        expected = exc.message
    try:
        got: Facts | str = read_facts(body)
    except UnreadablePayload as exc:
        got = exc.message
    assert got == expected
