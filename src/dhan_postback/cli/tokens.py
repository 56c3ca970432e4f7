"""``dhan-postback tokens``: create, list and revoke access tokens through a running service."""

from __future__ import annotations

import urllib.parse
from typing import Any

import click

from ._api import AdminApi, admin_api_options, answer_options, printed_as_json
from ._tables import print_table, shown_time

__all__ = ["tokens"]


@click.group()
def tokens() -> None:
    """Create, list and revoke access tokens (each with its Postback URL).

    \b
    Examples:
      dhan-postback tokens create --client-id 1000000001 --url https://example.com/hook
      dhan-postback tokens list --client-id 1000000001
      dhan-postback tokens revoke <access token>
    """


@tokens.command()
@click.option("--client-id", required=True, help="The dhanClientId the token belongs to.")
@click.option("--url", "postback_url", help="The Postback URL saved with the token.")
@click.option("--partner-id", help="A partner whose URL also gets this token's postbacks.")
@answer_options
def create(
    client_id: str,
    postback_url: str | None,
    partner_id: str | None,
    as_json: bool,
    api: AdminApi,
) -> None:
    """Generate an access token; prints the token, once, and its endpoint's signing secret.

    A new token for a client and URL that already had one keeps that endpoint and its
    secret: renewing a token every day does not touch the receiver.

    \b
    Examples:
      dhan-postback tokens create --client-id 1000000001 --url https://example.com/hook
      dhan-postback tokens create --client-id 1000000001 --partner-id acme --json
    """
    body: dict[str, Any] = {"dhanClientId": client_id}
    if postback_url is not None:
        body["postbackUrl"] = postback_url
    if partner_id is not None:
        body["partnerId"] = partner_id
    created = api.call("POST", "/v2/access-tokens", body=body)
    if printed_as_json(created, as_json):
        return
    click.echo(f"access token:    {created['accessToken']}")
    click.echo(f"signing secret:  {created['signingSecret'] or '(none: no Postback URL)'}")
    click.echo(f"endpoint:        {created.get('endpointId') or '(none)'}")
    click.echo(f"client:          {created['dhanClientId']}")
    click.echo(f"postback URL:    {created['postbackUrl'] or '(none)'}")
    if created.get("partnerId"):
        click.echo(f"partner:         {created['partnerId']}")
    click.echo(f"expires at:      {created['expiresAt']}")
    click.echo("Store the token now: it is not shown again.", err=True)


@tokens.command(name="list")
@click.option("--client-id", help="Only this client's tokens.")
@answer_options
def list_tokens(client_id: str | None, as_json: bool, api: AdminApi) -> None:
    """List access tokens, newest first, by a non-secret id (never the tokens themselves).

    \b
    Examples:
      dhan-postback tokens list
      dhan-postback tokens list --client-id 1000000001 --json
    """
    found = api.call("GET", "/v2/access-tokens", params={"dhanClientId": client_id})
    if printed_as_json(found, as_json):
        return
    print_table(
        "Access tokens",
        ["token id", "client", "endpoint", "created", "expires", "status"],
        [
            [
                token["tokenId"],
                token["dhanClientId"],
                token["endpointId"] or "-",
                shown_time(token["createdAt"]),
                shown_time(token["expiresAt"]),
                token["status"],
            ]
            for token in found["accessTokens"]
        ],
    )


@tokens.command()
@click.argument("token")
@admin_api_options
def revoke(token: str, api: AdminApi) -> None:
    """Revoke TOKEN; its pending deliveries are still sent.

    \b
    Examples:
      dhan-postback tokens revoke <access token>
    """
    path = "/v2/access-tokens/" + urllib.parse.quote(token, safe="")
    revoked = api.call("DELETE", path)
    click.echo(f"revoked at {revoked['revokedAt']}")
