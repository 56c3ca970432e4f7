"""From the broker's order-update websocket to the postback payload.

The websocket sends ``{"Type": "order_alert", "Data": {...}}`` frames whose ``Data`` uses the
broker's internal names and short codes (``TxnType: "B"``, ``Product: "I"``,
``Exchange: "NSE"`` + ``Segment: "E"``). A postback carries the same facts in 29 documented
fields. This module translates one into the other, forgiving what the broker is known to do
(the documentation's JSON is broken, keys arrive in PascalCase or camelCase, statuses in any
case) and strict about what it hands on: every update it returns has passed
:func:`~dhan_postback.payload.validate_strict`, the check the service's ingest runs, so a
mapped update is never refused downstream for its shape.

Two functions do the work:

* :func:`parse_frame` turns a raw frame into a :class:`Frame` (repairing JSON if needed);
* :func:`map_order_alert` turns one ``Data`` object into a :class:`MappingResult`: the
  update plus warnings about values it had to drop or default, or the reason it could not
  map the update at all (then the caller dead-letters it);
* :func:`map_book_row` does the same for a row of the REST order book (``GET /v2/orders``),
  whose names are mostly the postback's own (``filledQty`` is ``filled_qty``).

The translation table lives in ``docs/relay.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgspec

from ..errors import InvalidUpdate, UnreadablePayload
from ..payload import (
    ExchangeSegment,
    LegName,
    OptionType,
    OrderStatus,
    OrderType,
    OrderUpdate,
    ProductType,
    TransactionType,
    Validity,
    validate_strict,
)
from ..wire import DATE_PATTERN, IST, NO_DATE, TIME_FORMAT, TIME_PATTERN, repair_json

__all__ = [
    "NOT_AT_EXCHANGE",
    "NO_EXPIRY",
    "ORDER_ALERT",
    "Frame",
    "MappingResult",
    "UnreadableFrame",
    "map_book_row",
    "map_order_alert",
    "parse_frame",
    "repair_frame",
]

ORDER_ALERT: Final = "order_alert"
"""The ``Type`` of the frames that carry an order update; every other type is not one."""

NO_EXPIRY: Final = NO_DATE
"""The broker's "no date" value (``ExpiryDate`` of a non-derivative, for example)."""

NOT_AT_EXCHANGE: Final = NO_EXPIRY
"""``exchangeTime`` of an order that has not reached the exchange: the same "no date"."""


class UnreadableFrame(UnreadablePayload):
    """A frame that is not a JSON object even after repair, or an alert without ``Data``."""


# --------------------------------------------------------------------------------------------
# Frames.


@dataclass(frozen=True, slots=True)
class Frame:
    """One websocket message, decoded.

    ``kind`` is the message's ``Type`` as sent (``""`` when it has none); ``alerts`` holds the
    ``Data`` objects of an ``order_alert`` (one, or several if ``Data`` is a list), and is
    empty for every other kind. ``repaired`` says the JSON was broken and had to be fixed.
    """

    kind: str
    alerts: tuple[Mapping[str, Any], ...]
    message: Mapping[str, Any]
    repaired: bool = False

    @property
    def is_order_alert(self) -> bool:
        return self.kind.strip().lower() == ORDER_ALERT


_decoder = msgspec.json.Decoder()


def parse_frame(raw: str | bytes) -> Frame:
    """Decode one frame, repairing the ways the broker's documented JSON is broken.

    Raises :class:`UnreadableFrame` when the frame is not a JSON object even after repair,
    or is an ``order_alert`` without a ``Data`` object.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    repaired = False
    try:
        message = _decoder.decode(data)
    except msgspec.DecodeError as first_error:
        fixed = repair_frame(data)
        try:
            message = _decoder.decode(fixed)
        except msgspec.DecodeError:
            raise UnreadableFrame(f"frame is not JSON: {first_error}") from None
        repaired = True
    if not isinstance(message, dict):
        raise UnreadableFrame(f"frame is a JSON {type(message).__name__}, not an object")
    top = _Folded(message)
    kind = top.get("type")
    frame = Frame(
        kind="" if kind is None else str(kind), alerts=(), message=message, repaired=repaired
    )
    if not frame.is_order_alert:
        return frame
    body = top.get("data")
    items: Sequence[Any] = body if isinstance(body, list) else [body]
    alerts = tuple(item for item in items if isinstance(item, dict))
    if not alerts:
        raise UnreadableFrame("order_alert frame has no Data object")
    return dataclasses.replace(frame, alerts=alerts)


def repair_frame(raw: bytes) -> bytes:
    """Fix the broker documentation's JSON: value holes, missing and trailing commas.

    Value holes (``"StrikePrice": ,``) become ``null``, as in a postback body; a missing
    comma between a value and the next key (``"multiplier":1 "Remarks":...``) is put back; a
    trailing comma before ``}`` or ``]`` is dropped. Text inside strings is never touched.
    Anything broken in another way stays broken. (:func:`dhan_postback.wire.repair_json`
    with ``commas``.)
    """
    return repair_json(raw, commas=True)


# --------------------------------------------------------------------------------------------
# Data objects.


class _Folded:
    """A JSON object read with keys folded to lower case.

    The broker's frames come with PascalCase keys (``OrderNo``), camelCase ones (``orderNo``),
    or both (``AlgoId`` and its twin ``algoId``). When twins disagree, the first one that is
    not empty wins.
    """

    __slots__ = ("_values",)

    def __init__(self, obj: Mapping[str, Any]) -> None:
        values: dict[str, Any] = {}
        for key, value in obj.items():
            folded = str(key).lower()
            if folded not in values or _blank(values[folded]):
                values[folded] = value
        self._values = values

    def get(self, *names: str) -> Any:
        """The first non-blank value among ``names`` (lower-case), or None."""
        for name in names:
            value = self._values.get(name)
            if not _blank(value):
                return value
        return None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@dataclass(frozen=True, slots=True)
class MappingResult:
    """What :func:`map_order_alert` made of one ``Data`` object.

    Either ``update`` is set (possibly with ``warnings`` about values that were dropped or
    defaulted), or ``error`` says why no valid postback can be made from it.
    """

    update: OrderUpdate | None
    warnings: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.update is not None


_STATUSES: Final[dict[str, OrderStatus]] = {status.value: status for status in OrderStatus}
_PART_TRADED: Final = frozenset({"PART_TRADED", "PARTIALLY_TRADED", "PARTIALLY_FILLED"})

_TRANSACTION_TYPES: Final = {
    "B": TransactionType.BUY,
    "BUY": TransactionType.BUY,
    "S": TransactionType.SELL,
    "SELL": TransactionType.SELL,
}

_ORDER_TYPES: Final = {  # keys have "-", "_" and spaces removed
    "LMT": OrderType.LIMIT,
    "LIMIT": OrderType.LIMIT,
    "MKT": OrderType.MARKET,
    "MARKET": OrderType.MARKET,
    "SL": OrderType.STOP_LOSS,
    "STOPLOSS": OrderType.STOP_LOSS,
    "SLM": OrderType.STOP_LOSS_MARKET,
    "STOPLOSSMARKET": OrderType.STOP_LOSS_MARKET,
}

_PRODUCT_CODES: Final = {
    "C": ProductType.CNC,
    "I": ProductType.INTRADAY,
    "M": ProductType.MARGIN,
    "F": ProductType.MTF,
    "V": ProductType.CO,
    "B": ProductType.BO,
}
_PRODUCT_NAMES: Final[dict[str, ProductType]] = {p.value: p for p in ProductType}

_VALIDITIES: Final[dict[str, Validity]] = {v.value: v for v in Validity}

_SEGMENTS: Final = {
    ("NSE", "E"): ExchangeSegment.NSE_EQ,
    ("NSE", "D"): ExchangeSegment.NSE_FNO,
    ("NSE", "C"): ExchangeSegment.NSE_CURRENCY,
    ("BSE", "E"): ExchangeSegment.BSE_EQ,
    ("BSE", "D"): ExchangeSegment.BSE_FNO,
    ("BSE", "C"): ExchangeSegment.BSE_CURRENCY,
    ("MCX", "M"): ExchangeSegment.MCX_COMM,
    ("MCX", "D"): ExchangeSegment.MCX_COMM,
}
_EXCHANGE_SEGMENTS: Final[dict[str, ExchangeSegment]] = {s.value: s for s in ExchangeSegment}

_LEGS: Final = {1: LegName.ENTRY_LEG, 2: LegName.STOP_LOSS_LEG, 3: LegName.TARGET_LEG}
_LEG_PRODUCTS: Final = frozenset({ProductType.BO, ProductType.CO})
_SUPER_ORDER: Final = "super order"

_OPTION_TYPES: Final = {
    "CE": OptionType.CALL,
    "CALL": OptionType.CALL,
    "PE": OptionType.PUT,
    "PUT": OptionType.PUT,
}
_NOT_AN_OPTION: Final = frozenset({"XX", "NA", "-"})

_NO_ALGO: Final = frozenset({"0", "0.0"})

_TIME = re.compile(TIME_PATTERN)
_LOOSE_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)
_DATE = re.compile(DATE_PATTERN)


def map_order_alert(data: Mapping[str, Any]) -> MappingResult:
    """Translate one ``order_alert`` ``Data`` object into the postback payload.

    Never raises for what the broker sends: unknown or unreadable values of optional fields
    are defaulted and reported in ``warnings``; a missing or unknown value of a field the
    payload cannot do without (ids, status, side, segment, product, order type, validity,
    quantity, a time) makes it an ``error``.
    """
    mapper = _Mapper(_Folded(data))
    try:
        wire = mapper.wire()
        update = validate_strict(wire)
    except _Unmappable as exc:
        return MappingResult(update=None, warnings=tuple(mapper.warnings), error=str(exc))
    except InvalidUpdate as exc:
        return MappingResult(update=None, warnings=tuple(mapper.warnings), error=exc.message)
    return MappingResult(update=update, warnings=tuple(mapper.warnings))


_Code = TypeVar("_Code")


class _Unmappable(Exception):
    """A required value is missing or unknown: there is no honest postback to make."""


class _Mapper:
    """One translation, collecting warnings as it goes."""

    def __init__(self, fields: _Folded) -> None:
        self.fields = fields
        self.warnings: list[str] = []

    def wire(self) -> dict[str, Any]:
        f = self.fields
        status = self.status()
        product = self.product()
        update_time, create_time, exchange_time = self.times()
        return {
            "dhanClientId": self.required_id("ClientId", "clientid", "dhanclientid"),
            "orderId": self.required_id("OrderNo", "orderno", "orderid"),
            "correlationId": self.optional_text(f.get("correlationid")),
            "orderStatus": status.value,
            "transactionType": self.code(
                "TxnType", _TRANSACTION_TYPES, "txntype", "transactiontype"
            ).value,
            "exchangeSegment": self.segment().value,
            "productType": product.value,
            "orderType": self.order_type().value,
            "validity": self.code("Validity", _VALIDITIES, "validity").value,
            "tradingSymbol": self.optional_text(f.get("symbol", "tradingsymbol")) or "",
            "securityId": self.required_id("SecurityId", "securityid"),
            "quantity": self.count("Quantity", f.get("quantity"), required=True),
            "disclosedQuantity": self.count(
                "DiscQuantity", f.get("discquantity", "disclosedquantity")
            ),
            "price": self.amount("Price", f.get("price")),
            "triggerPrice": self.amount("TriggerPrice", f.get("triggerprice")),
            "afterMarketOrder": self.after_market(),
            "boProfitValue": 0.0,
            "boStopLossValue": 0.0,
            "legName": self.leg(product),
            "createTime": create_time,
            "updateTime": update_time,
            "exchangeTime": exchange_time,
            "drvExpiryDate": self.expiry(),
            "drvOptionType": self.option_type(),
            "drvStrikePrice": self.amount("StrikePrice", f.get("strikeprice")),
            "omsErrorCode": None,
            "omsErrorDescription": self.error_description(status),
            "filled_qty": self.count("TradedQty", f.get("tradedqty", "filled_qty")),
            "algoId": self.algo_id(),
        }

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    # Identities and codes ----------------------------------------------------------------

    def required_id(self, label: str, *names: str) -> str:
        value = self.fields.get(*names)
        if value is None:
            raise _Unmappable(f"{label} is missing")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _Unmappable(f"{label} is not an id: {value!r}")
        return str(value).strip()

    def code(self, label: str, table: Mapping[str, _Code], *names: str) -> _Code:
        value = self.fields.get(*names)
        if value is None:
            raise _Unmappable(f"{label} is missing")
        found = table.get(str(value).strip().upper())
        if found is None:
            raise _Unmappable(f"{label} {value!r} is not one the postback can carry")
        return found

    def status(self) -> OrderStatus:
        value = self.fields.get("status", "orderstatus")
        if value is None:
            raise _Unmappable("Status is missing")
        text = re.sub(r"[\s-]+", "_", str(value).strip().upper())
        status = _STATUSES.get(text)
        if status is not None:
            return status
        if text in _PART_TRADED:
            self.warn(f"Status {value!r} sent as PENDING (a postback has no part-traded status)")
            return OrderStatus.PENDING
        raise _Unmappable(f"Status {value!r} is not one the postback can carry")

    def order_type(self) -> OrderType:
        value = self.fields.get("ordertype")
        if value is None:
            raise _Unmappable("OrderType is missing")
        found = _ORDER_TYPES.get(re.sub(r"[\s_-]+", "", str(value).upper()))
        if found is None:
            raise _Unmappable(f"OrderType {value!r} is not one the postback can carry")
        return found

    def product(self) -> ProductType:
        code = self.fields.get("product", "producttype")
        if code is not None:
            text = str(code).strip().upper()
            found = _PRODUCT_CODES.get(text) or _PRODUCT_NAMES.get(text)
            if found is not None:
                return found
        name = self.fields.get("productname")
        if name is not None:
            found = _PRODUCT_NAMES.get(str(name).strip().upper())
            if found is not None:
                if code is not None:
                    self.warn(f"Product {code!r} unknown; used ProductName {name!r}")
                return found
        raise _Unmappable(
            f"Product {code!r} / ProductName {name!r} is not one the postback can carry"
        )

    def segment(self) -> ExchangeSegment:
        exchange = self.fields.get("exchange")
        segment = self.fields.get("segment")
        if exchange is None:
            raise _Unmappable("Exchange is missing")
        exchange_text = str(exchange).strip().upper()
        already = _EXCHANGE_SEGMENTS.get(exchange_text)
        if already is not None:  # some feeds send the combined name
            return already
        if segment is None:
            segment = _segment_of_instrument(
                exchange_text, self.fields.get("instrument", "instrumenttype")
            )
            if segment is None:
                raise _Unmappable("Segment is missing")
            self.warn(f"Segment missing; {segment!r} inferred from Instrument")
        found = _SEGMENTS.get((exchange_text, str(segment).strip().upper()))
        if found is None:
            raise _Unmappable(
                f"Exchange {exchange!r} with Segment {segment!r} is not a segment the postback "
                "can carry"
            )
        return found

    def leg(self, product: ProductType) -> str | None:
        raw = self.fields.get("legno")
        number = _whole_number(raw)
        if raw is not None and number is None:
            self.warn(f"LegNo {raw!r} unreadable; legName left null")
            return None
        remarks = self.fields.get("remarks")
        super_order = isinstance(remarks, str) and remarks.strip().lower() == _SUPER_ORDER
        is_leg = product in _LEG_PRODUCTS or super_order or number in (2, 3)
        if not is_leg:
            return None
        if number is None:
            self.warn(f"LegNo missing on a {product.value} order; legName left null")
            return None
        leg = _LEGS.get(number)
        if leg is None:
            self.warn(f"LegNo {raw!r} is not 1, 2 or 3; legName left null")
            return None
        return leg.value

    def option_type(self) -> str | None:
        value = self.fields.get("opttype", "optiontype", "drvoptiontype")
        if value is None:
            return None
        text = str(value).strip().upper()
        if text in _NOT_AN_OPTION:
            return None
        found = _OPTION_TYPES.get(text)
        if found is None:
            self.warn(f"OptType {value!r} unknown; drvOptionType left null")
            return None
        return found.value

    # Numbers --------------------------------------------------------------------------------

    def count(self, label: str, value: Any, *, required: bool = False) -> int:
        if value is None:
            if required:
                raise _Unmappable(f"{label} is missing")
            return 0
        number = _whole_number(value)
        if number is None or number < 0:
            if required:
                raise _Unmappable(f"{label} {value!r} is not a quantity")
            self.warn(f"{label} {value!r} is not a quantity; sent 0")
            return 0
        return number

    def amount(self, label: str, value: Any) -> float:
        if value is None:
            return 0.0
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None or not math.isfinite(number) or number < 0:
            self.warn(f"{label} {value!r} is not a price; sent 0.0")
            return 0.0
        return number

    # Flags and texts ------------------------------------------------------------------------

    def after_market(self) -> bool:
        value = self.fields.get("offmktflag", "aftermarketorder")
        if value is None:
            return False
        text = str(value).strip().upper()
        if text in ("1", "TRUE", "Y", "YES"):
            return True
        if text not in ("0", "FALSE", "N", "NO"):
            self.warn(f"after-market flag {value!r} unknown; afterMarketOrder sent false")
        return False

    @staticmethod
    def optional_text(value: Any) -> str | None:
        """A string field: kept as sent (numbers as text); blank means absent."""
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value)

    def error_description(self, status: OrderStatus) -> str | None:
        if status is not OrderStatus.REJECTED:
            return None
        return self.optional_text(self.fields.get("reasondescription", "omserrordescription"))

    def algo_id(self) -> str | None:
        """``AlgoId``; ``"0"`` is what plain orders carry, so it means "no algo" (null)."""
        text = self.optional_text(self.fields.get("algoid"))
        if text is None or text.strip() in _NO_ALGO:
            return None
        return text

    # Times ----------------------------------------------------------------------------------

    def times(self) -> tuple[str, str, str]:
        """``updateTime``, ``createTime``, ``exchangeTime``.

        A missing update or creation time borrows the other; an order that has not reached
        the exchange keeps (or gets) the "no date" sentinel as its ``exchangeTime``.
        """
        updated = self.timestamp("LastUpdatedTime", "lastupdatedtime", "updatetime")
        created = self.timestamp("OrderDateTime", "orderdatetime", "createtime")
        exchange = self.timestamp("ExchOrderTime", "exchordertime", "exchangetime")
        if updated is None:
            updated = exchange or created
            if updated is None:
                raise _Unmappable("LastUpdatedTime, ExchOrderTime and OrderDateTime are missing")
            self.warn("LastUpdatedTime missing; used the order's latest other time")
        if created is None:
            created = updated
            self.warn("OrderDateTime missing; used LastUpdatedTime")
        if exchange is None:
            exchange = self.fields.get("exchordertime", "exchangetime")
            if exchange is None or not str(exchange).strip().startswith(NO_EXPIRY[:10]):
                self.warn("ExchOrderTime missing; sent as never at the exchange")
            exchange = NOT_AT_EXCHANGE
        return updated, created, exchange

    def timestamp(self, label: str, *names: str) -> str | None:
        value = self.fields.get(*names)
        if value is None:
            return None
        text = str(value).strip()
        if text.startswith(NO_EXPIRY[:10]):
            return None
        if _TIME.match(text):
            return text
        normalised = _normalise_time(text)
        if normalised is None:
            self.warn(f"{label} {value!r} is not a time")
            return None
        return normalised

    def expiry(self) -> str | None:
        value = self.fields.get("expirydate", "drvexpirydate")
        if value is None:
            return None
        text = str(value).strip()
        if text.startswith(NO_EXPIRY[:10]):
            return None
        if _DATE.match(text):
            return text
        normalised = _normalise_time(text)
        if normalised is None:
            self.warn(f"ExpiryDate {value!r} is not a date; drvExpiryDate left null")
        return normalised


def map_book_row(row: Mapping[str, Any]) -> MappingResult:
    """Translate one row of the broker's order book into the postback payload.

    The row is relayed as it is: the same rules as :func:`map_order_alert` for what is
    required and what is defaulted, with the book's names (``orderStatus``, ``filledQty``,
    ``exchangeSegment``, ...). The book carries what the websocket lacks (the BO values,
    ``omsErrorCode``, ``legName``), so those come from the row. ``PART_TRADED`` is sent as
    ``PENDING``, as from the websocket.
    """
    mapper = _BookMapper(_Folded(row))
    try:
        update = validate_strict(mapper.wire())
    except _Unmappable as exc:
        return MappingResult(update=None, warnings=tuple(mapper.warnings), error=str(exc))
    except InvalidUpdate as exc:
        return MappingResult(update=None, warnings=tuple(mapper.warnings), error=exc.message)
    return MappingResult(update=update, warnings=tuple(mapper.warnings))


_BOOK_LEGS: Final[dict[str, LegName]] = {leg.value: leg for leg in LegName}
_NO_LEG: Final = frozenset({"NA", "-", "NONE"})


class _BookMapper(_Mapper):
    """One order-book row: the postback's names, with the book's ``filledQty``."""

    def wire(self) -> dict[str, Any]:
        f = self.fields
        status = self.status()
        update_time, create_time, exchange_time = self.times()
        return {
            "dhanClientId": self.required_id("dhanClientId", "dhanclientid", "clientid"),
            "orderId": self.required_id("orderId", "orderid", "orderno"),
            "correlationId": self.optional_text(f.get("correlationid")),
            "orderStatus": status.value,
            "transactionType": self.code(
                "transactionType", _TRANSACTION_TYPES, "transactiontype", "txntype"
            ).value,
            "exchangeSegment": self.book_segment().value,
            "productType": self.product().value,
            "orderType": self.order_type().value,
            "validity": self.code("validity", _VALIDITIES, "validity").value,
            "tradingSymbol": self.optional_text(f.get("tradingsymbol", "symbol")) or "",
            "securityId": self.required_id("securityId", "securityid"),
            "quantity": self.count("quantity", f.get("quantity"), required=True),
            "disclosedQuantity": self.count("disclosedQuantity", f.get("disclosedquantity")),
            "price": self.amount("price", f.get("price")),
            "triggerPrice": self.amount("triggerPrice", f.get("triggerprice")),
            "afterMarketOrder": self.after_market(),
            "boProfitValue": self.amount("boProfitValue", f.get("boprofitvalue")),
            "boStopLossValue": self.amount("boStopLossValue", f.get("bostoplossvalue")),
            "legName": self.book_leg(),
            "createTime": create_time,
            "updateTime": update_time,
            "exchangeTime": exchange_time,
            "drvExpiryDate": self.expiry(),
            "drvOptionType": self.option_type(),
            "drvStrikePrice": self.amount("drvStrikePrice", f.get("drvstrikeprice")),
            "omsErrorCode": self.optional_text(f.get("omserrorcode")),
            "omsErrorDescription": self.optional_text(f.get("omserrordescription")),
            "filled_qty": self.count("filledQty", f.get("filledqty", "filled_qty")),
            "algoId": self.algo_id(),
        }

    def book_segment(self) -> ExchangeSegment:
        value = self.fields.get("exchangesegment")
        if value is None:
            raise _Unmappable("exchangeSegment is missing")
        found = _EXCHANGE_SEGMENTS.get(str(value).strip().upper())
        if found is None:
            raise _Unmappable(f"exchangeSegment {value!r} is not one the postback can carry")
        return found

    def book_leg(self) -> str | None:
        value = self.fields.get("legname")
        if value is None:
            return None
        text = str(value).strip().upper()
        leg = _BOOK_LEGS.get(text)
        if leg is None:
            if text not in _NO_LEG:
                self.warn(f"legName {value!r} unknown; legName left null")
            return None
        return leg.value


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
            return int(number) if number.is_integer() else None
    return None


def _normalise_time(text: str) -> str | None:
    """``YYYY-MM-DD HH:MM:SS`` in IST from an ISO-style time (``T``, fraction, offset)."""
    match = _LOOSE_TIME.match(text)
    if match is None:
        return None
    day, clock, offset = match.groups()
    if offset is None:
        return f"{day} {clock}"
    moment = dt.datetime.fromisoformat(f"{day}T{clock}{'+00:00' if offset == 'Z' else offset}")
    return moment.astimezone(IST).strftime(TIME_FORMAT)


def _segment_of_instrument(exchange: str, instrument: Any) -> str | None:
    """The segment letter an instrument name implies (``OPTIDX`` is a derivative)."""
    if instrument is None:
        return None
    name = str(instrument).strip().upper()
    if name in ("EQUITY", "EQ"):
        return "E"
    if exchange == "MCX":
        return "M"
    if name.endswith("CUR"):
        return "C"
    if name.startswith(("FUT", "OPT")):
        return "D"
    return None
