"""The settings of every command as Markdown: the reference docs/operations.md shows.

``python -m dhan_postback.cli.reference`` prints it; a test checks that the docs hold exactly
this text, so the page cannot drift from the flags.
"""

from __future__ import annotations

from collections.abc import Collection

from pydantic import BaseModel

from ..settings import (
    DISPATCHER_FIELDS,
    DemoSettings,
    OrdersQuery,
    ReceiverSettings,
    RelaySettings,
    SendSettings,
    ServiceSettings,
    SimulateSettings,
    TokensSettings,
    WorkerSettings,
)
from .options import settings_table

__all__ = ["COMMAND_SETTINGS", "Part", "settings_reference"]

Part = tuple[type[BaseModel], Collection[str] | None]

COMMAND_SETTINGS: dict[str, tuple[str, list[Part]]] = {
    "serve": ("the postback service", [(ServiceSettings, None)]),
    "worker": (
        "the dispatcher alone; the service's delivery settings, and where it serves "
        "/healthz and /metrics",
        [(ServiceSettings, DISPATCHER_FIELDS), (WorkerSettings, None)],
    ),
    "relay": (
        "the broker's websocket in, postbacks out; the embedded service also takes serve's "
        "delivery settings (all of worker's but --db)",
        [(RelaySettings, None)],
    ),
    "receive": ("a Postback URL on this machine", [(ReceiverSettings, None)]),
    "orders": (
        "a receiver's order book",
        [(ReceiverSettings, ("db",)), (OrdersQuery, None)],
    ),
    "send": ("one test postback (and its URL argument)", [(SendSettings, None)]),
    "tokens": ("create, list and revoke, through a running service", [(TokensSettings, None)]),
    "endpoints": (
        "list, show, rotate secrets, pause and resume, through a running service",
        [(TokensSettings, None)],
    ),
    "deliveries": ("list, show and replay, through a running service", [(TokensSettings, None)]),
    "simulate": ("order updates as JSON lines", [(SimulateSettings, None)]),
    "demo": ("everything on this machine", [(DemoSettings, None)]),
}


def settings_reference() -> str:
    """One section per command: what it is, and the table of its settings."""
    sections = []
    for command, (what, parts) in COMMAND_SETTINGS.items():
        tables = "\n".join(
            _rows(settings_table(model, only=only), first=index == 0)
            for index, (model, only) in enumerate(parts)
        )
        sections.append(f"### `dhan-postback {command}`: {what}\n\n{tables}")
    return "\n\n".join(sections) + "\n"


def _rows(table: str, *, first: bool) -> str:
    """The table, or only its rows when it continues the one above."""
    return table if first else "\n".join(table.splitlines()[2:])


if __name__ == "__main__":
    print(settings_reference(), end="")
