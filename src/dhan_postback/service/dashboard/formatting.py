"""How values look on the dashboard: times in IST and UTC, payloads, URLs, status badges.

Traders read times in India Standard Time (the payload's own clock); operators read UTC. IST
has had no daylight saving since 1945, so a fixed +05:30 offset is exact and needs no tzdata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from ...errors import UnreadablePayload
from ...payload import parse
from ...wire import IST, TIME_FORMAT

__all__ = [
    "IST",
    "UpdateFacts",
    "display_url",
    "format_ist",
    "format_utc",
    "parse_ist_input",
    "pretty_payload",
    "short_url",
    "update_facts",
]


def format_ist(epoch: float | None, *, short: bool = False) -> str:
    """``2026-11-24 09:15:02 IST`` (``short``: without the zone, for a column that names it):
    the broker's own timestamp format, so a time here reads as the payload's ``updateTime``."""
    if epoch is None:
        return "—"
    moment = datetime.fromtimestamp(epoch, IST).strftime(TIME_FORMAT)
    return moment if short else f"{moment} IST"


def format_utc(epoch: float | None) -> str:
    """``2026-11-24 03:45:02 UTC``: laid out as the IST time beside it, for operators."""
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(epoch, UTC).strftime(TIME_FORMAT) + " UTC"


def parse_ist_input(value: str | None) -> float | None:
    """A ``datetime-local`` form value, read as IST, as epoch seconds (None when blank).

    Raises ValueError for anything that is not ``YYYY-MM-DDTHH:MM[:SS]``.
    """
    if value is None or not value.strip():
        return None
    moment = datetime.fromisoformat(value.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=IST)
    return moment.timestamp()


def pretty_payload(body: bytes) -> str:
    """The body as indented JSON, in its own field order; as text when it is not JSON."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", errors="replace")


def display_url(url: str) -> str:
    """A URL without userinfo (the URL policy refuses it, but never render a password)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def short_url(url: str, width: int = 44) -> str:
    """The URL in at most ``width`` characters, for a narrow column: without its scheme
    (and userinfo), and when still too long, its host, an ellipsis and the *end* of its path,
    which is where two URLs on one host differ (``/hooks/a`` and ``/hooks/b``)."""
    parts = urlsplit(display_url(url))
    host = parts.netloc
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    text = host + rest
    if len(text) <= width:
        return text
    keep = max(width - len(host) - 2, 8)
    return f"{host}/…{rest[-keep:]}"


@dataclass(frozen=True, slots=True)
class UpdateFacts:
    """What a person wants to see of an update at a glance."""

    order_status: str
    filled_qty: int
    quantity: int
    update_time: str
    symbol: str
    side: str


def update_facts(body: bytes) -> UpdateFacts:
    """The glance view of a payload; placeholders when the body cannot be read."""
    try:
        update = parse(body)
    except UnreadablePayload:
        return UpdateFacts("?", 0, 0, "", "", "")
    fields = update.fields
    return UpdateFacts(
        order_status=update.order_status or "?",
        filled_qty=update.filled_qty,
        quantity=update.quantity,
        update_time=update.update_time or "",
        symbol=str(fields.get("tradingSymbol") or fields.get("securityId") or ""),
        side=str(fields.get("transactionType") or ""),
    )
