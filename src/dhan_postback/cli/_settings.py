"""Command-line flags made from :class:`~dhan_postback.settings.ServiceSettings`.

One flag per settings field, named after it (``max_in_flight_per_url`` is
``--max-in-flight-per-url``), its help the field's description plus the environment variable
and the default. Flags left out fall back to the environment, then to the default, because
only the flags actually given are passed to the settings model.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

import click
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from ..durations import format_duration
from ..settings import ServiceSettings

__all__ = [
    "MIN_ADMIN_KEY_LENGTH",
    "check_admin_key",
    "settings_from_flags",
    "settings_options",
    "settings_options_for",
]

F = TypeVar("F", bound=Callable[..., Any])

_ENV_PREFIX = str(ServiceSettings.model_config.get("env_prefix", ""))
_METAVARS = {
    "retry_schedule": "DELAYS",
    "db": "URL",
    "admin_key": "KEY",
    "metrics_token": "TOKEN",
    "host": "ADDRESS",
    "breaker_failure_rate": "FRACTION",
}
_DURATIONS = frozenset(
    {"timeout", "retry_after_cap", "lease", "token_ttl", "shutdown_grace"}
    | {"breaker_window", "breaker_cooldown", "breaker_max_cooldown", "secret_rotation_grace"}
    | {"idempotency_window", "retain_delivered", "retain_dead", "prune_interval"}
    | {"header_timeout", "keep_alive_timeout", "auth_failure_window"}
)


def _shown_default(name: str, field: FieldInfo) -> str | None:
    if name == "retry_schedule":
        return None  # the description spells it out
    if field.default is None or isinstance(field.default, SecretStr):
        return None
    if name in _DURATIONS:
        return format_duration(float(field.default))
    if isinstance(field.default, bool):
        return "on" if field.default else "off"
    return str(field.default)


def _option(name: str, field: FieldInfo) -> Callable[[F], F]:
    flag = "--" + name.replace("_", "-")
    env = _ENV_PREFIX + name.upper()
    default = _shown_default(name, field)
    help_text = f"{field.description or ''} [env: {env}" + (
        f"; default: {default}]" if default is not None else "]"
    )
    if field.annotation is bool:
        return click.option(
            f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text, show_default=False
        )
    metavar = (
        "DURATION"
        if name in _DURATIONS
        else _METAVARS.get(name) or ("INTEGER" if field.annotation is int else "TEXT")
    )
    return click.option(flag, name, default=None, metavar=metavar, help=help_text)


def settings_options(command: F) -> F:
    """Decorate a click command with one flag per settings field (in declaration order)."""
    return settings_options_for(ServiceSettings.model_fields)(command)


def settings_options_for(names: Collection[str]) -> Callable[[F], F]:
    """Like :func:`settings_options`, with the named fields only (``worker`` takes those of
    the dispatcher)."""
    fields = ServiceSettings.model_fields
    unknown = set(names) - set(fields)
    if unknown:
        raise ValueError(f"not settings fields: {sorted(unknown)}")

    def decorate(command: F) -> F:
        for name, field in reversed(fields.items()):
            if name in names:
                command = _option(name, field)(command)
        return command

    return decorate


MIN_ADMIN_KEY_LENGTH = 16
"""Shorter admin keys are refused: the admin key guards every token, and is guessed offline
nowhere but online everywhere the API is reachable."""


def check_admin_key(settings: ServiceSettings, *, required: bool) -> None:
    """Refuse a missing (when ``required``) or short admin key, in one line."""
    key = settings.admin_key.get_secret_value() if settings.admin_key else ""
    if not key:
        if required:
            raise click.UsageError(
                "an admin key is required: set DHAN_POSTBACK_ADMIN_KEY (or --admin-key-file); "
                "the admin API creates the access tokens"
            )
        return
    if len(key) < MIN_ADMIN_KEY_LENGTH:
        raise click.UsageError(
            f"the admin key is {len(key)} characters long; use at least {MIN_ADMIN_KEY_LENGTH} "
            "(for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )


def settings_from_flags(flags: Mapping[str, Any]) -> ServiceSettings:
    """Settings from the flags given (others from ``DHAN_POSTBACK_*``, then defaults)."""
    given = {
        name: value
        for name, value in flags.items()
        if name in ServiceSettings.model_fields and value is not None
    }
    try:
        return ServiceSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise click.UsageError(problems) from None
