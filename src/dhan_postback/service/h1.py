"""The dispatcher's own HTTP/1.1 client: a POST on a pooled keep-alive connection, nothing else.

The dispatcher sends one kind of request: a POST of a few hundred stored bytes, with a handful
of headers, to a URL it has sent to before, reading back a small answer. aiohttp's
``ClientSession`` does that and a great deal more (cookies, proxies, redirects, middlewares,
traces, streaming bodies), and on the 2-core benchmark machine that generality cost about 200 us
of CPU per POST against about 50 us for the same exchange on a bare ``asyncio.Protocol`` with
httptools parsing the answer (docs/performance.md). At thousands of deliveries a second, on
cores shared with the receiver and the store's writer thread, that was most of the
dispatcher's CPU, so :class:`H1Sender` is the default :class:`~.sender.Sender`.

What it keeps of the aiohttp sender, rule for rule (the same integration tests run on both):

* **The URL guard at connect time.** Names are resolved by the same
  :class:`~dhan_postback.urlpolicy.GuardedResolver` and every address goes through its socket
  factory, so DNS rebinding and literal addresses are refused exactly as before, with the
  same words (``ClientConnectorError: Cannot connect to host ...``, as aiohttp wrote them).
* **Keep-alive connections per** ``scheme://host:port``, reused most recent first, dropped
  when the server closes them, after :data:`KEEPALIVE` seconds unused, and when an answer
  says ``Connection: close``; how many are open at once is bounded by the dispatcher's lanes
  (``max_in_flight_per_url`` per endpoint), which are keyed the same way.
* **One POST, never a redirect, never a retry here:** a 3xx is an answer like any other, and
  a connection that fails under a request fails the attempt (the dispatcher's retry schedule
  decides, as it did when aiohttp refused to retry a non-idempotent POST).
* **The answer:** its status, ``Retry-After`` for 429 and 503, the first
  :data:`~.retry.RESPONSE_PREFIX_BYTES` of its body (decoded from chunks when chunked, never
  decompressed: no ``Accept-Encoding`` is sent), read whole up to
  :data:`~.sender.DRAIN_LIMIT` so that the connection is kept, the connection closed beyond.
  A status is only an answer once the whole message arrived: an answer cut short raises
  :class:`~.sender.SendError` with its status, which the dispatcher records as a failure.
* **The timeout** (``settings.timeout``) covers the whole exchange, connecting included.
* TLS with the system's default verified context for ``https`` URLs (``SSL_CERT_FILE`` names
  another bundle of trusted authorities, as for any OpenSSL program).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, Final, cast

import httptools
from yarl import URL

from ..settings import ServiceSettings
from ..urlpolicy import GuardedResolver
from .retry import RESPONSE_PREFIX_BYTES, RETRY_AFTER_STATUSES
from .sender import DRAIN_LIMIT, Answer, ParsedUrls, Request, SendError, timed_out

__all__ = ["KEEPALIVE", "H1Sender"]

KEEPALIVE: Final = 15.0
"""Seconds an unused connection is kept (aiohttp's default ``keepalive_timeout``)."""

_Key = tuple[str, str, int]
"""``(scheme, host, port)``: one pool of connections."""


class _Target:
    """A URL parsed once: its pool, where to connect, and the start of every request to it."""

    __slots__ = ("head", "host", "key", "port", "tls")

    def __init__(self, url: str) -> None:
        parsed = URL(url)
        host, port = parsed.raw_host, parsed.port
        if not parsed.absolute or host is None or port is None:
            raise ValueError(f"not an absolute http(s) URL: {url!r}")
        self.tls = parsed.scheme == "https"
        if parsed.scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host, self.port = host, port
        self.key: _Key = (parsed.scheme, host, port)
        self.head = (
            f"POST {parsed.raw_path_qs} HTTP/1.1\r\n"
            f"Host: {parsed.host_port_subcomponent}\r\nAccept: */*\r\n"
        )


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the answer it is reading (if any)."""

    def __init__(self, on_lost: Callable[[_Connection], None]) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.key: _Key | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status: int | None = None
        self.body = b""
        self.retry_after: str | None = None
        self.reusable = False
        self._total = 0
        self._sized = False
        """The answer has a Content-Length or is chunked (else its body runs until close)."""
        self._retry_after = b""

    # The request ---------------------------------------------------------------------------
    def begin(self, data: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """Send one request; the future is done when its whole answer arrived."""
        assert self.transport is not None and self._waiter is None
        self._reset()
        waiter = self._waiter = loop.create_future()
        self.transport.write(data)
        return waiter

    def fail(self, error: BaseException) -> None:
        """End the exchange under way with ``error`` and close the connection."""
        self._finish(error)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()

    def _finish(self, error: BaseException | None = None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    # asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing was asked: a server that talks out of turn
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(SendError("ClientResponseError: unexpected upgrade", status=self.status))
        except httptools.HttpParserError as exc:
            message = f"ClientResponseError: invalid HTTP answer ({exc})"
            self.fail(SendError(message, status=self.status))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None:
            if exc is None and self.status is not None and self.status >= 200 and not self._sized:
                self._finish()  # the body ran until a clean close, as HTTP/1.1 allows
            else:
                reason = f"ClientOSError: {exc}" if exc else "ServerDisconnectedError: closed"
                self._finish(SendError(reason, status=self.status))
        self._on_lost(self)

    # httptools callbacks -------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or name == b"transfer-encoding":
            self._sized = True
        elif name == b"retry-after":
            self._retry_after = value

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if len(self.body) < RESPONSE_PREFIX_BYTES:
            self.body += body[: RESPONSE_PREFIX_BYTES - len(self.body)]
        self._total += len(body)
        if self._total > DRAIN_LIMIT:  # not worth reading on: close instead
            self._finish()
            self.close()

    def on_message_complete(self) -> None:
        status = self.status
        if status is not None and status < 200:  # an interim answer (100 Continue): wait on
            self._reset()
            return
        if status in RETRY_AFTER_STATUSES and self._retry_after:
            self.retry_after = self._retry_after.decode("latin-1")
        self.reusable = self._parser.should_keep_alive()
        self._finish()


class H1Sender:
    """The default sender (see the module docstring). Make it inside the event loop that
    will use it; :meth:`aclose` closes every connection."""

    def __init__(self, settings: ServiceSettings) -> None:
        self._timeout = settings.timeout
        self._guard = GuardedResolver(allow_loopback=settings.allow_loopback)
        self._socket: Callable[[Any], socket.socket] = self._guard.guard_connector_kwargs()[
            "socket_factory"
        ]
        self._targets = ParsedUrls(_Target)
        self._idle: dict[_Key, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._tls: ssl.SSLContext | None = None
        self._next_sweep = 0.0

    async def send(self, request: Request) -> Answer:
        target = self._targets[request.url]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        headers = request.headers
        fields = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        if fields.count("\n") != len(headers) or fields.count("\r") != len(headers):
            raise ValueError("a header name or value holds a line break")
        head = f"{target.head}{fields}Content-Length: {len(request.body)}\r\n\r\n"
        connection = self._take(target.key)
        if connection is None:
            connection = await self._connect(target, deadline)
        waiter = connection.begin(head.encode("latin-1") + request.body, loop)
        timer = loop.call_at(deadline, self._time_out, connection)
        try:
            await waiter
        except BaseException:
            connection.close()
            raise
        finally:
            timer.cancel()
        answer = Answer(connection.status or 0, connection.body, retry_after=connection.retry_after)
        if connection.reusable and not connection.closed:
            self._put(connection)
        else:
            connection.close()
        return answer

    def _time_out(self, connection: _Connection) -> None:
        connection.fail(timed_out(self._timeout, status=connection.status))

    # The pool ------------------------------------------------------------------------------
    def _take(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        stale = time.monotonic() - KEEPALIVE
        while idle:
            connection = idle.pop()
            if connection.closed:
                continue
            if connection.idle_since < stale:  # and every one below it is older
                connection.close()
                for older in idle:
                    older.close()
                idle.clear()
                return None
            return connection
        return None

    def _put(self, connection: _Connection) -> None:
        assert connection.key is not None
        now = connection.idle_since = time.monotonic()
        self._idle.setdefault(connection.key, []).append(connection)
        if now >= self._next_sweep:  # close what has not been used for KEEPALIVE
            self._next_sweep = now + KEEPALIVE / 2
            for key, idle in list(self._idle.items()):
                kept = [c for c in idle if not c.closed and c.idle_since >= now - KEEPALIVE]
                for connection in idle:
                    if connection not in kept:
                        connection.close()
                if kept:
                    self._idle[key] = kept
                else:
                    del self._idle[key]

    def _lost(self, connection: _Connection) -> None:
        self._open.discard(connection)

    async def _connect(self, target: _Target, deadline: float) -> _Connection:
        """A new connection to ``target``: each address the guard allows, in turn."""
        loop = asyncio.get_running_loop()
        tls = None
        if target.tls:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        try:
            async with asyncio.timeout_at(deadline):
                connection = await self._open_connection(loop, target, tls)
        except TimeoutError:
            raise timed_out(self._timeout) from None
        except (OSError, ssl.SSLError) as exc:
            where = f"{target.host}:{target.port} ssl:{'default' if tls else 'False'}"
            raise SendError(
                f"ClientConnectorError: Cannot connect to host {where} [{exc}]"
            ) from None
        connection.key = target.key
        self._open.add(connection)
        return connection

    async def _open_connection(
        self, loop: asyncio.AbstractEventLoop, target: _Target, tls: ssl.SSLContext | None
    ) -> _Connection:
        host, port = target.host, target.port
        try:
            infos = [(_family(host), host)]
        except ValueError:  # a name: resolved, and every address it has checked
            results = await self._guard.resolve(host, port, family=socket.AF_UNSPEC)
            infos = [(socket.AddressFamily(r["family"]), r["host"]) for r in results]
        failure: OSError | None = None
        for family, address in infos:
            sockaddr: tuple[Any, ...] = (address, port)
            sock = self._socket((family, socket.SOCK_STREAM, 0, "", sockaddr))
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as aiohttp does
                await loop.sock_connect(sock, sockaddr)
                _, connection = await loop.create_connection(
                    lambda: _Connection(self._lost),
                    sock=sock,
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
                return connection
            except OSError as exc:
                sock.close()
                failure = exc
            except BaseException:
                sock.close()
                raise
        assert failure is not None
        raise failure

    async def aclose(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()
        await self._guard.close()


def _family(host: str) -> socket.AddressFamily:
    """The family of a literal address; ValueError for a name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    raise ValueError(host)
