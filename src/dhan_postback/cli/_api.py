"""Talking to a running service from the command line: the admin API, one request at a time.

The operator's commands (``tokens``, ``endpoints``, ``deliveries``) are thin: they call the
service's HTTP API with the admin key and print its answer, as JSON (``--json``, for
scripts) or as a table. Every way a call can fail becomes one line ``Error: ...`` naming what
to do: a service that does not answer (with its URL), a refused key, an unknown id.

The standard library's HTTP client keeps these commands quick to start; they make one or two
requests each.
"""

from __future__ import annotations

import functools
import json
import typing
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from ..settings import TokensSettings
from .options import settings_options

__all__ = [
    "AdminApi",
    "admin_api_options",
    "answer_options",
    "json_option",
    "print_json",
    "printed_as_json",
]

F = TypeVar("F", bound=Callable[..., Any])

_TIMEOUT = 30.0


class AdminApi:
    """The service at ``server``, called with the admin key."""

    def __init__(self, server: str, admin_key: str | None) -> None:
        # both are mistakes on the command line: usage errors (exit 2), like every command's
        if not server.startswith(("http://", "https://")):
            raise click.UsageError(
                f"--server must be the service's http:// or https:// URL, not {server!r}"
            )
        if not admin_key:
            raise click.UsageError(
                "--admin-key is required: set DHAN_POSTBACK_ADMIN_KEY (or --admin-key-file) to "
                "the key the service was started with"
            )
        self.server = server.rstrip("/")
        self._admin_key = admin_key

    def url(self, path: str, params: Mapping[str, str | None] | None = None) -> str:
        given = {name: value for name, value in (params or {}).items() if value is not None}
        query = "?" + urllib.parse.urlencode(given) if given else ""
        return self.server + path + query

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | None] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """One request; the decoded JSON answer, or a one-line click error."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
            self.url(path, params), data=data, method=method
        )
        request.add_header("admin-key", self._admin_key)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise click.ClickException(self._refusal(exc)) from None
        except urllib.error.URLError as exc:
            reason = getattr(exc.reason, "strerror", None) or exc.reason
            raise click.ClickException(
                f"cannot reach the service at {self.server}: {reason} (is it running? "
                "set --server or DHAN_POSTBACK_SERVER)"
            ) from None
        except (TimeoutError, ConnectionError) as exc:
            raise click.ClickException(
                f"the service at {self.server} did not answer: {type(exc).__name__}"
            ) from None
        except ValueError:
            raise click.ClickException(
                f"the service at {self.server} answered something other than JSON: is "
                "--server the postback service?"
            ) from None

    def _refusal(self, exc: urllib.error.HTTPError) -> str:
        try:
            message = json.loads(exc.read()).get("errorMessage") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        if exc.code == 401:
            return (
                f"the service at {self.server} refused the admin key ({message}): check "
                "DHAN_POSTBACK_ADMIN_KEY"
            )
        return f"the service answered {exc.code}: {message}"


def admin_api_options(command: F) -> F:
    """``--server`` and ``--admin-key`` (and ``--admin-key-file``), made from
    :class:`~dhan_postback.settings.TokensSettings` like every command's settings; the command
    receives the service they name as ``api``, an :class:`AdminApi` (a usage error before the
    command runs when either is missing or wrong)."""

    @functools.wraps(command)
    def unpack(*args: Any, service: TokensSettings, **kwargs: Any) -> Any:
        key = service.admin_key.get_secret_value() if service.admin_key else None
        return command(*args, api=AdminApi(service.server, key), **kwargs)

    return settings_options(TokensSettings, param="service")(typing.cast(F, unpack))


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the service's JSON answer."
)
"""``--json``: the service's answer as it came, for scripts, instead of a table."""


def answer_options(command: F) -> F:
    """The options of a command that shows the service's answer: :data:`json_option` and
    :func:`admin_api_options` (the command receives ``as_json`` and ``api``)."""
    return json_option(admin_api_options(command))


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def printed_as_json(answer: Any, as_json: bool) -> bool:
    """Print ``answer`` as JSON if ``--json`` asked for it; True then: the command is done."""
    if as_json:
        print_json(answer)
    return as_json
