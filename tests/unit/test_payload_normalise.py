"""normalise() skips _loosen for values already in shape; it must never change the outcome."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dhan_postback import payload

_ENUM_SPELLINGS = [v for values in payload._ENUM_OF_FIELD.values() for v in values]
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.sampled_from([*_ENUM_SPELLINGS, "PART_TRADED", "Part_Traded", " traded ", "weird", ""]),
    st.sampled_from(["5", " 7 ", "1.5", "x"]),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(payload.FIELDS), value=_VALUES)
def test_every_field_ends_as_loosen_would_make_it(name: str, value: Any) -> None:
    order_id = value if name == "orderId" else "1"
    if order_id is None or (isinstance(order_id, str) and not order_id.strip()):
        return  # refused before any field is looked at
    obj = {"orderId": order_id, name: value}
    received = payload.normalise(obj)
    unknown: list[str] = []
    expected = None if value is None else payload._loosen(name, value, unknown)
    assert received.fields[name] == expected
    assert type(received.fields[name]) is type(expected)
    assert list(received.unknown_values) == unknown
