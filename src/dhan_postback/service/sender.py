"""How the dispatcher's POSTs leave the process: one small protocol, two implementations.

The dispatcher builds a :class:`Request` (URL, stored bytes, signed headers) and hands it to
a :class:`Sender`, as httpx hands requests to a transport. :class:`AiohttpSender` is the real
one (a guarded connection pool, no redirects, no decompression); :class:`MockSender` answers
from a function, as httpx's ``MockTransport`` does, so that the dispatcher's lane, order and
breaker rules can be tested without a server or a socket.

A sender returns an :class:`Answer` or raises :class:`SendError` with what went wrong, in the
words an attempt records; any other exception is a bug (or, for
:class:`~dhan_postback.errors.DhanPostbackError`, a refusal such as the URL policy's) and the
dispatcher records it too. Only cancellation is not an attempt.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Generic, Protocol, TypeVar

import aiohttp
from yarl import URL

from ..settings import ServiceSettings
from ..urlpolicy import GuardedResolver
from .retry import RESPONSE_PREFIX_BYTES, RETRY_AFTER_STATUSES

__all__ = [
    "DRAIN_LIMIT",
    "URL_CACHE",
    "AiohttpSender",
    "Answer",
    "MockSender",
    "ParsedUrls",
    "Request",
    "SendError",
    "Sender",
    "timed_out",
]

DRAIN_LIMIT: Final = 64 * 1024
"""Bytes of a response read to keep its connection; a larger body closes the connection."""
URL_CACHE: Final = 4096
"""Parsed URLs kept by a sender (the oldest goes first)."""

_T = TypeVar("_T")


class ParsedUrls(Generic[_T]):
    """Each URL parsed once by ``parse``, up to :data:`URL_CACHE` of them, the oldest dropped
    first: a node sending to a thousand endpoints in turn would otherwise parse a URL on
    every POST (aiohttp's own cache holds 128)."""

    __slots__ = ("_parse", "_parsed")

    def __init__(self, parse: Callable[[str], _T]) -> None:
        self._parse = parse
        self._parsed: dict[str, _T] = {}

    def __getitem__(self, url: str) -> _T:
        parsed = self._parsed.get(url)
        if parsed is None:
            if len(self._parsed) >= URL_CACHE:
                del self._parsed[next(iter(self._parsed))]
            parsed = self._parsed[url] = self._parse(url)
        return parsed


@dataclass(frozen=True, slots=True)
class Request:
    """One POST to send."""

    url: str
    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back: the status, the start of the body, and ``Retry-After`` when the
    status is one that may carry it (429, 503)."""

    status: int
    body: bytes = b""
    retry_after: str | None = field(default=None, kw_only=True)


class SendError(Exception):
    """No complete answer: a timeout, a refused or reset connection. ``str()`` says which;
    ``status`` is the status line's code when one arrived before the failure."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def timed_out(timeout: float, *, status: int | None = None) -> SendError:
    """The failure of an exchange that had no complete answer within ``timeout`` seconds."""
    return SendError(f"timeout: no complete answer within {timeout:g}s", status=status)


class Sender(Protocol):
    """Sends one POST; never follows a redirect."""

    async def send(self, request: Request) -> Answer: ...

    async def aclose(self) -> None: ...


class AiohttpSender:
    """The real sender: an :class:`aiohttp.ClientSession` over a guarded connection pool.

    ``session`` replaces the sender's own session (it is then not closed here). Make it
    inside the event loop that will use it.
    """

    def __init__(
        self, settings: ServiceSettings, *, session: aiohttp.ClientSession | None = None
    ) -> None:
        self._timeout = settings.timeout
        self._owns_session = session is None
        self._session = session or _make_session(settings)
        self._urls = ParsedUrls(URL)

    async def send(self, request: Request) -> Answer:
        status: int | None = None
        retry_after = None
        try:
            async with self._session.post(
                self._urls[request.url],
                data=request.body,
                headers=request.headers,
                allow_redirects=False,
            ) as response:
                status = response.status
                if status in RETRY_AFTER_STATUSES:
                    retry_after = response.headers.get("Retry-After")
                body = await _read_prefix(response)
        except TimeoutError:
            raise timed_out(self._timeout, status=status) from None
        except aiohttp.ClientError as exc:
            raise SendError(f"{type(exc).__name__}: {exc}", status=status) from None
        return Answer(status, body, retry_after=retry_after)

    async def aclose(self) -> None:
        if self._owns_session:
            await self._session.close()


class MockSender:
    """Answers every request with ``handler(request)`` (a function or a coroutine function).

    The handler may raise :class:`SendError` to stand for a failure without an answer, or
    wait on an event to hold a POST under way for as long as a test needs.
    """

    def __init__(self, handler: Callable[[Request], Answer | Awaitable[Answer]]) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        """Every request sent, in the order sent."""
        self.closed = False

    async def send(self, request: Request) -> Answer:
        self.requests.append(request)
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            return await answer
        return answer

    async def aclose(self) -> None:
        self.closed = True


def _make_session(settings: ServiceSettings) -> aiohttp.ClientSession:
    guard = GuardedResolver(allow_loopback=settings.allow_loopback)
    connector = aiohttp.TCPConnector(
        **guard.guard_connector_kwargs(
            limit=settings.max_in_flight, limit_per_host=settings.max_in_flight_per_url
        )
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=settings.timeout),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding",),
    )


async def _read_prefix(response: aiohttp.ClientResponse) -> bytes:
    """Read a small answer whole (so its connection is reused); keep its first bytes.

    An answer larger than :data:`DRAIN_LIMIT` is not worth reading: its connection is
    closed instead.
    """
    prefix = b""
    total = 0
    while chunk := await response.content.readany():
        if len(prefix) < RESPONSE_PREFIX_BYTES:
            prefix += chunk[: RESPONSE_PREFIX_BYTES - len(prefix)]
        total += len(chunk)
        if total > DRAIN_LIMIT:
            response.close()
            break
    return prefix
