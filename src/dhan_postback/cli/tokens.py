"""``dhan-postback tokens``: create and revoke access tokens through a running service."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click

from ..settings import TokensSettings
from .options import settings_options

__all__ = ["tokens"]

_service = settings_options(TokensSettings, param="service")


def _call(service: TokensSettings, method: str, path: str, body: dict[str, Any] | None) -> Any:
    """One admin API request; the service's error message becomes a click error."""
    if service.admin_key is None or not service.admin_key.get_secret_value():
        raise click.UsageError(
            "--admin-key is required: set DHAN_POSTBACK_ADMIN_KEY (or --admin-key-file) to "
            "the key the service was started with"
        )
    server = service.server.rstrip("/")
    if not server.startswith(("http://", "https://")):
        raise click.UsageError(
            f"--server must be the service's http:// or https:// URL, not {service.server!r}"
        )
    url = server + path
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) only
    request.add_header("admin-key", service.admin_key.get_secret_value())
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("errorMessage", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        raise click.ClickException(
            f"the service at {server} answered {exc.code}: {message}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, OSError) and reason.errno:
            reason = os.strerror(reason.errno).lower()
        raise click.ClickException(
            f"cannot reach the service at {server}: {reason}; check --server "
            "(DHAN_POSTBACK_SERVER) and that `dhan-postback serve` runs there"
        ) from None


@click.group()
def tokens() -> None:
    """Create and revoke access tokens (each with its Postback URL).

    \b
    Examples:
      dhan-postback tokens create --client-id 1000000001 --url https://example.com/hook
      dhan-postback tokens revoke <access token>
    """


@tokens.command()
@click.option("--client-id", required=True, help="The dhanClientId the token belongs to.")
@click.option("--url", "postback_url", help="The Postback URL saved with the token.")
@click.option("--partner-id", help="A partner whose URL also gets this token's postbacks.")
@click.option("--json", "as_json", is_flag=True, help="Print the service's JSON answer.")
@_service
def create(
    client_id: str,
    postback_url: str | None,
    partner_id: str | None,
    as_json: bool,
    service: TokensSettings,
) -> None:
    """Generate an access token; prints the token and its signing secret, once.

    \b
    Examples:
      DHAN_POSTBACK_ADMIN_KEY=change-me dhan-postback tokens create --client-id 1000000001 \\
        --url https://example.com/hook
      dhan-postback tokens create --client-id 1000000001 --partner-id acme --json
    """
    body: dict[str, Any] = {"dhanClientId": client_id}
    if postback_url is not None:
        body["postbackUrl"] = postback_url
    if partner_id is not None:
        body["partnerId"] = partner_id
    created = _call(service, "POST", "/v2/access-tokens", body)
    if as_json:
        click.echo(json.dumps(created, indent=2))
        return
    click.echo(f"access token:    {created['accessToken']}")
    click.echo(f"signing secret:  {created['signingSecret']}")
    click.echo(f"client:          {created['dhanClientId']}")
    click.echo(f"postback URL:    {created['postbackUrl'] or '(none)'}")
    if created.get("partnerId"):
        click.echo(f"partner:         {created['partnerId']}")
    click.echo(f"expires at:      {created['expiresAt']}")
    click.echo("Store the token and the secret now: they are not shown again.", err=True)


@tokens.command()
@click.argument("token")
@_service
def revoke(token: str, service: TokensSettings) -> None:
    """Revoke TOKEN; its pending deliveries are still sent.

    \b
    Examples:
      DHAN_POSTBACK_ADMIN_KEY=change-me dhan-postback tokens revoke <access token>
    """
    path = "/v2/access-tokens/" + urllib.parse.quote(token, safe="")
    revoked = _call(service, "DELETE", path, None)
    click.echo(f"revoked at {revoked['revokedAt']}")
