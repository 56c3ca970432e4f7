"""The broker's REST order book (``GET /v2/orders``): every order of the day, latest state.

The websocket does not replay what happened while it was down; the order book is how the
relay catches up (:mod:`~.reconcile`). This client answers the rows, or says clearly why not:

* :class:`TokenRefused` (HTTP 401, or the broker's ``DH-901``): the access token expired or
  is wrong; nothing will work until a person gives a new one, so the relay stops;
* a rate limit (HTTP 429, or ``DH-904``), a server error or a network failure is waited out
  with exponential backoff (``Retry-After`` honoured), however long it takes: the caller
  runs beside the websocket and is not held up by it;
* any other refusal (``DH-902`` no API access, ``DH-905`` bad input, ...) is
  :class:`OrderBookUnavailable`: logged, and tried again at the next reconciliation.

The access token travels only in the ``access-token`` header and appears in no log line.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

import aiohttp
import structlog

from .._version import __version__
from ..errors import DhanPostbackError
from .backoff import Backoff

__all__ = [
    "DEFAULT_API_URL",
    "INVALID_AUTHENTICATION",
    "RATE_LIMITED",
    "OrderBook",
    "OrderBookUnavailable",
    "TokenRefused",
    "broker_error",
]

DEFAULT_API_URL: Final = "https://api.dhan.co/v2"

INVALID_AUTHENTICATION: Final = "DH-901"
RATE_LIMITED: Final = "DH-904"

log = structlog.get_logger(__name__)


class TokenRefused(DhanPostbackError):
    """The broker refused the relay's login: the access token expired or is wrong.

    Raised by the order book (HTTP 401 or ``DH-901``) and by the websocket (a login refused
    right away); the ``relay`` command says so in one line and exits with status 3.
    """


class OrderBookUnavailable(DhanPostbackError):
    """The broker answered the order book with an error that waiting will not fix now."""


class OrderBook:
    """``GET {api_url}/orders`` with the account's ``access-token`` and ``client-id``."""

    def __init__(
        self,
        api_url: str,
        client_id: str,
        access_token: str,
        *,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
        retry_after_cap: float = 60.0,
    ) -> None:
        if not api_url.startswith(("http://", "https://")):
            raise ValueError("the broker's API URL must start with https:// (or http://)")
        if not client_id or not access_token:
            raise ValueError("the order book needs a client id and an access token")
        self.url = api_url.rstrip("/") + "/orders"
        self.client_id = client_id
        self._headers = {
            "access-token": access_token,
            "client-id": client_id,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"dhan-postback/{__version__}",
        }
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.backoff = backoff or Backoff(base=1.0, cap=60.0)
        self.retry_after_cap = retry_after_cap
        self.requests = 0
        self.last_error: str | None = None
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"OrderBook({self.url!r}, client {self.client_id})"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def orders(self) -> list[dict[str, Any]]:
        """Every row of the order book; waits out rate limits and transient failures."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        while True:
            self.requests += 1
            try:
                async with self._session.get(
                    self.url, headers=self._headers, allow_redirects=False
                ) as response:
                    status = response.status
                    text = await response.text(errors="replace")
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as exc:
                await self._wait(f"{type(exc).__name__}: {exc}".rstrip(": "))
                continue
            body = _json(text)
            code, message = broker_error(body)
            said = " ".join(part for part in (f"HTTP {status}", code, message) if part)
            if status == 429 or code == RATE_LIMITED:
                await self._wait(f"rate limited ({said})", retry_after)
                continue
            if status >= 500 and code is None:
                await self._wait(f"{said} from the order book")
                continue
            self.backoff.reset()
            self.last_error = None
            if status == 401 or code == INVALID_AUTHENTICATION:
                raise TokenRefused(f"the order book answered {said}")
            if 200 <= status < 300 and code is None and isinstance(body, list):
                return [row for row in body if isinstance(row, dict)]
            detail = said if code else f"HTTP {status}: {text[:200] or '(empty body)'}"
            raise OrderBookUnavailable(f"the order book answered {detail}")

    async def _wait(self, reason: str, retry_after: str | None = None) -> None:
        delay = self.backoff.next_delay(retry_after, retry_after_cap=self.retry_after_cap)
        self.last_error = reason
        log.warning("relay.orderbook.retry", reason=reason, in_seconds=round(delay, 3))
        await asyncio.sleep(delay)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def broker_error(body: Any) -> tuple[str | None, str]:
    """``(errorCode, errorMessage)`` of a body in the broker's error shape, else ``(None, "")``."""
    if isinstance(body, dict) and "errorCode" in body:
        return str(body["errorCode"]), str(body.get("errorMessage") or "")
    return None, ""
