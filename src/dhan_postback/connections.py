"""Bounds on client connections, for every server this package runs (serve, worker, receive).

uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``) but nothing else: a
socket that connects and sends nothing, or sends one header line every few seconds, is held
for as long as the client likes, and the number of such sockets has no cap. So a client with
a few hundred idle sockets could exhaust a server's file descriptors and memory while sending
almost nothing. The protocol here is uvicorn's own (httptools) with two guards added:

* **header timeout**: from the moment a connection is ready for a request (when it opens, and
  after each response on a kept-alive connection) the request's headers must be complete
  within ``header_timeout`` seconds, however they trickle in; otherwise the connection is
  closed. The body is the app's to bound (it limits sizes; a reverse proxy buffers bodies).
* **connection cap**: a connection beyond ``max_connections`` is closed as soon as it opens,
  so that the ones already served keep their resources.

It also sends what one callback writes in one system call (:class:`JoinedWrites`): uvicorn
writes a response's head and its body separately, and uvloop sends each write at once, so a
small response would cost two sends and two wake-ups of the client.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Final

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ConnectionLimits", "JoinedWrites", "guarded_protocol"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The three bounds, in seconds and connections (defaults suit a service behind a proxy)."""

    header_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 1000

    def uvicorn_options(self) -> dict[str, Any]:
        """Keyword arguments for ``uvicorn.Config`` that apply these limits."""
        return {
            "http": guarded_protocol(self),
            "timeout_keep_alive": max(1, round(self.keep_alive_timeout)),
        }


class _Refusals:
    """Connections closed for the cap: one log line a minute at most, with the count."""

    def __init__(self) -> None:
        self._since_log = 0
        self._logged_at = -60.0

    def count(self, limit: int) -> None:
        self._since_log += 1
        now = time.monotonic()
        if now - self._logged_at >= 60.0:
            log.warning("connections refused: too many open", limit=limit, refused=self._since_log)
            self._since_log, self._logged_at = 0, now


_refusals = _Refusals()


class _GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and a connection cap.

    The header timeout is one timer per connection, not one per request: a request only
    notes when its successor's headers are due (``_headers_due``, None while a request is
    being served), and the timer, when it fires, closes the connection if they are overdue
    or else waits again.
    """

    limits = ConnectionLimits()
    _header_timer: asyncio.TimerHandle | None = None
    _headers_due: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(JoinedWrites(transport, self.loop))  # type: ignore[arg-type]
        if len(self.connections) > self.limits.max_connections:
            _refusals.count(self.limits.max_connections)
            transport.close()
            return
        self._headers_due = self.loop.time() + self.limits.header_timeout
        self._header_timer = self.loop.call_at(self._headers_due, self._check_headers)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._headers_due = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle now, waiting for the next request
            self._headers_due = self.loop.time() + self.limits.header_timeout

    def _check_headers(self) -> None:
        now = self.loop.time()
        due = self._headers_due
        if due is not None and now >= due:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()
            return
        self._header_timer = self.loop.call_at(
            now + self.limits.header_timeout if due is None else due, self._check_headers
        )


_JOIN_LIMIT: Final = 64 * 1024
"""Bytes held before a flush regardless: past this, uvloop's own buffering and uvicorn's
flow control (pause on a full buffer) take over, as without joining."""


class JoinedWrites:
    """A transport whose writes during one callback go out together, once it has run.

    The first write of a callback schedules a flush (``call_soon``); later writes in the same
    callback join it. uvicorn answers a request with a head and a body written back to back
    in one step of the app's task, so a small response leaves in one ``send``. Closing, EOF
    and aborting act on what is held first; everything else is the real transport's.
    """

    __slots__ = ("_held", "_held_size", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None
        self._held_size = 0

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = [data]
            self._held_size = len(data)
            self._loop.call_soon(self.flush)
        else:
            self._held.append(data)
            self._held_size += len(data)
        if self._held_size > _JOIN_LIMIT:
            self.flush()

    def flush(self) -> None:
        held, self._held = self._held, None
        # A connection closed meanwhile (the client went away) takes no more: uvloop raises
        # on a write to a closed handle, where uvicorn itself would not have written.
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + (self._held_size if self._held else 0)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` that applies ``limits``."""
    return type("GuardedHttpToolsProtocol", (_GuardedProtocol,), {"limits": limits})
