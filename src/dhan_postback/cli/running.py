"""What every long-running command does the same way: bind first, run on uvloop, stop on
SIGTERM or Ctrl-C, and say a failure in one line.

A server command binds its port before anything else starts, so that a port in use is one line
(``Error: cannot listen on 127.0.0.1:8000: address already in use; ...``) and not a migrated
schema, a started dispatcher and a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

__all__ = ["listen", "run", "stop_event"]

T = TypeVar("T")


def listen(
    host: str, port: int, *, flag: str = "--port", host_flag: str = "--host"
) -> socket.socket:
    """A socket listening on ``host:port`` (port 0: any free one), or a one-line error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise click.UsageError(
            f"cannot listen on {host}: {exc.strerror}; give an address of this machine with "
            f"{host_flag}"
        ) from None
    family = infos[0][0]
    try:
        server = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
        if exc.errno == errno.EADDRINUSE:
            advice = f"stop what is using it, or choose another port with {flag}"
        elif exc.errno == errno.EACCES:
            advice = f"ports below 1024 need privileges: choose another with {flag}"
        else:
            advice = f"give an address of this machine with {host_flag}"
        raise click.ClickException(f"cannot listen on {host}:{port}: {reason}; {advice}") from None
    server.set_inheritable(True)
    return server


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop (asyncio where uvloop is not built)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def stop_event() -> asyncio.Event:
    """An event set by the first SIGTERM or SIGINT (a second one still stops the process)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def first() -> None:
        stop.set()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, first)
    return stop
