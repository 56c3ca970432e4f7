"""The broker's live order-update websocket, as an endless stream of raw frames.

The broker documents a login message and ``order_alert`` frames, and nothing else: no login
acknowledgement, no error frame, no heartbeat, no replay of what was missed while
disconnected. So this client is defensive:

* it redials after any failure, with exponential backoff and full jitter (capped), and logs
  in again on every connection;
* it detects a dead connection with websocket pings (``ping_interval``/``ping_timeout``) and
  a silent one with an idle timeout (no frame for ``idle_timeout`` seconds means redial);
* it never logs or raises the login message, which holds the access token or partner
  secret; the ``websockets`` library's own frame logging is kept off for the same reason;
* a login the broker refuses is not redialled forever: a handshake answered 401 or 403, or
  a connection the broker closes with a policy or application close code (1008, 4000-4999)
  before any frame and within ``refusal_window`` seconds of the login, raises
  :class:`~.orderbook.TokenRefused` (the broker documents no login answer; a refusal is
  the one thing such a close can mean right after a login);
* it closes the connection with code 1000 (normal closure) when the consumer stops.

De-duplication across reconnects is not done here but in the relay's log
(:mod:`dhan_postback.relay.log`), which survives restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Final

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from .._version import __version__
from .backoff import Backoff
from .orderbook import TokenRefused

__all__ = ["DEFAULT_WS_URL", "LOGIN_MSG_CODE", "Login", "OrderUpdateStream"]

DEFAULT_WS_URL: Final = "wss://api-order-update.dhan.co"

LOGIN_MSG_CODE: Final = 42

log = structlog.get_logger(__name__)

_ws_logger = logging.getLogger("dhan_postback.relay.websockets")
_ws_logger.setLevel(logging.INFO)  # the library logs every frame at DEBUG, the login included


@dataclass(frozen=True, slots=True)
class Login:
    """Who the websocket logs in as: one account (``SELF``) or a partner (``PARTNER``).

    The secrets are excluded from ``repr`` so that a stray log line cannot show them.
    """

    user_type: str
    client_id: str
    token: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)

    @classmethod
    def individual(cls, client_id: str, access_token: str) -> Login:
        """An individual account: its Dhan client id and an access token."""
        if not client_id or not access_token:
            raise ValueError("an individual login needs a client id and an access token")
        return cls(user_type="SELF", client_id=client_id, token=access_token)

    @classmethod
    def partner(cls, partner_id: str, partner_secret: str) -> Login:
        """A partner: every order of every user of the partner's platform streams."""
        if not partner_id or not partner_secret:
            raise ValueError("a partner login needs a partner id and a partner secret")
        return cls(user_type="PARTNER", client_id=partner_id, secret=partner_secret)

    def message(self) -> str:
        """The documented login message, sent as the first frame of every connection."""
        request: dict[str, object] = {"MsgCode": LOGIN_MSG_CODE, "ClientId": self.client_id}
        if self.user_type == "SELF":
            request["Token"] = self.token
            return json.dumps({"LoginReq": request, "UserType": "SELF"})
        return json.dumps({"LoginReq": request, "UserType": "PARTNER", "Secret": self.secret})

    def describe(self) -> str:
        """Who this is, for logs: the id only."""
        return f"{'partner' if self.user_type == 'PARTNER' else 'client'} {self.client_id}"


class OrderUpdateStream:
    """Raw frames from the broker, across as many connections as it takes.

    ``frames()`` yields every message of every connection in order and never ends on its own;
    it stops when the consumer stops iterating (use :func:`contextlib.aclosing`). The
    attributes ``connected``, ``connections``, ``disconnects`` and ``last_error`` describe the
    link for a status line.
    """

    def __init__(
        self,
        login: Login,
        *,
        url: str = DEFAULT_WS_URL,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        idle_timeout: float | None = 900.0,
        open_timeout: float = 10.0,
        close_timeout: float = 2.0,
        backoff: Backoff | None = None,
        stable_after: float = 30.0,
        on_login: Callable[[], None] | None = None,
        refusal_window: float = 10.0,
    ) -> None:
        self.login = login
        self.url = url
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.idle_timeout = idle_timeout or None
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.backoff = backoff or Backoff(base=0.5, cap=30.0)
        self.stable_after = stable_after
        self.on_login = on_login
        self.refusal_window = refusal_window
        self.connected = False
        self.connections = 0
        self.disconnects = 0
        self.last_error: str | None = None
        self.last_disconnect: str | None = None

    async def frames(self) -> AsyncGenerator[str | bytes, None]:
        """Every frame the broker sends, reconnecting and logging in again as needed.

        Raises :class:`~.orderbook.TokenRefused` when the broker refuses the login.
        """
        while True:
            got_frames = False
            started = time.monotonic()
            try:
                async with self._connect() as websocket:
                    await websocket.send(self.login.message())
                    logged_in = time.monotonic()
                    self._on_connected()
                    try:
                        while (frame := await self._next_frame(websocket)) is not None:
                            got_frames = True
                            yield frame
                    except (GeneratorExit, asyncio.CancelledError):
                        await _close_normally(websocket)
                        raise
                    self._refused_right_after_login(websocket, got_frames, logged_in)
            except InvalidURI:
                raise
            except InvalidStatus as exc:
                self._on_failure(_failure_reason(exc))
                if exc.response.status_code in (401, 403):
                    raise TokenRefused(
                        f"the order-update websocket refused the connection "
                        f"(HTTP {exc.response.status_code})"
                    ) from None
            except (OSError, TimeoutError, WebSocketException) as exc:
                self._on_failure(_failure_reason(exc))
            if got_frames or time.monotonic() - started >= self.stable_after:
                self.backoff.reset()
            delay = self.backoff.next_delay()
            log.info("relay.ws.redial", in_seconds=round(delay, 3), url=self.url)
            await asyncio.sleep(delay)

    def _refused_right_after_login(
        self, websocket: ClientConnection, got_frames: bool, logged_in: float
    ) -> None:
        """Raise :class:`TokenRefused` if the broker closed this connection as a refusal."""
        received = websocket.protocol.close_rcvd
        if got_frames or received is None:
            return
        if time.monotonic() - logged_in > self.refusal_window:
            return
        if received.code == 1008 or 4000 <= received.code <= 4999:
            reason = f": {received.reason}" if received.reason else ""
            raise TokenRefused(
                "the order-update websocket closed the connection right after the login "
                f"(code {received.code}{reason})"
            )

    def _connect(self) -> connect:
        return connect(
            self.url,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            open_timeout=self.open_timeout,
            close_timeout=self.close_timeout,
            user_agent_header=f"dhan-postback/{__version__}",
            logger=_ws_logger,
        )

    async def _next_frame(self, websocket: ClientConnection) -> str | bytes | None:
        """The next frame, or None once the connection closed or stayed silent too long.

        Frames already received before a connection dropped are still returned: the library
        queues them, and only raises once the queue is drained.
        """
        try:
            async with asyncio.timeout(self.idle_timeout):
                return await websocket.recv()
        except TimeoutError:
            log.warning("relay.ws.idle", idle_seconds=self.idle_timeout)
            self._on_failure(f"no frame for {self.idle_timeout}s")
            with contextlib.suppress(Exception):
                await websocket.close(reason="idle")
            return None
        except ConnectionClosed as closed:
            self._on_failure(_close_reason(closed))
            return None

    def _on_connected(self) -> None:
        self.connected = True
        self.connections += 1
        self.last_error = None
        log.info("relay.ws.connected", url=self.url, login=self.login.describe())
        if self.on_login is not None:
            self.on_login()

    def _on_failure(self, reason: str) -> None:
        self.last_error = reason
        if self.connected:
            self.connected = False
            self.disconnects += 1
            self.last_disconnect = reason
            log.warning("relay.ws.disconnected", reason=reason)
        else:
            log.warning("relay.ws.connect_failed", url=self.url, reason=reason)


async def _close_normally(websocket: ClientConnection) -> None:
    """Say goodbye with 1000 (the library would say 1011 for a consumer that stopped)."""
    with contextlib.suppress(Exception):
        await websocket.close(1000, "relay stopping")


def _close_reason(closed: ConnectionClosed) -> str:
    if closed.rcvd is not None:
        text = f"closed by the broker ({closed.rcvd.code}"
        return f"{text}: {closed.rcvd.reason})" if closed.rcvd.reason else f"{text})"
    if closed.sent is not None and closed.sent.reason:
        return f"connection lost ({closed.sent.reason})"
    return "connection lost"


def _failure_reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        return _close_reason(exc)
    if isinstance(exc, InvalidStatus):
        return f"handshake refused with HTTP {exc.response.status_code}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"
