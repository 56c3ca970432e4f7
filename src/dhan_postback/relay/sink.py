"""Where relayed updates go: the postback service's ingest API.

A :class:`Sink` takes a batch of postback bodies, in order, and returns only once they are
committed (the service's 202 means the outbox holds them). Transient failures (connection
errors, timeouts, 5xx, 429) are the sink's business: it retries them with backoff, however
long it takes, because the relay's log keeps everything meanwhile. What a sink cannot fix by
waiting it raises:

* :class:`UpdateRefused`: the service refused the batch for what is in it (400, 403, 409,
  413, 422). The relay splits the batch to find the update at fault and dead-letters it.
* :class:`SinkUnusable`: the service will take nothing from us (401: wrong or revoked token;
  404/405: not the service's address). The relay stops with that message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Final, Protocol, runtime_checkable

import aiohttp
import structlog

from .._version import __version__
from ..errors import DhanPostbackError
from .backoff import Backoff

__all__ = ["INGEST_PATH", "HttpIngest", "Sink", "SinkError", "SinkUnusable", "UpdateRefused"]

log = structlog.get_logger(__name__)

INGEST_PATH: Final = "/v2/order-updates"

_REFUSED_FOR_CONTENT: Final = frozenset({400, 403, 409, 413, 422})
_TRANSIENT_4XX: Final = frozenset({408, 425, 429})


class SinkError(DhanPostbackError):
    """A sink will not take some updates, whatever the relay waits for."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UpdateRefused(SinkError):
    """The service refused a batch because of what is in it (one bad update suffices)."""


class SinkUnusable(SinkError):
    """The service refuses the relay itself (its token or its address)."""


@runtime_checkable
class Sink(Protocol):
    """What the relay hands updates to.

    ``last_error`` describes the current transient trouble (None when healthy), for the
    status line.
    """

    @property
    def last_error(self) -> str | None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def submit(self, bodies: Sequence[bytes]) -> list[str]:
        """Commit these postback bodies in this order; return the service's delivery ids."""
        ...


class HttpIngest:
    """``POST /v2/order-updates`` of a postback service, with the service's access token.

    One batch is one request: a JSON array of the bodies, in order (the service commits an
    array in one transaction, in order). The token travels only in the ``access-token``
    header and appears in no log line or error.
    """

    def __init__(
        self,
        service_url: str,
        access_token: str,
        *,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
        retry_after_cap: float = 60.0,
    ) -> None:
        if not service_url.startswith(("http://", "https://")):
            raise ValueError("the service URL must start with http:// or https://")
        if not access_token:
            raise ValueError("the service access token is empty")
        self.url = service_url.rstrip("/") + INGEST_PATH
        self._headers = {
            "access-token": access_token,
            "Content-Type": "application/json",
            "User-Agent": f"dhan-postback-relay/{__version__}",
        }
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.backoff = backoff or Backoff(base=0.5, cap=30.0)
        self.retry_after_cap = retry_after_cap
        self.last_error: str | None = None
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"HttpIngest({self.url!r})"

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=4), timeout=self.timeout
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> HttpIngest:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def submit(self, bodies: Sequence[bytes]) -> list[str]:
        if not bodies:
            return []
        await self.start()
        assert self._session is not None
        batch = b"[" + b",".join(bodies) + b"]"
        while True:
            try:
                async with self._session.post(
                    self.url, data=batch, headers=self._headers, allow_redirects=False
                ) as response:
                    status = response.status
                    text = await response.text(errors="replace")
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as exc:
                await self._wait(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
                continue
            if 200 <= status < 300:
                self.backoff.reset()
                if self.last_error is not None:
                    log.info("relay.sink.recovered", url=self.url)
                self.last_error = None
                return _delivery_ids(text)
            message = f"HTTP {status} from {self.url}: {_service_message(text)}"
            if status >= 500 or status in _TRANSIENT_4XX:
                await self._wait(message, retry_after if status in (429, 503) else None)
                continue
            if status in _REFUSED_FOR_CONTENT:
                raise UpdateRefused(message, status=status)
            raise SinkUnusable(message, status=status)

    async def _wait(self, reason: str, retry_after: str | None = None) -> None:
        delay = self.backoff.next_delay(retry_after, retry_after_cap=self.retry_after_cap)
        self.last_error = reason
        log.warning("relay.sink.retry", reason=reason, in_seconds=round(delay, 3))
        await asyncio.sleep(delay)


def _service_message(text: str) -> str:
    """The service's ``errorCode: errorMessage``, or the start of whatever it said."""
    try:
        body = json.loads(text)
    except ValueError:
        return text[:200] or "(empty body)"
    if isinstance(body, dict) and "errorMessage" in body:
        return f"{body.get('errorCode', '')} {body['errorMessage']}".strip()
    return text[:200]


def _delivery_ids(text: str) -> list[str]:
    try:
        body = json.loads(text)
    except ValueError:
        return []
    ids = body.get("deliveryIds") if isinstance(body, dict) else None
    return [str(i) for i in ids] if isinstance(ids, list) else []
