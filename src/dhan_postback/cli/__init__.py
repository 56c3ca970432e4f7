"""The ``dhan-postback`` command.

Each sub-command lives in its own module and is imported only when it is run, so that
``dhan-postback simulate`` does not pay for importing the HTTP stack. To add a command, write
``cli/<name>.py`` with a click command (its flags from a settings model, see :mod:`.options`,
its help ending with examples) and add one line to ``COMMANDS``.

Every mistake ends in one line on standard error, ``Error: <what, and what to do>``, and exit
status 2 for a usage mistake or 1 for a runtime failure; never a traceback (set
``DHAN_POSTBACK_DEBUG=1`` to see one for an unexpected error).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from .._version import __version__
from ..errors import DhanPostbackError

__all__ = ["COMMANDS", "LazyGroup", "examples_last", "help_command", "main", "one_line"]

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module under dhan_postback.cli, attribute), plus the one-line help shown in --help
    "simulate": ("simulate:simulate", "Print simulated order updates as JSON lines."),
    "receive": ("receive:receive", "Receive postbacks at a URL: verify, store, keep the book."),
    "orders": ("orders:orders", "Print the order book a receiver has built."),
    "demo": ("demo:demo", "Run everything on this machine and verify every delivery."),
    "send": ("send:send", "Send one realistic postback to a URL and show the answer."),
    "serve": ("serve:serve", "Run the postback service (API, outbox, delivery)."),
    "tokens": ("tokens:tokens", "Create, list or revoke access tokens through a running service."),
    "endpoints": ("endpoints:endpoints", "List endpoints, show one, rotate its signing secret."),
    "deliveries": ("deliveries:deliveries", "List deliveries, show one, replay them."),
    "worker": ("worker:worker", "Run only the dispatcher on a shared outbox (more nodes)."),
    "relay": ("relay:relay", "Relay a Dhan account's live order updates as postbacks."),
    "help": ("__init__:help_command", "Show the help of the command, or of COMMAND."),
}


class LazyGroup(click.Group):
    """A click group that imports a sub-command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attribute = entry[0].split(":")
        if module_name == "__init__":
            module = sys.modules[__name__]
        else:
            module = importlib.import_module(f"{__name__}.{module_name}")
        command: Any = getattr(module, attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{entry[0]} is not a click command")
        examples_last(command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; in standalone mode every error is :func:`one_line`."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.Abort:
            _fail("stopped", 1)
        except click.UsageError as exc:
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            _fail(exc.format_message() + hint, exc.exit_code)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except DhanPostbackError as exc:
            _fail(exc.message, 1)
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as exc:
            if os.environ.get("DHAN_POSTBACK_DEBUG"):
                traceback.print_exc()
            _fail(
                f"unexpected {type(exc).__name__}: {one_line(str(exc))}; please report it "
                "(DHAN_POSTBACK_DEBUG=1 shows the traceback)",
                1,
            )
        sys.exit(result if isinstance(result, int) else 0)


def examples_last(command: click.Command) -> None:
    """Move the ``Examples:`` block of a command's docstring (and its sub-commands') after
    its options, so that every help ends with examples."""
    help_text = inspect.cleandoc(command.help or "")
    start = help_text.find("\b\nExamples:")
    if start >= 0 and command.epilog is None:
        command.help = help_text[:start].rstrip()
        command.epilog = help_text[start:]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            examples_last(sub)


def one_line(text: str) -> str:
    """``text`` on one line: its lines joined, runs of spaces squeezed."""
    return " ".join(text.split())


def _fail(message: str, status: int) -> NoReturn:
    click.echo(f"Error: {one_line(message)}", err=True)
    sys.exit(status)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dhan-postback")
def main() -> None:
    """DhanHQ v2 order-update postbacks: send them durably, receive them safely, simulate them.

    \b
    Examples:
      dhan-postback demo                 everything on this machine, verified
      dhan-postback help serve           how to run the postback service
    """


@click.command("help")
@click.argument("command", nargs=-1)
@click.pass_context
def help_command(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Show the help of dhan-postback, or of COMMAND (and its sub-command).

    \b
    Examples:
      dhan-postback help
      dhan-postback help tokens create
    """
    root = ctx.find_root()
    group: click.Command = root.command
    target_ctx = root
    for name in command:
        if not isinstance(group, click.Group):
            raise click.UsageError(f"{target_ctx.command_path} has no sub-command {name!r}")
        found = group.get_command(target_ctx, name)
        if found is None:
            known = ", ".join(group.list_commands(target_ctx))
            raise click.UsageError(f"no command {name!r}; the commands are: {known}")
        group = found
        target_ctx = click.Context(found, info_name=name, parent=target_ctx)
    click.echo(group.get_help(target_ctx))


examples_last(main)
