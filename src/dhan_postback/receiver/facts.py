"""The few facts of a postback that recording it needs, read without reading the rest.

The store keeps the body as it came. De-duplication needs none of it (the key is the
``webhook-id`` or the body's hash), and the order book needs the order and its leg, the client,
the status, the update time, the two quantities, and whether any value was unknown (the
``unknown_values`` column). :func:`read_facts` decodes just those: a msgspec Struct of a dozen
fields, the other seventeen skipped by the decoder, no dict and no per-field normalising. That
is a fraction of :func:`dhan_postback.payload.parse`, which the handlers still get, after the
commit, exactly as before.

The quick way is taken only when the body is what the broker documents for every field it
looks at: valid JSON, an object, enum values spelled as documented, integers a 64-bit column
holds, ids and times as strings. Anything else (the documentation's own invalid example, a
title-case status, an ``orderId`` sent as a number) goes through ``payload.parse``, which stays
the one place that decides what a tolerated value becomes; the unit tests hold both ways to
the same facts.
"""

from __future__ import annotations

import enum
import typing
from typing import Annotated, Any, Final, NamedTuple

import msgspec

from ..errors import UnreadablePayload
from ..jsondepth import check_depth
from ..lifecycle import KNOWN_STATUSES
from ..payload import OrderUpdate, ReceivedUpdate, parse

__all__ = ["Facts", "facts_of", "read_facts"]


class Facts(NamedTuple):
    """What the store writes about one update besides its body (its columns, in effect)."""

    order_id: str
    leg_name: str
    """``""`` when the update is not about a bracket-order leg."""
    client_id: str | None
    status: str | None
    update_time: str | None
    filled_qty: int
    """As the book counts it: 0 unless an integer a 64-bit column holds (so ``quantity``)."""
    quantity: int
    unknown_values: str | None
    """``field=value`` for each value the reader did not know, comma-separated; or None."""


def facts_of(update: ReceivedUpdate) -> Facts:
    """The facts of an update read in full by :func:`dhan_postback.payload.parse`."""
    order_id = update.order_id
    assert order_id is not None  # parse() refuses a body without one
    leg = update.fields.get("legName")
    return Facts(
        order_id,
        leg if isinstance(leg, str) else "",
        update.dhan_client_id,
        update.order_status,
        update.update_time,
        update.filled_qty,
        update.quantity,
        ",".join(update.unknown_values) or None,
    )


def read_facts(body: bytes) -> Facts:
    """The facts of a postback body; raises :class:`~dhan_postback.errors.UnreadablePayload`
    where :func:`~dhan_postback.payload.parse` would (then nothing is recorded)."""
    check_depth(body)
    try:
        wire = _decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return facts_of(parse(body))
    order_id = wire.order_id
    if not order_id.strip():
        raise UnreadablePayload("body has no orderId")
    return Facts(
        order_id,
        wire.leg_name or "",
        wire.dhan_client_id,
        wire.order_status,
        wire.update_time,
        wire.filled_qty or 0,
        wire.quantity or 0,
        None,
    )


# The quick reader's types say "exactly as documented": an enum field takes only its documented
# values (the order status also PART_TRADED, as payload.parse does), an integer only what a
# 64-bit column holds. They are derived from OrderUpdate, the contract itself, so a value the
# contract learns is known here too.

_STORABLE_INT: Final = 2**63 - 1
_Countable = Annotated[int, msgspec.Meta(ge=-_STORABLE_INT, le=_STORABLE_INT)]


def _base_type(annotation: Any) -> Any:
    """``X`` of ``X``, ``X | None`` and ``Annotated[X, ...]``."""
    if typing.get_origin(annotation) is Annotated:
        return _base_type(typing.get_args(annotation)[0])
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if len(args) == 1:
        return _base_type(args[0])
    return annotation


def _wire_fields() -> list[tuple[str, Any, Any]]:
    fields: list[tuple[str, Any, Any]] = [
        ("order_id", str, msgspec.field(name="orderId")),
        ("dhan_client_id", str | None, msgspec.field(default=None, name="dhanClientId")),
        ("update_time", str | None, msgspec.field(default=None, name="updateTime")),
    ]
    for field in msgspec.structs.fields(OrderUpdate):
        kind = _base_type(field.type)
        if field.encode_name == "orderStatus":
            values: tuple[str, ...] = tuple(sorted(str(status) for status in KNOWN_STATUSES))
        elif isinstance(kind, type) and issubclass(kind, enum.StrEnum):
            values = tuple(member.value for member in kind)
        elif kind is int:
            wire_type: Any = _Countable | None
            fields.append(
                (field.name, wire_type, msgspec.field(default=None, name=field.encode_name))
            )
            continue
        else:
            continue
        literal: Any = typing.Literal.__getitem__(values)
        fields.append(
            (field.name, literal | None, msgspec.field(default=None, name=field.encode_name))
        )
    return fields


_Wire: Any = msgspec.defstruct("_Wire", _wire_fields(), frozen=True, gc=False)
_decode: Final = msgspec.json.Decoder(_Wire).decode
