"""``dhan-postback receive``: a Postback URL on this machine, with a live view of the book."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import click
import msgspec
import structlog
import uvicorn
from rich.console import Group
from rich.live import Live

from ..connections import ConnectionLimits
from ..durations import parse_duration
from ..receiver import Receiver, ReceiverStats
from ..receiver.view import orders_table, stats_text
from ._secrets import secret_file_option

__all__ = ["receive", "split_secrets"]

_REFRESH = 0.5
_LOG_EVERY = 60.0
_LIVE_ROWS = 20

log = structlog.get_logger(__name__)


def split_secrets(values: tuple[str, ...]) -> tuple[str, ...]:
    """Every secret of repeated ``--secret`` flags, each of which (or the environment
    variable) may hold several, separated by commas: a receiver in the middle of a rotation
    accepts a postback that any of them signs. (``whsec_`` secrets are base64: no commas.)"""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter("must be more than 0s")
    return seconds


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--db",
    default="receiver.db",
    show_default=True,
    envvar="DHAN_POSTBACK_RECEIVER_DB",
    show_envvar=True,
    help="SQLite file for updates and the order book (created when missing).",
)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    envvar="DHAN_POSTBACK_RECEIVER_SECRET",
    show_envvar=True,
    callback=lambda ctx, param, values: split_secrets(values),
    help="whsec_ signing secret to verify. Repeat it, or separate several with commas (or "
    "spaces in the env var), to accept any of them during a rotation; prefer the variable or "
    "--secret-file: flags show in `ps`.",
)
@secret_file_option(
    "secrets", "--secret-file", envvar="DHAN_POSTBACK_RECEIVER_SECRET_FILE", many=True
)
@click.option(
    "--path",
    default="/",
    show_default=True,
    envvar="DHAN_POSTBACK_RECEIVER_PATH",
    show_envvar=True,
    help="Path that accepts POSTs; a long random one works as a secret without signatures.",
)
@click.option(
    "--client-id",
    "client_ids",
    multiple=True,
    envvar="DHAN_POSTBACK_RECEIVER_CLIENT_IDS",
    show_envvar=True,
    help="Accept only these dhanClientId values (repeat); others get 403.",
)
@click.option(
    "--header-timeout",
    default="10s",
    show_default=True,
    envvar="DHAN_POSTBACK_RECEIVER_HEADER_TIMEOUT",
    show_envvar=True,
    callback=_duration,
    help="Time a client has to send a request's headers.",
)
@click.option(
    "--keep-alive-timeout",
    default="5s",
    show_default=True,
    envvar="DHAN_POSTBACK_RECEIVER_KEEP_ALIVE_TIMEOUT",
    show_envvar=True,
    callback=_duration,
    help="Time an idle keep-alive connection is kept open.",
)
@click.option(
    "--max-connections",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    envvar="DHAN_POSTBACK_RECEIVER_MAX_CONNECTIONS",
    show_envvar=True,
    help="Open client connections; more are closed at once.",
)
@click.option("--quiet", is_flag=True, help="No live table and no periodic log lines.")
def receive(
    host: str,
    port: int,
    db: str,
    secrets: tuple[str, ...],
    path: str,
    client_ids: tuple[str, ...],
    header_timeout: float,
    keep_alive_timeout: float,
    max_connections: int,
    quiet: bool,
) -> None:
    """Receive postbacks: verify, de-duplicate, store durably, keep the order book."""
    try:
        receiver = Receiver(
            secret=list(secrets) or None,
            db=db,
            allowed_client_ids=set(client_ids) or None,
            path_secret=path if path.strip("/") else None,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--secret") from None
    config = uvicorn.Config(
        receiver,
        host=host,
        port=port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        lifespan="on",
        access_log=False,
        # The live table owns a terminal; elsewhere uvicorn's start and stop lines are useful.
        log_level="warning" if quiet or sys.stdout.isatty() else "info",
        **ConnectionLimits(header_timeout, keep_alive_timeout, max_connections).uvicorn_options(),
    )
    server = uvicorn.Server(config)
    shown_path = "/" if not path.strip("/") else "/<secret path>"
    if not quiet:
        click.echo(
            f"receiving postbacks at http://{host}:{port}{shown_path} "
            f"(db {db}, signatures {'verified' if secrets else 'not checked'})"
        )
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(_serve(server, receiver, quiet=quiet))


async def _serve(server: uvicorn.Server, receiver: Receiver, *, quiet: bool) -> None:
    """Serve until stopped, with the live table (a TTY) or a log line a minute (otherwise)."""
    show: Callable[[Receiver, uvicorn.Server], Coroutine[Any, Any, None]] | None = None
    if not quiet:
        show = _live_table if sys.stdout.isatty() else _log_minutely
    display = asyncio.get_running_loop().create_task(show(receiver, server)) if show else None
    try:
        await server.serve()
    finally:
        if display is not None:
            display.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await display


async def _live_table(receiver: Receiver, server: uvicorn.Server) -> None:
    # uvicorn exposes only a flag; draw below its start-up lines, not among them
    while not server.started:  # noqa: ASYNC110
        await asyncio.sleep(0.05)

    def render() -> Group:
        rows = receiver.store.orders(limit=_LIVE_ROWS)
        return Group(stats_text(receiver.stats()), orders_table(rows))

    with Live(await asyncio.to_thread(render), refresh_per_second=2) as live:
        while True:
            await asyncio.sleep(_REFRESH)
            live.update(await asyncio.to_thread(render))


async def _log_minutely(receiver: Receiver, server: uvicorn.Server) -> None:
    last: ReceiverStats | None = None
    while True:
        await asyncio.sleep(_LOG_EVERY)
        stats = receiver.stats()
        if stats != last:
            log.info("receiver counts", **msgspec.structs.asdict(stats))
            last = stats
