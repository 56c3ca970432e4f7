"""``dhan-postback deliveries``: the delivery log of a running service, and replay."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ._api import AdminApi, answer_options, printed_as_json
from ._tables import print_table, shown_time

__all__ = ["deliveries"]

F = TypeVar("F", bound=Callable[..., Any])


def _filters(command: F) -> F:
    """The delivery log's filters, named as the API's (``--order-id`` is ``orderId``)."""
    options = [
        click.option(
            "--status", type=click.Choice(["pending", "delivered", "dead"]), help="Only these."
        ),
        click.option("--order-id", help="Only this order's deliveries."),
        click.option("--client-id", help="Only this client's deliveries."),
        click.option("--since", help="Created at or after (ISO 8601, IST without an offset)."),
        click.option("--until", help="Created before (ISO 8601, IST without an offset)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group()
def deliveries() -> None:
    """List deliveries, show one with its attempts, send them again.

    \b
    Examples:
      dhan-postback deliveries list --status DEAD
      dhan-postback deliveries show msg_...
      dhan-postback deliveries replay --status DEAD --client-id 1000000001
    """


@deliveries.command(name="list")
@_filters
@click.option("--target", type=click.Choice(["token", "partner"]), help="Only these.")
@click.option("--partner-id", help="Only this partner's deliveries.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--cursor", help="The nextCursor a previous page printed.")
@click.option("--oldest-first", is_flag=True, help="Oldest first (default: newest first).")
@answer_options
def list_deliveries(
    status: str | None,
    order_id: str | None,
    client_id: str | None,
    since: str | None,
    until: str | None,
    target: str | None,
    partner_id: str | None,
    limit: int,
    cursor: str | None,
    oldest_first: bool,
    as_json: bool,
    api: AdminApi,
) -> None:
    """One page of deliveries, newest first, as ``GET /v2/deliveries`` filters them.

    \b
    Examples:
      dhan-postback deliveries list --order-id 112111182198 --oldest-first
      dhan-postback deliveries list --status DEAD --json
    """
    params = {
        "status": status,
        "orderId": order_id,
        "dhanClientId": client_id,
        "since": since,
        "until": until,
        "target": target,
        "partnerId": partner_id,
        "limit": str(limit),
        "cursor": cursor,
        "order": "oldest" if oldest_first else None,
    }
    page = api.call("GET", "/v2/deliveries", params=params)
    if printed_as_json(page, as_json):
        return
    print_table(
        "Deliveries",
        ["delivery id", "client", "order", "status", "attempts", "last", "created", "URL"],
        [
            [
                d["deliveryId"],
                d["dhanClientId"],
                d["orderId"],
                d["status"],
                d["attemptCount"],
                d["lastStatusCode"] if d["lastStatusCode"] is not None else d["lastError"],
                shown_time(d["createdAt"]),
                d["postbackUrl"],
            ]
            for d in page["deliveries"]
        ],
    )
    if page["nextCursor"] is not None:
        click.echo(f"more: --cursor {page['nextCursor']}")


def _path(delivery_id: str, *rest: str) -> str:
    return "/".join(["/v2/deliveries", urllib.parse.quote(delivery_id, safe=""), *rest])


@deliveries.command()
@click.argument("delivery_id")
@answer_options
def show(delivery_id: str, as_json: bool, api: AdminApi) -> None:
    """One delivery (msg_...) with every attempt.

    \b
    Examples:
      dhan-postback deliveries show msg_...
    """
    delivery = api.call("GET", _path(delivery_id))
    if printed_as_json(delivery, as_json):
        return
    for name, value in (
        ("delivery", delivery["deliveryId"]),
        ("client", delivery["dhanClientId"]),
        ("order", delivery["orderId"]),
        ("status", delivery["status"]),
        ("URL", delivery["postbackUrl"]),
        ("created", shown_time(delivery["createdAt"])),
        ("next attempt", shown_time(delivery["nextAttemptAt"])),
        ("delivered", shown_time(delivery["deliveredAt"])),
    ):
        click.echo(f"{name + ':':14}{value}")
    print_table(
        "Attempts",
        ["#", "time", "status", "latency ms", "error"],
        [
            [a["number"], shown_time(a["time"]), a["statusCode"], a["latencyMs"], a["error"]]
            for a in delivery["attempts"]
        ],
    )


@deliveries.command()
@click.argument("delivery_id", required=False)
@_filters
@answer_options
def replay(
    delivery_id: str | None,
    status: str | None,
    order_id: str | None,
    client_id: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
    api: AdminApi,
) -> None:
    """Send again one delivery (DELIVERY_ID), or every one matching the filters (at least
    one filter: replaying everything is not done by accident).

    \b
    Examples:
      dhan-postback deliveries replay msg_...
      dhan-postback deliveries replay --status DEAD --since 2026-12-01T09:15:00
    """
    body = {
        name: value
        for name, value in (
            ("status", status),
            ("orderId", order_id),
            ("dhanClientId", client_id),
            ("since", since),
            ("until", until),
        )
        if value is not None
    }
    if delivery_id is not None and body:
        raise click.ClickException("give a DELIVERY_ID or filters, not both")
    if delivery_id is not None:
        replayed = api.call("POST", _path(delivery_id, "replay"))
    elif body:
        replayed = api.call("POST", "/v2/deliveries/replay", body=body)
    else:
        raise click.ClickException(
            "name a DELIVERY_ID or at least one filter (--status, --order-id, --client-id, "
            "--since, --until)"
        )
    if printed_as_json(replayed, as_json):
        return
    count = len(replayed["deliveryIds"])
    click.echo(f"replayed {count} deliver{'y' if count == 1 else 'ies'}")
    for replayed_id in replayed["deliveryIds"]:
        click.echo(replayed_id)
