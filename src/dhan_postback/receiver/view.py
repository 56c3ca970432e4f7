"""How the order book looks in a terminal: shared by ``receive`` (live) and ``orders``."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from ..lifecycle import is_terminal
from .app import ReceiverStats
from .store import OrderRow

__all__ = ["orders_table", "stats_text"]

_STATUS_STYLES = {
    "TRADED": "green",
    "PART_TRADED": "cyan",
    "CANCELLED": "yellow",
    "REJECTED": "red",
    "EXPIRED": "magenta",
}


def orders_table(rows: Sequence[OrderRow], *, title: str | None = None) -> Table:
    """One line per order (per bracket leg), most recently active first."""
    table = Table(title=title, expand=False, header_style="bold")
    for column, justify in (
        ("order id", "left"),
        ("leg", "left"),
        ("client", "left"),
        ("symbol", "left"),
        ("side", "left"),
        ("type", "left"),
        ("status", "left"),
        ("filled", "right"),
        ("price", "right"),
        ("updated (IST)", "left"),
        ("updates", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        fields = row.update.fields
        status = row.status or "?"
        style = _STATUS_STYLES.get(status, "bold" if not is_terminal(status) else "")
        if row.update.unknown_values:
            status += " (?)"
        table.add_row(
            row.order_id,
            row.leg_name or "",
            row.client_id or "",
            str(fields.get("tradingSymbol") or fields.get("securityId") or ""),
            str(fields.get("transactionType") or ""),
            str(fields.get("orderType") or ""),
            Text(status, style=style),
            f"{row.filled_qty}/{row.quantity}",
            _price(fields.get("price")),
            row.update_time,
            str(row.update_count),
        )
    return table


def _price(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.2f}" if value else "MKT"
    return ""


def stats_text(stats: ReceiverStats) -> Text:
    """The receiver's counters on one line."""
    return Text(
        f"received {stats.received}  unique {stats.unique}  duplicates {stats.duplicates}  "
        f"rejected {stats.rejected}  quarantined {stats.quarantined}  "
        f"handler failures {stats.handler_failures}"
    )
