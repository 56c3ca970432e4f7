"""Command-line flags made from the settings models of :mod:`dhan_postback.settings`.

One flag per field, named after it (``max_in_flight_per_url`` is ``--max-in-flight-per-url``),
its help the field's description followed by ``[env: VARIABLE; default: VALUE]``. Only the
flags actually given are passed to the model, so a flag left out falls back to its variable,
then to the default. A value the model refuses is one usage error naming the flag (and the
variable, when the value came from there)::

    @click.command()
    @settings_options(ServiceSettings)
    def serve(settings: ServiceSettings) -> None: ...

:func:`settings_table` renders the same facts as the Markdown table docs/operations.md shows.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import types
import typing
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from ..durations import format_duration
from ..settings import DURATION, SCHEDULE, FromFile, Kind

__all__ = [
    "build_settings",
    "env_name",
    "flag_name",
    "read_secret_file",
    "settings_options",
    "settings_table",
    "shown_default",
]

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(model: type[BaseModel], name: str) -> str | None:
    """The variable a field is read from (None for flag-only models)."""
    if not issubclass(model, BaseSettings):
        return None
    alias = model.model_fields[name].validation_alias
    if isinstance(alias, str):
        return alias
    return str(model.model_config.get("env_prefix", "")) + name.upper()


def _kind(field: FieldInfo) -> Kind | None:
    return next((item for item in field.metadata if isinstance(item, Kind)), None)


def _from_file(field: FieldInfo) -> FromFile | None:
    return next((item for item in field.metadata if isinstance(item, FromFile)), None)


def _base_type(field: FieldInfo) -> Any:
    annotation = field.annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        others = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        annotation = others[0] if len(others) == 1 else annotation
    return annotation


def shown_default(field: FieldInfo) -> str | None:
    """The default as a user would type it, or None when there is none worth showing."""
    default = field.default
    if default is None or isinstance(default, SecretStr) or default == ():
        return None
    kind = _kind(field)
    if kind is DURATION:
        return format_duration(float(default))
    if kind is SCHEDULE:
        return ",".join(format_duration(delay) for delay in default)
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, tuple):
        return ",".join(str(item) for item in default)
    return str(default)


def _metavar(field: FieldInfo) -> str:
    kind = _kind(field)
    if kind is not None:
        return kind.metavar
    base = _base_type(field)
    names = {int: "INTEGER", float: "NUMBER", SecretStr: "SECRET", dt.date: "DATE", Path: "DIR"}
    return names.get(base, "TEXT")


def _help(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    notes = []
    env = env_name(model, name)
    if env is not None:
        notes.append(f"env: {env}")
    default = shown_default(field)
    if default is not None:
        notes.append(f"default: {default}")
    suffix = f" [{'; '.join(notes)}]" if notes else ""
    return (field.description or "") + suffix


def _dest(param: str, name: str) -> str:
    return f"{param}__{name}"


def _option(model: type[BaseModel], name: str, field: FieldInfo, dest: str) -> Callable[[F], F]:
    flag = flag_name(name)
    help_text = _help(model, name, field)
    if _base_type(field) is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", dest, default=None, help=help_text)
    multiple = typing.get_origin(_base_type(field)) is tuple and _kind(field) is not SCHEDULE
    return click.option(
        flag, dest, default=None, multiple=multiple, metavar=_metavar(field), help=help_text
    )


def _file_help(field: FieldInfo, env: str | None) -> str:
    marker = _from_file(field)
    many = " (one per line; several allowed)" if marker is not None and marker.many else ""
    notes = f" [env: {env}_FILE]" if env else ""
    return f"File holding the secret{many}: unlike a flag, not shown in the process list.{notes}"


def _file_option(
    model: type[BaseModel], name: str, field: FieldInfo, dest: str
) -> Callable[[F], F]:
    env = env_name(model, name)
    return click.option(
        flag_name(name) + "-file",
        dest,
        default=None,
        metavar="PATH",
        envvar=None if env is None else env + "_FILE",
        help=_file_help(field, env),
    )


def read_secret_file(path: str, flag: str) -> list[str]:
    """The secrets in ``path``, one per line (blank lines and ``#`` comments skipped); one
    ``Error:`` line when it cannot be read or holds none (the file is wrong, not the
    command line, so no pointer to ``--help``)."""
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise click.ClickException(f"{flag}: cannot read {path}: {reason}") from None
    found = [line.strip() for line in text.splitlines()]
    found = [line for line in found if line and not line.startswith("#")]
    if not found:
        raise click.ClickException(f"{flag}: {path} holds no secret (one per line)")
    return found


def _with_file(
    model: type[BaseModel], name: str, field: FieldInfo, value: Any, path: str | None
) -> Any:
    """The flag's ``value`` with the secrets of the ``--<name>-file`` at ``path`` added (for
    a field of several) or put in its place (giving both the secret and its file is then a
    mistake: which one was meant?)."""
    if path is None:
        return value
    flag = flag_name(name) + "-file"
    found = read_secret_file(path, flag)
    env = env_name(model, name)
    from_env = os.environ.get(env) if env else None
    marker = _from_file(field)
    if marker is not None and marker.many:
        given = tuple(value) if value else ((from_env,) if from_env else ())
        return (*given, *found)
    if len(found) != 1:
        raise click.ClickException(f"{flag}: {path} must hold exactly one secret")
    if value or from_env:
        raise click.UsageError(
            f"give the secret or {flag}, not both (unset the variable or the flag)"
        )
    return found[0]


def settings_options(
    model: type[M],
    *,
    only: Collection[str] | None = None,
    exclude: Collection[str] = (),
    param: str = "settings",
) -> Callable[[F], F]:
    """Add one flag per field of ``model`` (or of the ``only`` ones, but the ``exclude``
    ones) to a click command function, which then receives the settings as ``param``."""
    fields = {
        name: field
        for name, field in model.model_fields.items()
        if (only is None or name in only) and name not in exclude
    }
    if only is not None and set(only) - set(fields) - set(exclude):
        raise ValueError(f"not fields of {model.__name__}: {sorted(set(only) - set(fields))}")

    files = [name for name, field in fields.items() if _from_file(field) is not None]

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def with_settings(*args: Any, **kwargs: Any) -> Any:
            flags = {name: kwargs.pop(_dest(param, name)) for name in fields}
            for name in files:
                path = kwargs.pop(_dest(param, name) + "__file")
                flags[name] = _with_file(model, name, fields[name], flags[name], path)
            kwargs[param] = build_settings(model, flags)
            return function(*args, **kwargs)

        # wraps() copied the function's own flags; a fresh list keeps them apart from ours
        with_settings.__click_params__ = list(  # type: ignore[attr-defined]
            getattr(function, "__click_params__", [])
        )
        decorated: Any = with_settings
        for name, field in reversed(fields.items()):
            if name in files:
                dest = _dest(param, name) + "__file"
                decorated = _file_option(model, name, field, dest)(decorated)
            decorated = _option(model, name, field, _dest(param, name))(decorated)
        return typing.cast(F, decorated)

    return decorate


def build_settings(model: type[M], flags: Mapping[str, Any]) -> M:
    """``model`` from the flags given (the rest from its variables, then defaults); a refused
    value is one :class:`click.UsageError` naming the flag and, if it came from there, the
    variable."""
    given = {name: value for name, value in flags.items() if value is not None and value != ()}
    try:
        return model(**given)
    except ValidationError as exc:
        problems = []
        aliases = {
            field.validation_alias: name
            for name, field in model.model_fields.items()
            if isinstance(field.validation_alias, str)
        }
        for error in exc.errors(include_url=False, include_input=False):
            name = str(error["loc"][0]) if error["loc"] else ""
            name = aliases.get(name, name)
            problems.append(_problem(model, name, error["type"], error["msg"], name in given))
        raise click.UsageError("; ".join(problems)) from None


def _problem(model: type[BaseModel], name: str, kind: str, message: str, flagged: bool) -> str:
    flag = flag_name(name)
    env = env_name(model, name) if name in model.model_fields else None
    if kind == "missing":
        return f"{flag} is required: pass it" + (f" or set {env}" if env else "")
    message = message.removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    source = flag if flagged or env is None else f"{env} (for {flag})"
    return f"{source}: {message}"


def settings_table(model: type[BaseModel], *, only: Collection[str] | None = None) -> str:
    """The Markdown table of ``model``'s settings: flag, variable, default, meaning."""
    rows = ["| flag | variable | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        if only is not None and name not in only:
            continue
        env = env_name(model, name)
        default = shown_default(field)
        rows.append(
            f"| `{flag_name(name)}` | {f'`{env}`' if env else '(flag only)'} | "
            f"{f'`{default}`' if default is not None else ''} | {field.description or ''} |"
        )
        if _from_file(field) is not None:
            rows.append(
                f"| `{flag_name(name)}-file` | {f'`{env}_FILE`' if env else '(flag only)'} | "
                f" | {_file_help(field, None)} |"
            )
    return "\n".join(rows)
