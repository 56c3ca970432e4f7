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
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ConnectionLimits", "guarded_protocol"]

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
    """uvicorn's httptools protocol with a header timeout and a connection cap."""

    limits = ConnectionLimits()
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            _refusals.count(self.limits.max_connections)
            transport.close()
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle now, waiting for the next request
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout, self._headers_too_slow
        )

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` that applies ``limits``."""
    return type("GuardedHttpToolsProtocol", (_GuardedProtocol,), {"limits": limits})
