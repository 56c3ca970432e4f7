"""``dhan-postback tokens``: create and revoke access tokens through a running service."""

from __future__ import annotations

import functools
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ._secrets import secret_file_option

__all__ = ["tokens"]

F = TypeVar("F", bound=Callable[..., Any])

_SERVER = click.option(
    "--server",
    default="http://127.0.0.1:8000",
    show_default=True,
    envvar="DHAN_POSTBACK_SERVER",
    help="The service's base URL. [env: DHAN_POSTBACK_SERVER]",
)


def _ADMIN_KEY(command: F) -> F:
    """``--admin-key`` (or its variable, or ``--admin-key-file``): required, one way or another."""

    @functools.wraps(command)
    def require(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("admin_key"):
            raise click.UsageError(
                "the admin key is required: set DHAN_POSTBACK_ADMIN_KEY or --admin-key-file"
            )
        return command(*args, **kwargs)

    option = click.option(
        "--admin-key",
        envvar="DHAN_POSTBACK_ADMIN_KEY",
        help="The service's admin key (prefer the variable or the file: flags show in `ps`). "
        "[env: DHAN_POSTBACK_ADMIN_KEY]",
    )
    with_file = secret_file_option(
        "admin_key", "--admin-key-file", envvar="DHAN_POSTBACK_ADMIN_KEY_FILE"
    )
    return option(with_file(require))  # type: ignore[return-value]


def _call(method: str, url: str, admin_key: str, body: dict[str, Any] | None) -> Any:
    """One admin API request; the service's error message becomes a click error."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) only
    request.add_header("admin-key", admin_key)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if not url.startswith(("http://", "https://")):
        raise click.UsageError("--server must be an http:// or https:// URL")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("errorMessage", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        raise click.ClickException(f"the service answered {exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise click.ClickException(f"cannot reach the service: {exc.reason}") from None


@click.group()
def tokens() -> None:
    """Create and revoke access tokens (each with its Postback URL)."""


@tokens.command()
@click.option("--client-id", required=True, help="The dhanClientId the token belongs to.")
@click.option("--url", "postback_url", help="The Postback URL saved with the token.")
@click.option("--partner-id", help="A partner whose URL also gets this token's postbacks.")
@click.option("--json", "as_json", is_flag=True, help="Print the service's JSON answer.")
@_SERVER
@_ADMIN_KEY
def create(
    client_id: str,
    postback_url: str | None,
    partner_id: str | None,
    as_json: bool,
    server: str,
    admin_key: str,
) -> None:
    """Generate an access token; prints the token and its signing secret, once."""
    body: dict[str, Any] = {"dhanClientId": client_id}
    if postback_url is not None:
        body["postbackUrl"] = postback_url
    if partner_id is not None:
        body["partnerId"] = partner_id
    created = _call("POST", server.rstrip("/") + "/v2/access-tokens", admin_key, body)
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
@_SERVER
@_ADMIN_KEY
def revoke(token: str, server: str, admin_key: str) -> None:
    """Revoke TOKEN; its pending deliveries are still sent."""
    url = server.rstrip("/") + "/v2/access-tokens/" + urllib.parse.quote(token, safe="")
    revoked = _call("DELETE", url, admin_key, None)
    click.echo(f"revoked at {revoked['revokedAt']}")
