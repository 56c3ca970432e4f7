"""The ``dhan-postback`` command.

Each sub-command lives in its own module and is imported only when it is run, so that
``dhan-postback simulate`` does not pay for importing the HTTP stack. To add a command, write
``cli/<name>.py`` with a click command and add one line to ``COMMANDS``.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from .._version import __version__

__all__ = ["COMMANDS", "main"]

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
        module = importlib.import_module(f"{__name__}.{module_name}")
        command: Any = getattr(module, attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{entry[0]} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="dhan-postback")
def main() -> None:
    """DhanHQ v2 order-update postbacks: send them durably, receive them safely, simulate them."""
