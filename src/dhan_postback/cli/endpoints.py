"""``dhan-postback endpoints``: where postbacks go, their health, and their signing secrets."""

from __future__ import annotations

import urllib.parse
from typing import Any

import click

from ._api import AdminApi, answer_options, printed_as_json
from ._tables import print_table, shown_time

__all__ = ["endpoints"]


@click.group()
def endpoints() -> None:
    """List endpoints (a client's or a partner's URL), show one, rotate its secret, pause
    and resume it.

    \b
    Examples:
      dhan-postback endpoints list
      dhan-postback endpoints show ep_...
      dhan-postback endpoints rotate-secret ep_...
      dhan-postback endpoints pause ep_...
      dhan-postback endpoints resume ep_...
    """


def _owner(endpoint: dict[str, Any]) -> str:
    if endpoint["partnerId"] is not None:
        return f"partner {endpoint['partnerId']}"
    return f"client {endpoint['dhanClientId']}"


def _last_answer(endpoint: dict[str, Any]) -> str:
    last = endpoint["lastAnswer"]
    if last is None:
        return "-"
    answer = str(last["statusCode"]) if last["statusCode"] is not None else last["error"]
    return f"{answer} at {shown_time(last['time'])}"


def _path(endpoint_id: str, *rest: str) -> str:
    return "/".join(["/v2/endpoints", urllib.parse.quote(endpoint_id, safe=""), *rest])


@endpoints.command(name="list")
@click.option("--client-id", help="Only this client's endpoints.")
@click.option("--partner-id", help="Only this partner's endpoints.")
@answer_options
def list_endpoints(
    client_id: str | None,
    partner_id: str | None,
    as_json: bool,
    api: AdminApi,
) -> None:
    """Every endpoint: URL, owner, backlog, breaker and last answer (never a secret).

    \b
    Examples:
      dhan-postback endpoints list --client-id 1000000001
    """
    params = {"dhanClientId": client_id, "partnerId": partner_id}
    found = api.call("GET", "/v2/endpoints", params=params)
    if printed_as_json(found, as_json):
        return
    print_table(
        "Endpoints",
        ["endpoint id", "owner", "URL", "backlog", "breaker", "paused", "last answer"],
        [
            [
                endpoint["endpointId"],
                _owner(endpoint),
                endpoint["postbackUrl"],
                endpoint["backlog"],
                endpoint["breaker"] or "-",
                "yes" if endpoint["paused"] else "no",
                _last_answer(endpoint),
            ]
            for endpoint in found["endpoints"]
        ],
    )


@endpoints.command()
@click.argument("endpoint_id")
@click.option("--include-secret", is_flag=True, help="Also show the signing secret(s).")
@answer_options
def show(endpoint_id: str, include_secret: bool, as_json: bool, api: AdminApi) -> None:
    """One endpoint, by its id (ep_...).

    \b
    Examples:
      dhan-postback endpoints show ep_... --include-secret
    """
    params = {"includeSecret": "true" if include_secret else None}
    endpoint = api.call("GET", _path(endpoint_id), params=params)
    if printed_as_json(endpoint, as_json):
        return
    rows = [
        ("endpoint", endpoint["endpointId"]),
        ("owner", _owner(endpoint)),
        ("URL", endpoint["postbackUrl"]),
        ("created", shown_time(endpoint["createdAt"])),
        ("paused", "yes" if endpoint["paused"] else "no"),
        ("breaker", endpoint["breaker"] or "- (not known to this node)"),
        ("backlog", str(endpoint["backlog"])),
        ("last answer", _last_answer(endpoint)),
        ("secret rotated", shown_time(endpoint["secretRotatedAt"])),
        ("old secret signs until", shown_time(endpoint["previousSecretsUntil"])),
    ]
    if include_secret:
        rows.append(("signing secret", endpoint["signingSecret"]))
        rows += [("still signing", old) for old in endpoint["previousSecrets"]]
    for name, value in rows:
        click.echo(f"{name + ':':24}{value}")


@endpoints.command(name="rotate-secret")
@click.argument("endpoint_id")
@answer_options
def rotate_secret(endpoint_id: str, as_json: bool, api: AdminApi) -> None:
    """Give an endpoint a new signing secret; the old one keeps signing, second, until the
    grace period ends (DHAN_POSTBACK_SECRET_ROTATION_GRACE on the service).

    \b
    Examples:
      dhan-postback endpoints rotate-secret ep_...
    """
    rotated = api.call("POST", _path(endpoint_id, "rotate-secret"))
    if printed_as_json(rotated, as_json):
        return
    click.echo(f"new signing secret:     {rotated['signingSecret']}")
    click.echo(f"endpoint:               {rotated['endpointId']} ({rotated['postbackUrl']})")
    click.echo(f"old secret signs until: {shown_time(rotated['previousSecretsUntil'])}")
    click.echo(
        "Give the receiver the new secret before then (it may accept both meanwhile).", err=True
    )


@endpoints.command()
@click.argument("endpoint_id")
@answer_options
def pause(endpoint_id: str, as_json: bool, api: AdminApi) -> None:
    """Send nothing more to an endpoint until it is resumed. Its deliveries wait, pending
    and in order; a POST already under way finishes. Pausing a paused endpoint is fine.

    \b
    Examples:
      dhan-postback endpoints pause ep_...
    """
    _set_paused(endpoint_id, "pause", as_json, api)


@endpoints.command()
@click.argument("endpoint_id")
@answer_options
def resume(endpoint_id: str, as_json: bool, api: AdminApi) -> None:
    """Send to a paused endpoint again: what waited goes out at once, in order.

    \b
    Examples:
      dhan-postback endpoints resume ep_...
    """
    _set_paused(endpoint_id, "resume", as_json, api)


def _set_paused(endpoint_id: str, action: str, as_json: bool, api: AdminApi) -> None:
    endpoint = api.call("POST", _path(endpoint_id, action))
    if printed_as_json(endpoint, as_json):
        return
    state = "paused" if endpoint["paused"] else "sending"
    click.echo(
        f"{endpoint['endpointId']} ({endpoint['postbackUrl']}): {state}, "
        f"{endpoint['backlog']} pending"
    )
