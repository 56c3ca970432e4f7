"""``--<name>-file`` options: a secret read from a file, so it never shows in ``ps``.

A flag's value is visible to every user of the machine in the process list, and stays in the
shell's history; an environment variable or a file with mode 0600 is not. Every command that
takes a secret therefore takes it three ways: the flag (for quick local tries), its
``DHAN_POSTBACK_*`` variable, and ``--<name>-file``. A file holds one secret per line (blank
lines and ``#`` comments are skipped); options that accept several secrets take every line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["METRICS_TOKEN_FILE_ENV", "read_secret_file", "secret_file_option"]

METRICS_TOKEN_FILE_ENV = "DHAN_POSTBACK_METRICS_TOKEN_FILE"

F = TypeVar("F", bound=Callable[..., Any])


def read_secret_file(path: str, flag: str) -> list[str]:
    """The secrets in ``path``, one per line; a one-line ``UsageError`` when unreadable."""
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise click.UsageError(f"{flag}: cannot read {path}: {reason}") from None
    secrets = [line.strip() for line in text.splitlines()]
    found = [line for line in secrets if line and not line.startswith("#")]
    if not found:
        raise click.UsageError(f"{flag}: {path} holds no secret (one per line)")
    return found


def secret_file_option(
    target: str, flag: str, *, envvar: str | None = None, many: bool = False
) -> Callable[[F], F]:
    """Add ``flag`` (a file) to a command, filling its ``target`` parameter from the file.

    With ``many``, the file's secrets are added to those given otherwise; without, the file
    must hold exactly one, and giving both the secret and the file is a mistake.
    """
    name = target + "_file"

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            path = kwargs.pop(name)
            if path is not None:
                found = read_secret_file(path, flag)
                if many:
                    kwargs[target] = (*(kwargs.get(target) or ()), *found)
                else:
                    if len(found) != 1:
                        raise click.UsageError(f"{flag}: {path} must hold exactly one secret")
                    if kwargs.get(target):
                        raise click.UsageError(
                            f"give the secret or {flag}, not both (unset the variable or the flag)"
                        )
                    kwargs[target] = found[0]
            return command(*args, **kwargs)

        option = click.option(
            flag,
            name,
            default=None,
            metavar="PATH",
            envvar=envvar,
            show_envvar=envvar is not None,
            help="File holding the secret"
            + (" (one per line; several allowed)" if many else "")
            + ": unlike a flag, not shown in the process list.",
        )
        return option(wrapper)  # type: ignore[return-value]

    return decorate
