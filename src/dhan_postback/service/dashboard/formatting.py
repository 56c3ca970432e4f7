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
from ...wire import IST

__all__ = [
    "IST",
    "UpdateFacts",
    "display_url",
    "format_ist",
    "format_utc",
    "parse_ist_input",
    "pretty_payload",
    "update_facts",
]


def format_ist(epoch: float | None, *, short: bool = False) -> str:
    """``2026-11-24 09:15:02 IST`` (``short``: without the zone, for a column that names it)."""
    if epoch is None:
        return "—"
    moment = datetime.fromtimestamp(epoch, IST).strftime("%Y-%m-%d %H:%M:%S")
    return moment if short else f"{moment} IST"


def format_utc(epoch: float | None) -> str:
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


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
