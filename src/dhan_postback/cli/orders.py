"""``dhan-postback orders``: print a receiver's order book."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ..receiver.store import ReceiverStore
from ..receiver.view import orders_table

__all__ = ["orders"]


@click.command()
@click.option(
    "--db",
    default="receiver.db",
    show_default=True,
    envvar="DHAN_POSTBACK_RECEIVER_DB",
    show_envvar=True,
    help="The receiver's SQLite file.",
)
@click.option("--status", default=None, help="Only orders in this status (e.g. TRADED).")
@click.option("--client", "client_id", default=None, help="Only orders of this dhanClientId.")
@click.option("--order", "order_id", default=None, help="Only this order id (all its legs).")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="At most this many rows.")
def orders(
    db: str, status: str | None, client_id: str | None, order_id: str | None, limit: int | None
) -> None:
    """Print the order book a receiver has built, most recently active first."""
    if not Path(db).exists():
        raise click.ClickException(f"no receiver database at {db} (see --db)")
    store = ReceiverStore(db)
    try:
        rows = store.orders(
            order_id=order_id,
            status=status.strip().upper() if status else None,
            client_id=client_id,
            limit=limit,
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
