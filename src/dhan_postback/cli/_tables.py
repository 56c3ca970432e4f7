"""How the operator's commands print what the service answered: rich tables, short times."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

__all__ = ["print_table", "shown_time"]


def shown_time(value: str | None) -> str:
    """An API time (ISO 8601 in IST, to the millisecond) as ``YYYY-MM-DD HH:MM:SS``."""
    if not value:
        return "-"
    return value[:19].replace("T", " ")


_WHOLE = frozenset({"endpoint id", "token id", "delivery id", "endpoint"})
"""Columns that never wrap or shorten on a narrow terminal, so that ids copy whole."""


def _widest(rows: Sequence[Sequence[object]], index: int) -> int:
    return max(len(str(row[index])) for row in rows)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A table to standard output; an empty one says so in a line instead."""
    console = Console(soft_wrap=False)
    if not rows:
        console.print(f"{title}: none")
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        if column in _WHOLE:
            table.add_column(column, no_wrap=True, min_width=_widest(rows, len(table.columns)))
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("-" if cell is None else str(cell) for cell in row))
    console.print(table)
