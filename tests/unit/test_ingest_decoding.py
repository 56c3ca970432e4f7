"""decode_updates reads a valid body in one typed pass: it must accept exactly what the
field-by-field rules (payload.validate_strict on each decoded object) accept, give the same
updates, and refuse the rest with the same error, index and field."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dhan_postback import payload
from dhan_postback.errors import DhanPostbackError, InvalidUpdate
from dhan_postback.service.ingest import decode_updates
from tests.helpers.updates import update

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "BUY", "PENDING", "NSE_EQ", "CALL", "2024-05-02 09:15:01", "x" * 600]),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_FIELDS = st.sampled_from([*payload.FIELDS, "surprise", "OrderId", "filledQty"])


@st.composite
def _objects(draw: st.DrawFn) -> dict[str, Any]:
    """The documented example with a few fields set to anything, dropped or added."""
    obj = update(order_id=draw(st.text(min_size=1, max_size=6)))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(_FIELDS)
        if draw(st.booleans()):
            obj[name] = draw(_VALUES)
        else:
            obj.pop(name, None)
    return obj


_BODIES = st.one_of(
    _objects().map(json.dumps),
    st.lists(_objects(), min_size=1, max_size=3).map(json.dumps),
    _objects().map(lambda obj: json.dumps(obj)[:-1] + ', "orderId": "again"}'),  # a key twice
)


def _field_by_field(body: bytes) -> list[payload.OrderUpdate]:
    """The rules one object at a time, as the API states them."""
    decoded = msgspec.json.decode(body)
    if isinstance(decoded, dict):
        return [payload.validate_strict(decoded)]
    updates = []
    for index, item in enumerate(decoded):
        try:
            updates.append(payload.validate_strict(item))
        except InvalidUpdate as exc:
            raise InvalidUpdate(exc.message, field=exc.field, index=index) from None
    return updates


def _outcome(read: Any, body: bytes) -> tuple[str, Any]:
    try:
        updates = read(body)
    except DhanPostbackError as exc:
        return "refused", (type(exc), str(exc), getattr(exc, "field", None))
    return "accepted", [(msgspec.structs.asdict(u), payload.dumps(u)) for u in updates]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_BODIES)
def test_one_pass_and_field_by_field_agree_on_every_body(text: str) -> None:
    body = text.encode()
    ours = _outcome(lambda b: decode_updates(b, max_batch=10)[0], body)
    assert ours == _outcome(_field_by_field, body)


def test_a_valid_update_is_read_as_the_update_it_spells() -> None:
    (read,), _ = decode_updates(json.dumps(update(order_id="7")).encode(), max_batch=1)
    assert msgspec.structs.asdict(read) == msgspec.structs.asdict(
        payload.validate_strict(update(order_id="7"))
    )
    assert isinstance(read, payload.OrderUpdate)


def test_a_filled_qty_above_quantity_in_a_batch_is_refused_naming_its_index() -> None:
    body = json.dumps([update(), {**update(), "quantity": 5, "filled_qty": 6}]).encode()
    with pytest.raises(InvalidUpdate, match="filled_qty") as caught:
        decode_updates(body, max_batch=5)
    assert (caught.value.index, caught.value.field) == (1, "filled_qty")
