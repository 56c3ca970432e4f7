"""The postback payload: the one contract every part of the system shares.

A postback body is a JSON object with exactly 29 fields, in the order the broker documents
them. This module holds that contract and three ways in and out of it:

* :func:`dumps` turns an :class:`OrderUpdate` into the exact bytes a receiver gets: compact
  UTF-8 JSON, documented field order, ``filled_qty`` in snake_case, floats always as floats.
* :func:`validate_strict` is for the service's ingest: a wrong type, an unknown enum value or
  an unknown field is refused with a message that names the field.
* :func:`parse` is for receivers: it reads what the broker really sends, including the
  documentation's own invalid example (``"legName": ,``), unknown fields, unknown or
  differently cased enum values, and never drops a body it can make sense of.

msgspec does the work on every hot path; nothing here allocates a pydantic model.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final

import msgspec

from .errors import InvalidUpdate, UnreadablePayload
from .jsondepth import check_depth
from .wire import DATE_PATTERN, TIME_PATTERN, repair_json

__all__ = [
    "FIELDS",
    "MAX_ID_LENGTH",
    "MAX_SAFE_INTEGER",
    "MAX_TEXT_LENGTH",
    "MAX_UPDATE_BYTES",
    "TERMINAL_STATUSES",
    "ExchangeSegment",
    "ExpiryDate",
    "LegName",
    "LongText",
    "NonEmpty",
    "OptionType",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "Price",
    "ProductType",
    "Quantity",
    "ReceivedUpdate",
    "ShortText",
    "Timestamp",
    "TransactionType",
    "Validity",
    "check_limits",
    "dumps",
    "normalise",
    "parse",
    "repair_json",
    "validate_strict",
]


class OrderStatus(enum.StrEnum):
    """The statuses the broker documents for a postback."""

    TRANSIT = "TRANSIT"
    PENDING = "PENDING"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    TRADED = "TRADED"
    EXPIRED = "EXPIRED"


class TransactionType(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class ExchangeSegment(enum.StrEnum):
    """The documented list, plus the segments other pages of the same API use."""

    NSE_EQ = "NSE_EQ"
    NSE_FNO = "NSE_FNO"
    NSE_CURRENCY = "NSE_CURRENCY"
    BSE_EQ = "BSE_EQ"
    BSE_FNO = "BSE_FNO"
    BSE_CURRENCY = "BSE_CURRENCY"
    MCX_COMM = "MCX_COMM"
    IDX_I = "IDX_I"


class ProductType(enum.StrEnum):
    CNC = "CNC"
    INTRADAY = "INTRADAY"
    MARGIN = "MARGIN"
    MTF = "MTF"
    CO = "CO"
    BO = "BO"


class OrderType(enum.StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP_LOSS = "STOP_LOSS"
    STOP_LOSS_MARKET = "STOP_LOSS_MARKET"


class Validity(enum.StrEnum):
    DAY = "DAY"
    IOC = "IOC"


class LegName(enum.StrEnum):
    """Which leg of a bracket (or cover) order an update is about."""

    ENTRY_LEG = "ENTRY_LEG"
    TARGET_LEG = "TARGET_LEG"
    STOP_LOSS_LEG = "STOP_LOSS_LEG"


class OptionType(enum.StrEnum):
    CALL = "CALL"
    PUT = "PUT"


TERMINAL_STATUSES: Final = frozenset(
    {OrderStatus.TRADED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)

Timestamp = Annotated[str, msgspec.Meta(pattern=TIME_PATTERN)]
"""``YYYY-MM-DD HH:MM:SS`` in India Standard Time, as the broker writes it."""

MAX_SAFE_INTEGER: Final = 2**53 - 1
"""The largest integer field value ingest accepts: exact in every JSON reader (JavaScript's
``Number.MAX_SAFE_INTEGER``), and far inside what a receiver's SQL column holds."""

MAX_ID_LENGTH: Final = 64
"""Characters in ids, codes and symbols (dhanClientId, orderId, correlationId, ...)."""
MAX_TEXT_LENGTH: Final = 512
"""Characters in ``omsErrorDescription``, the one free-text field."""
MAX_UPDATE_BYTES: Final = 4096
"""Bytes of one update as sent (compact UTF-8 JSON). A real one is under 1 KiB; a receiver's
body limit (the bundled one's is 64 KiB) is far above this, so no accepted update is too big
for the receiver it goes to."""

ExpiryDate = Annotated[str, msgspec.Meta(pattern=DATE_PATTERN)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
ShortText = Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)]
LongText = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_LENGTH)]
Quantity = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INTEGER)]
Price = Annotated[float, msgspec.Meta(ge=0)]


class OrderUpdate(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """One order update, exactly the broker's 29 fields in the broker's order.

    Attributes are snake_case in Python; on the wire they are camelCase, except
    ``filled_qty``, which the broker sends in snake_case. Float fields are stored as floats
    even when built from ints, so that :func:`dumps` always writes ``0.0``, never ``0``.
    """

    dhan_client_id: NonEmpty
    order_id: NonEmpty
    correlation_id: ShortText | None = None
    order_status: OrderStatus
    transaction_type: TransactionType
    exchange_segment: ExchangeSegment
    product_type: ProductType
    order_type: OrderType
    validity: Validity
    trading_symbol: ShortText = ""
    security_id: NonEmpty
    quantity: Quantity
    disclosed_quantity: Quantity = 0
    price: Price = 0.0
    trigger_price: Price = 0.0
    after_market_order: bool = False
    bo_profit_value: Price = 0.0
    bo_stop_loss_value: Price = 0.0
    leg_name: LegName | None = None
    create_time: Timestamp
    update_time: Timestamp
    exchange_time: Timestamp
    drv_expiry_date: ExpiryDate | None = None
    drv_option_type: OptionType | None = None
    drv_strike_price: Price = 0.0
    oms_error_code: ShortText | None = None
    oms_error_description: LongText | None = None
    filled_qty: Quantity = msgspec.field(default=0, name="filled_qty")
    algo_id: ShortText | None = None

    def __post_init__(self) -> None:
        for name in _FLOAT_ATTRS:
            value = getattr(self, name)
            if type(value) is not float:
                msgspec.structs.force_setattr(self, name, float(value))

    def replace(self, **changes: Any) -> OrderUpdate:
        """A copy with some fields changed (the struct itself is immutable)."""
        return msgspec.structs.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The wire form as a plain dict (camelCase keys, enum values as strings)."""
        result: dict[str, Any] = msgspec.to_builtins(self)
        return result


_FLOAT_ATTRS: Final = (
    "price",
    "trigger_price",
    "bo_profit_value",
    "bo_stop_loss_value",
    "drv_strike_price",
)

FIELDS: Final[tuple[str, ...]] = tuple(f.encode_name for f in msgspec.structs.fields(OrderUpdate))
"""The 29 wire names, in the documented order."""

assert len(FIELDS) == 29, FIELDS
_FIELD_SET: Final = frozenset(FIELDS)

_encoder = msgspec.json.Encoder()


def dumps(update: OrderUpdate) -> bytes:
    """The exact body the broker would POST for ``update``."""
    return _encoder.encode(update)


# --------------------------------------------------------------------------------------------
# Strict: the service's ingest.


def validate_strict(obj: Any) -> OrderUpdate:
    """Turn one decoded JSON object into an :class:`OrderUpdate`, or refuse it.

    Refuses unknown fields, missing required fields, wrong types (``"5"`` for an int, ``1``
    for a bool), unknown enum values and malformed times, and a ``filled_qty`` larger than
    ``quantity``. The :class:`~dhan_postback.errors.InvalidUpdate` raised names the field.

    It also refuses what some receiver could not hold, so that one accepted update can never
    be refused by its receiver on every retry: an integer above :data:`MAX_SAFE_INTEGER`, a
    string longer than its field's maximum (:data:`MAX_ID_LENGTH`, :data:`MAX_TEXT_LENGTH`),
    and an update larger than :data:`MAX_UPDATE_BYTES` as sent.
    """
    if isinstance(obj, dict):
        for name in obj:
            if name not in _FIELD_SET:
                raise InvalidUpdate(f"unknown field `{name}`", field=str(name))
    try:
        update = msgspec.convert(obj, OrderUpdate, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidUpdate(_describe(exc), field=_field_of(exc)) from None
    check_limits(update)
    return update


def check_limits(update: OrderUpdate) -> None:
    """The rules of :func:`validate_strict` that the types alone do not express: a
    ``filled_qty`` no larger than ``quantity``, and at most :data:`MAX_UPDATE_BYTES` as sent."""
    if update.filled_qty > update.quantity:
        raise InvalidUpdate(
            f"filled_qty ({update.filled_qty}) is larger than quantity ({update.quantity})",
            field="filled_qty",
        )
    size = len(dumps(update))
    if size > MAX_UPDATE_BYTES:
        raise InvalidUpdate(
            f"the update is {size} bytes as sent; at most {MAX_UPDATE_BYTES} are accepted "
            "(non-ASCII text and escaped characters take several bytes each)"
        )


_FIELD_IN_PATH = re.compile(r"at `\$(?:\[\d+\])?\.([A-Za-z_]+)")
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")


def _field_of(exc: msgspec.ValidationError) -> str | None:
    text = str(exc)
    for pattern in (_UNKNOWN_FIELD, _MISSING_FIELD, _FIELD_IN_PATH):
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def _describe(exc: msgspec.ValidationError) -> str:
    """msgspec's message, with ``$.field`` paths spelled as plain field names."""
    text = str(exc)
    field = _field_of(exc)
    if "Invalid enum value" in text and field is not None:
        allowed = _ENUM_OF_FIELD.get(field)
        if allowed is not None:
            text += f" (allowed: {', '.join(allowed)})"
    if "matching regex" in text and field is not None:
        shape = "YYYY-MM-DD HH:MM:SS" if field != "drvExpiryDate" else "YYYY-MM-DD"
        return f"`{field}` must be a time written {shape}"
    return text.replace("`$.", "`").replace("`$`", "the update")


# --------------------------------------------------------------------------------------------
# Tolerant: receivers.


class ReceivedUpdate(msgspec.Struct, kw_only=True, frozen=True):
    """A postback as a receiver read it: never refused for a value it does not know.

    ``fields`` holds the 29 documented fields in documented order (absent ones as ``None``)
    followed by any extra fields the sender added. Enum values are upper-cased when that
    makes them known (``"Cancelled"`` becomes ``"CANCELLED"``); values still unknown are
    kept as they came and listed in ``unknown_values``. So is an integer too large for a
    64-bit column (``quantity=out of range``): kept in ``fields`` as sent, counted as 0 by
    :attr:`quantity` and :attr:`filled_qty`, so that storing it can never fail. ``repaired``
    says the body was not valid JSON but was made readable (the documentation's
    ``"legName": ,`` hole).
    """

    fields: dict[str, Any]
    unknown_values: tuple[str, ...] = ()
    extra_fields: tuple[str, ...] = ()
    missing_fields: tuple[str, ...] = ()
    repaired: bool = False

    @property
    def dhan_client_id(self) -> str | None:
        return _opt_str(self.fields.get("dhanClientId"))

    @property
    def order_id(self) -> str | None:
        return _opt_str(self.fields.get("orderId"))

    @property
    def order_status(self) -> str | None:
        return _opt_str(self.fields.get("orderStatus"))

    @property
    def update_time(self) -> str | None:
        return _opt_str(self.fields.get("updateTime"))

    @property
    def filled_qty(self) -> int:
        """``filled_qty`` as the order book counts it: 0 unless an integer a database holds."""
        return _countable(self.fields.get("filled_qty"))

    @property
    def quantity(self) -> int:
        return _countable(self.fields.get("quantity"))

    def to_update(self) -> OrderUpdate:
        """The strict form, when every documented value is present and known."""
        documented = {name: self.fields[name] for name in FIELDS if self.fields[name] is not None}
        return msgspec.convert(documented, OrderUpdate)


_STORABLE_INT: Final = 2**63 - 1
"""The largest integer a 64-bit SQL column holds: a receiver storing a larger one fails."""


def _countable(value: Any) -> int:
    if type(value) is int and -_STORABLE_INT <= value <= _STORABLE_INT:
        return value
    return 0


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


_ENUM_OF_FIELD: Final[dict[str, tuple[str, ...]]] = {
    "orderStatus": tuple(OrderStatus),
    "transactionType": tuple(TransactionType),
    "exchangeSegment": tuple(ExchangeSegment),
    "productType": tuple(ProductType),
    "orderType": tuple(OrderType),
    "validity": tuple(Validity),
    "legName": tuple(LegName),
    "drvOptionType": tuple(OptionType),
}

_EXTRA_KNOWN_STATUSES: Final = frozenset({"PART_TRADED"})
"""Statuses the broker's order book shows though the postback page does not list them."""

_INT_FIELDS: Final = frozenset({"quantity", "disclosedQuantity", "filled_qty"})
_FLOAT_FIELDS: Final = frozenset(
    {"price", "triggerPrice", "boProfitValue", "boStopLossValue", "drvStrikePrice"}
)

_decoder = msgspec.json.Decoder()


def parse(body: bytes | str) -> ReceivedUpdate:
    """Read a postback body the way a forgiving receiver must.

    Raises :class:`~dhan_postback.errors.UnreadablePayload` only when the body is not a JSON
    object even after repair, has no ``orderId`` (a body without an order id cannot be
    stored against any order), or nests deeper than
    :data:`~dhan_postback.jsondepth.MAX_DEPTH` (no decoder could read it without
    exhausting the stack).
    """
    raw = body.encode() if isinstance(body, str) else body
    check_depth(raw)
    repaired = False
    try:
        obj = _decoder.decode(raw)
    except msgspec.DecodeError as first_error:
        fixed = repair_json(raw)
        if fixed == raw:
            raise UnreadablePayload(f"body is not JSON: {first_error}") from None
        try:
            obj = _decoder.decode(fixed)
        except msgspec.DecodeError as exc:
            raise UnreadablePayload(f"body is not JSON: {exc}") from None
        repaired = True
    if not isinstance(obj, dict):
        raise UnreadablePayload(f"body is a JSON {type(obj).__name__}, not an object")
    return normalise(obj, repaired=repaired)


def normalise(obj: Mapping[str, Any], *, repaired: bool = False) -> ReceivedUpdate:
    """Arrange a decoded object into a :class:`ReceivedUpdate` (the rest of :func:`parse`)."""
    order_id = obj.get("orderId")
    if order_id is None or (isinstance(order_id, str) and not order_id.strip()):
        raise UnreadablePayload("body has no orderId")
    fields: dict[str, Any] = {}
    unknown: list[str] = []
    missing: list[str] = []
    for name, kind, known in _FIELD_KINDS:
        value = obj.get(name, _ABSENT)
        if value is _ABSENT:
            missing.append(name)
            value = None
        elif value is not None and kind is not _PLAIN and not _in_shape(value, kind, known):
            value = _loosen(name, value, unknown)
        fields[name] = value
    if len(obj) == len(FIELDS) - len(missing):  # every key is a documented field
        extra: tuple[str, ...] = ()
    else:
        extra = tuple(name for name in obj if name not in fields)
        for name in extra:
            fields[name] = obj[name]
    return ReceivedUpdate(
        fields=fields,
        unknown_values=tuple(unknown),
        extra_fields=extra,
        missing_fields=tuple(missing),
        repaired=repaired,
    )


# The receiver's hot path: most values arrive exactly as they should be kept, and checking that
# is much cheaper than calling _loosen for each of the 29 fields. _loosen stays the one place
# that decides what a value becomes; _in_shape only says "nothing to do".
_ABSENT: Final = object()
_PLAIN, _ENUM, _INT, _FLOAT, _ID = "plain", "enum", "int", "float", "id"


def _kind_of(name: str) -> tuple[str, str, frozenset[str]]:
    if name in _ENUM_OF_FIELD:
        known = frozenset(_ENUM_OF_FIELD[name])
        if name == "orderStatus":
            known |= _EXTRA_KNOWN_STATUSES
        return (name, _ENUM, frozenset(str(value) for value in known))
    if name in _INT_FIELDS:
        return (name, _INT, frozenset())
    if name in _FLOAT_FIELDS:
        return (name, _FLOAT, frozenset())
    if name in ("orderId", "dhanClientId", "securityId"):
        return (name, _ID, frozenset())
    return (name, _PLAIN, frozenset())


def _in_shape(value: Any, kind: str, known: frozenset[str]) -> bool:
    """Whether :func:`_loosen` would return ``value`` unchanged and flag nothing."""
    if kind is _ENUM:
        return type(value) is str and value in known
    if kind is _INT:
        return type(value) is int and -_STORABLE_INT <= value <= _STORABLE_INT
    if kind is _FLOAT:
        return type(value) is float
    return type(value) is str  # _ID


_FIELD_KINDS: Final = tuple(_kind_of(name) for name in FIELDS)


def _loosen(name: str, value: Any, unknown: list[str]) -> Any:
    allowed = _ENUM_OF_FIELD.get(name)
    if allowed is not None:
        text = str(value).strip()
        upper = text.upper()
        if upper in allowed:
            return upper
        if name == "orderStatus" and upper in _EXTRA_KNOWN_STATUSES:
            return upper
        unknown.append(f"{name}={text}")
        return text
    if name in _INT_FIELDS:
        number = _as_int(value)
        if type(number) is int and not -_STORABLE_INT <= number <= _STORABLE_INT:
            unknown.append(f"{name}=out of range")  # kept as sent; the book counts it as 0
        return number
    if name in _FLOAT_FIELDS:
        return _as_float(value)
    if name in ("orderId", "dhanClientId", "securityId") and not isinstance(value, str):
        return str(value)
    return value


def _as_int(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return value
    return value


def _as_float(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value
