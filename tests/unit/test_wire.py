"""The one JSON repair scanner that serves postback bodies and websocket frames alike."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhan_postback import wire

_KEY = st.text(alphabet=st.sampled_from('ab:, "\\'), max_size=4)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from(' ab:,{}[]"\\\n\t'), max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_KEY, children, max_size=3),
    max_leaves=8,
)
_KEYS = st.lists(_KEY, min_size=1, max_size=4, unique=True)


@settings(max_examples=300, deadline=None)
@given(value=_JSON, indent=st.sampled_from([None, 1]), commas=st.booleans())
def test_valid_json_comes_back_unchanged(value: Any, indent: int | None, commas: bool) -> None:
    raw = json.dumps(value, indent=indent).encode()
    assert wire.repair_json(raw, commas=commas) == raw


@settings(max_examples=300, deadline=None)
@given(keys=_KEYS, data=st.data(), commas=st.booleans())
def test_every_value_hole_reads_as_null(keys: list[str], data: st.DataObject, commas: bool) -> None:
    values = [data.draw(st.sampled_from([None, "x: ,}", 1])) for _ in keys]
    members = [
        f"{json.dumps(key)}: {'' if value is None else json.dumps(value)}"
        for key, value in zip(keys, values, strict=True)
    ]
    raw = ("{" + ", ".join(members) + "}").encode()
    assert json.loads(wire.repair_json(raw, commas=commas)) == dict(zip(keys, values, strict=True))


@settings(max_examples=300, deadline=None)
@given(keys=_KEYS, trailing=st.booleans())
def test_missing_and_trailing_commas_are_fixed_only_when_asked(
    keys: list[str], trailing: bool
) -> None:
    raw = ("{" + " ".join(f"{json.dumps(key)}: [1,]" for key in keys)).encode()
    raw += b",}" if trailing else b"}"
    assert json.loads(wire.repair_json(raw, commas=True)) == {key: [1] for key in keys}
    with pytest.raises(json.JSONDecodeError):
        json.loads(wire.repair_json(raw))


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(' :,}]"\\'), max_size=12), commas=st.booleans())
def test_text_inside_strings_is_never_touched(text: str, commas: bool) -> None:
    raw = ('{"a": ' + json.dumps(text) + ' "b": ,}').encode()
    repaired = wire.repair_json(raw, commas=commas)
    assert repaired.startswith(('{"a": ' + json.dumps(text)).encode())


def test_a_hole_before_a_closing_bracket_is_left_broken() -> None:
    """Only object members are holes: ``[1, ]`` is no documented mistake of the broker's."""
    assert wire.repair_json(b"[1, ]") == b"[1, ]"


def test_the_no_date_value_is_a_wire_timestamp() -> None:
    assert re.match(wire.TIME_PATTERN, wire.NO_DATE)
    assert datetime.strptime(wire.NO_DATE, wire.TIME_FORMAT).year == 1


def test_ist_is_five_and_a_half_hours_ahead_of_utc() -> None:
    moment = datetime(2025, 1, 15, 9, 15, tzinfo=wire.IST)
    assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 19800
    assert moment.tzname() == "IST"
