"""Command-line flags made from :class:`~dhan_postback.settings.ServiceSettings`.

One click option per settings field, named after it (``max_in_flight_per_url`` becomes
``--max-in-flight-per-url``), its help naming the ``DHAN_POSTBACK_*`` variable and the
default. Options default to "not given", so the order is flag, then variable, then default::

    @click.command()
    @settings_options(include=DISPATCHER_FIELDS)
    def worker(**options: Any) -> None:
        settings = settings_from_options(options)

``serve`` and ``worker`` share this, so a setting means the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

import click
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from ..durations import format_duration
from ..settings import ServiceSettings

__all__ = ["DISPATCHER_FIELDS", "settings_from_options", "settings_options"]

F = TypeVar("F", bound=Callable[..., Any])

DISPATCHER_FIELDS: tuple[str, ...] = (
    "db",
    "allow_loopback",
    "retry_schedule",
    "timeout",
    "max_in_flight_per_url",
    "max_in_flight",
    "retry_after_cap",
    "breaker_threshold",
    "breaker_cooldown",
    "lease",
    "claim_batch",
    "shutdown_grace",
)
"""The settings the dispatcher reads (``dhan-postback worker`` takes only these)."""

_DURATIONS = frozenset(
    {"timeout", "retry_after_cap", "breaker_cooldown", "lease", "token_ttl", "shutdown_grace"}
)
_ENV_PREFIX = str(ServiceSettings.model_config.get("env_prefix", ""))


def _env_var(name: str) -> str:
    return f"{_ENV_PREFIX}{name}".upper()


def _shown_default(name: str, field: FieldInfo) -> str | None:
    default = field.default
    if default is None or isinstance(default, SecretStr):
        return None
    if name == "retry_schedule":
        return ",".join(format_duration(delay) for delay in default)
    if name in _DURATIONS:
        return format_duration(float(default))
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


def _option(name: str, field: FieldInfo) -> Callable[[F], F]:
    flag = "--" + name.replace("_", "-")
    parts = [field.description or ""]
    default = _shown_default(name, field)
    if default is not None and "default" not in parts[0]:
        parts.append(f"[default: {default}]")
    parts.append(f"[env: {_env_var(name)}]")
    help_text = " ".join(part for part in parts if part)
    if field.annotation is bool:
        decls = [f"{flag}/--no-{flag[2:]}", name]
        return click.option(*decls, default=None, help=help_text)
    if name in _DURATIONS:
        kind: Any = click.STRING
        metavar = "DURATION"
    elif name == "retry_schedule":
        kind, metavar = click.STRING, "DELAYS"
    elif field.annotation is int:
        kind, metavar = click.INT, "N"
    else:
        kind, metavar = click.STRING, "TEXT"
    return click.option(flag, name, type=kind, default=None, metavar=metavar, help=help_text)


def settings_options(
    *, include: Collection[str] | None = None, exclude: Collection[str] = ()
) -> Callable[[F], F]:
    """A decorator adding one option per settings field (``include`` only, minus ``exclude``)."""
    fields = ServiceSettings.model_fields
    names = [
        name for name in fields if (include is None or name in include) and name not in exclude
    ]
    unknown = set(include or ()) - set(fields)
    if unknown:
        raise ValueError(f"not settings fields: {sorted(unknown)}")

    def decorate(command: F) -> F:
        for name in reversed(names):  # click lists options in decoration order, bottom up
            command = _option(name, fields[name])(command)
        return command

    return decorate


def settings_from_options(options: Mapping[str, Any]) -> ServiceSettings:
    """The settings: given flags first, then ``DHAN_POSTBACK_*`` variables, then defaults.

    A bad value becomes a :class:`click.BadParameter` naming the flag.
    """
    given = {
        name: value
        for name, value in options.items()
        if name in ServiceSettings.model_fields and value is not None
    }
    try:
        return ServiceSettings(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = error["loc"][0] if error["loc"] else ""
        hint = f"--{str(location).replace('_', '-')} (or {_env_var(str(location))})"
        raise click.BadParameter(str(error["msg"]), param_hint=hint) from None
