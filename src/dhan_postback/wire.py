"""What the broker's wire looks like: its clock, its time format, its "no date", its broken JSON.

The postback payload, the simulator, the relay's websocket mapping and the service's HTTP API
all speak the broker's conventions. Each used to spell them out for itself (the IST zone was
written four times); they live here once so that a correction lands everywhere at the same
time.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Final

__all__ = [
    "DATE_PATTERN",
    "DEFAULT_CLIENTS",
    "IST",
    "NO_DATE",
    "TIME_FORMAT",
    "TIME_PATTERN",
    "repair_json",
]

IST: Final = timezone(timedelta(hours=5, minutes=30), "IST")
"""India Standard Time: the broker's clock, for every wall-clock time it writes or we show."""

TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
"""The broker's timestamps (``createTime``, ``updateTime``, ``exchangeTime``): IST, no zone."""

TIME_PATTERN: Final = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"
"""A timestamp in :data:`TIME_FORMAT`, as a regular expression."""

DATE_PATTERN: Final = r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2})?$"
"""A date (``drvExpiryDate``): a day, or a day and a time of day."""

NO_DATE: Final = "0001-01-01 00:00:00"
"""The broker's "no date" value: the expiry of a non-derivative, the exchange time of an order
that never reached the exchange."""

DEFAULT_CLIENTS: Final = ("1000000001", "1000000002", "1000000003")
"""The client ids a simulated day or a demo trades for when none are named."""

_WS: Final = b" \t\r\n"
_VALUE_END: Final = frozenset(b'"0123456789}]el')
"""Last bytes of a JSON value (string, number, object, array, ``true``/``false``/``null``)."""
_QUOTE: Final = 0x22
_BACKSLASH: Final = 0x5C
_COLON: Final = 0x3A
_COMMA: Final = 0x2C


def repair_json(raw: bytes, *, commas: bool = False) -> bytes:
    """Fill value holes (``"key": ,`` and ``"key": }``) with ``null``; leave strings alone.

    The broker's own documented example has such a hole. With ``commas`` also put back a
    comma missing between a value and the next key (``"multiplier":1 "Remarks":...``) and
    drop a trailing comma before ``}`` or ``]``, the other ways its documented websocket
    frames are broken. Text inside strings is never touched, and nothing else is changed: a
    body broken in some other way stays broken and is reported as unreadable.

    One pass of one state machine (inside a string or not, after an escape or not) serves the
    postback body and the websocket frame alike.
    """
    out = bytearray()
    in_string = escaped = expecting_value = False
    last = 0  # the last significant byte written outside a string (0: none yet)
    last_at = -1
    for byte in raw:
        if in_string:
            out.append(byte)
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
                last, last_at = byte, len(out) - 1
            continue
        if byte in _WS:
            out.append(byte)
            continue
        if expecting_value:
            expecting_value = False
            if byte in b",}":
                out += b"null"
                last, last_at = out[-1], len(out) - 1
        if commas:
            if byte == _QUOTE and last in _VALUE_END:  # a key right after a value
                out.append(_COMMA)
            elif byte in b"}]" and last == _COMMA:  # a trailing comma
                del out[last_at]
        out.append(byte)
        if byte == _QUOTE:
            in_string = True
        else:
            expecting_value = byte == _COLON
            last, last_at = byte, len(out) - 1
    return bytes(out)
