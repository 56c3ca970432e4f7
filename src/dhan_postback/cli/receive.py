"""``dhan-postback receive``: a Postback URL on this machine, with a live view of the book."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import click
import msgspec
import structlog
import uvicorn
from rich.console import Group
from rich.live import Live

from ..receiver import Receiver, ReceiverStats
from ..receiver.view import orders_table, stats_text
from ..serving import BackgroundServer
from ..settings import ReceiverSettings
from .options import settings_options
from .running import listen, run, stop_event

__all__ = ["receive"]

_REFRESH = 0.5
_LOG_EVERY = 60.0
_LIVE_ROWS = 20

log = structlog.get_logger(__name__)


@click.command()
@settings_options(ReceiverSettings)
def receive(settings: ReceiverSettings) -> None:
    """Receive postbacks: verify, de-duplicate, store durably, keep the order book.

    Answers POST at --path and GET /healthz. On a terminal it shows the book live; otherwise
    it logs its counts once a minute. SIGTERM or Ctrl-C stops it.

    \b
    Examples:
      dhan-postback receive --port 8001 --secret-file receiver.secrets
      DHAN_POSTBACK_RECEIVER_SECRET=whsec_old,whsec_new dhan-postback receive --db book.db
    """
    listening = listen(settings.host, settings.port)
    try:
        receiver = Receiver(
            secret=list(settings.secret) or None,
            db=settings.db,
            allowed_client_ids=set(settings.client_id) or None,
            path_secret=settings.path if settings.path.strip("/") else None,
        )
    except ValueError as exc:
        raise click.UsageError(f"--secret: {exc}") from None
    except (sqlite3.Error, OSError) as exc:
        # OSError: the file is made (mode 0600) before SQLite opens it, so its folder's
        # trouble is the operating system's, said as "file exists: a-file" and the like
        reason = (
            f"{exc.strerror.lower()}: {exc.filename}"
            if isinstance(exc, OSError) and exc.strerror and exc.filename
            else str(exc)
        )
        raise click.ClickException(
            f"cannot open the receiver database {settings.db}: {reason}; check that its folder "
            "exists and is writable (--db, DHAN_POSTBACK_RECEIVER_DB)"
        ) from None
    quiet = settings.quiet
    server = BackgroundServer(
        receiver,
        host=settings.host,
        port=settings.port,
        # The live table owns a terminal; elsewhere uvicorn's start and stop lines are useful.
        log_level="warning" if quiet or sys.stdout.isatty() else "info",
        # Nothing in the receiver reads the client's address or scheme, so uvicorn's
        # X-Forwarded-* rewriting would be a header scan per postback for nothing.
        proxy_headers=False,
        **settings.connection_limits.uvicorn_options(),
    )
    shown_path = "/" if not settings.path.strip("/") else "/<secret path>"
    if not quiet:
        click.echo(
            f"receiving postbacks at http://{settings.host}:{listening.getsockname()[1]}"
            f"{shown_path} (db {settings.db}, signatures "
            f"{'verified' if settings.secret else 'not checked'})"
        )
    run(_serve(server, receiver, listening, quiet=quiet))


async def _serve(
    server: BackgroundServer, receiver: Receiver, listening: socket.socket, *, quiet: bool
) -> None:
    """Serve until SIGTERM or Ctrl-C, with the live table (a TTY) or a log line a minute
    (otherwise)."""
    stop = stop_event()
    show: Callable[[Receiver, uvicorn.Server], Coroutine[Any, Any, None]] | None = None
    if not quiet:
        show = _live_table if sys.stdout.isatty() else _log_minutely
    display = asyncio.get_running_loop().create_task(show(receiver, server)) if show else None
    try:
        await server.start(sockets=[listening])
        await stop.wait()
        await server.stop()
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
