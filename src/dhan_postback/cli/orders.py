"""``dhan-postback orders``: print a receiver's order book."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click
from rich.console import Console

from ..receiver.store import ReceiverStore
from ..receiver.view import orders_table
from ..settings import OrdersQuery, ReceiverSettings
from .options import settings_options

__all__ = ["orders"]


@click.command()
@settings_options(ReceiverSettings, only=("db",), param="receiver")
@settings_options(OrdersQuery, param="query")
def orders(receiver: ReceiverSettings, query: OrdersQuery) -> None:
    """Print the order book a receiver has built, most recently active first.

    \b
    Examples:
      dhan-postback orders --db receiver.db --status TRADED
      dhan-postback orders --order 112111182198
    """
    db = receiver.db
    if not Path(db).exists():
        raise click.ClickException(
            f"no receiver database at {db}: give the file `receive` writes with --db "
            "(or DHAN_POSTBACK_RECEIVER_DB)"
        )
    try:
        store = ReceiverStore(db)
    except sqlite3.Error as exc:
        raise click.ClickException(
            f"cannot read the receiver database {db}: {exc}; give the file `receive` writes"
        ) from None
    try:
        rows = store.orders(
            order_id=query.order,
            status=query.status.strip().upper() if query.status else None,
            client_id=query.client,
            limit=query.limit,
        )
        counts = store.counts()
    finally:
        store.close()
    console = Console(width=None if Console().is_terminal else 160)
    title = f"{len(rows)} of {counts.orders} orders, {counts.updates} unique updates"
    console.print(orders_table(rows, title=title))
    if counts.quarantined or counts.handler_failures_pending or counts.handler_failures_dead:
        console.print(
            f"quarantined bodies: {counts.quarantined}  "
            f"handler retries pending: {counts.handler_failures_pending}  "
            f"handler failures given up: {counts.handler_failures_dead}"
        )
