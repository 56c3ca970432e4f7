"""The receiver as a plain ASGI app: run it under uvicorn, or mount it in Starlette/FastAPI.

One request, in order::

    POST <path>  ->  read body  ->  verify the signature (401)
                 ->  read the few facts the book needs (400 + quarantine)  ->  client (403)
                 ->  record + advance book, one group-committed transaction  ->  200
                 ->  full parse and handlers, in a task, after the commit

It answers 200 for a duplicate too (the sender retried; we already have it) without calling the
handlers again. ``GET /healthz`` answers while the store's writer is alive. Everything else is
404 in the broker's error shape. The hot path is raw ASGI and msgspec: no framework objects per
request, the HMAC keyed once (:class:`~dhan_postback.signing.SignatureVerifier`), and only the
dozen fields the book needs decoded before the write (:mod:`.facts`); the body is stored as it
came and read in full only for the handlers, after the commit.

Mounted (``Mount("/postback", receiver)``), the Postback URL ends with a slash
(``https://host/postback/``), because Starlette redirects ``/postback`` there and a sender must
not follow redirects. A mounted app gets no lifespan events: it starts on its first request, or
pass ``lifespan=receiver.lifespan`` to the parent to start it (and resume pending handler work)
at startup.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, MutableMapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec
import structlog

from .. import payload, signing
from ..asgi import Disconnected as _Disconnected
from ..asgi import receive_body
from ..asgi import respond as _respond
from ..errors import (
    DhanPostbackError,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    RequestTooLarge,
    SignatureError,
    StoreUnavailable,
    UnreadablePayload,
    UnstorablePayload,
    error_body,
)
from .facts import read_facts
from .handlers import DEFAULT_RETRY_DELAYS, Handler, HandlerRegistry, HandlerRunner
from .store import ReceiverStore
from .verify import Postback, Verifier, dedupe_key, redact_headers

__all__ = [
    "DEFAULT_DB",
    "MAX_BODY_SIZE",
    "Message",
    "Receive",
    "Receiver",
    "ReceiverStats",
    "Scope",
    "Send",
]

log = structlog.get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
H = TypeVar("H", bound=Handler)

DEFAULT_DB: Final = "receiver.db"
MAX_BODY_SIZE: Final = 64 * 1024
"""A postback is under 1 KiB; anything past this is refused with 413 before it is read whole."""

_WEBHOOK_HEADERS: Final = frozenset({b"webhook-id", b"webhook-timestamp", b"webhook-signature"})
_ACCEPTED: Final = b'{"status":"accepted"}'
_DUPLICATE: Final = b'{"status":"duplicate"}'
_HEALTHY: Final = b'{"status":"ok"}'
_encode = msgspec.json.Encoder().encode


class ReceiverStats(msgspec.Struct, frozen=True):
    """What this receiver has seen since it started (the store keeps the lasting totals)."""

    received: int
    """POSTs to the postback path, whatever became of them."""
    unique: int
    duplicates: int
    rejected: int
    """Refused for a bad signature or timestamp (401) or a client id not allowed (403)."""
    quarantined: int
    """Unreadable bodies (400), kept in the quarantine table."""
    handler_failures: int
    """Handler calls that raised, retries included."""


class Receiver:
    """A trader's Postback URL: verify, de-duplicate, store durably, advance the book, handle.

    ``secret`` is one ``whsec_`` secret or several (rotation); without one, signatures are not
    checked and ``path_secret`` can make the URL unguessable instead (POST ``/<path_secret>``).
    ``allowed_client_ids`` restricts ``dhanClientId``. ``tolerance`` is how many seconds a signed
    timestamp may be off. The SQLite file ``db`` is created when missing.
    """

    def __init__(
        self,
        secret: str | Sequence[str] | None = None,
        db: str | Path = DEFAULT_DB,
        allowed_client_ids: Collection[str] | None = None,
        path_secret: str | None = None,
        tolerance: float = signing.DEFAULT_TOLERANCE,
        *,
        handler_retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        max_body_size: int = MAX_BODY_SIZE,
    ) -> None:
        self.verifier = Verifier(secret, allowed_client_ids=allowed_client_ids, tolerance=tolerance)
        self.store = ReceiverStore(db)
        self._registry = HandlerRegistry()
        self._runner = HandlerRunner(
            self._registry,
            self.store,
            retry_delays=handler_retry_delays,
            on_failure=self._count_handler_failure,
        )
        secret_path = (path_secret or "").strip("/")
        self._post_path = "/" + secret_path
        self._post_path_bytes = self._post_path.encode()
        self._path_is_secret = bool(secret_path)
        self._max_body_size = max_body_size
        self._running = False
        self._starting: asyncio.Task[None] | None = None
        self._received = self._unique = self._duplicates = 0
        self._rejected = self._quarantined = self._handler_failures = 0

    # ------------------------------------------------------------------ handlers and stats

    def on(self, *statuses: str) -> Callable[[H], H]:
        """Decorator: call the function for each unique update with one of ``statuses``."""
        if not statuses:
            raise TypeError("on() needs at least one status, e.g. on('TRADED')")

        def register(handler: H) -> H:
            self._registry.add(handler, statuses)
            return handler

        return register

    def on_update(self, handler: H) -> H:
        """Decorator: call the function for every unique update."""
        self._registry.add(handler)
        return handler

    def stats(self) -> ReceiverStats:
        return ReceiverStats(
            received=self._received,
            unique=self._unique,
            duplicates=self._duplicates,
            rejected=self._rejected,
            quarantined=self._quarantined,
            handler_failures=self._handler_failures,
        )

    def _count_handler_failure(self) -> None:
        self._handler_failures += 1

    async def handlers_idle(self) -> None:
        """Wait until no handler is running (a retry may still be scheduled)."""
        await self._runner.idle()

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Open the store's writer and resume unfinished handler work. Idempotent."""
        if self._running:
            return
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        self.store.start()
        await self._runner.start()
        self._running = True

    async def aclose(self) -> None:
        """Let running handlers finish (briefly), then flush and close the store."""
        if not self._running:
            return
        self._running = False
        await self._runner.close()
        await asyncio.to_thread(self.store.close)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """For a parent app: ``Starlette(routes=..., lifespan=receiver.lifespan)``."""
        await self.start()
        try:
            yield
        finally:
            await self.aclose()

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if not self._running:
                await self.start()
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websocket: not ours
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = _route_path(scope)
        method = scope["method"]
        if self._is_post_path(path):
            if method == "POST":
                await self._postback(scope, receive, send)
            else:
                await _error(send, MethodNotAllowed("postbacks are accepted with POST only"))
        elif path == "/healthz" and method in ("GET", "HEAD"):
            if self.store.writing:
                await _respond(send, 200, _HEALTHY)
            else:
                await _error(send, StoreUnavailable("the receiver's store is not open"))
        else:
            await _error(send, NotFound("nothing here"))

    def _is_post_path(self, path: str) -> bool:
        if not self._path_is_secret:
            return path == "/"
        return hmac.compare_digest(path.encode(), self._post_path_bytes)

    async def _postback(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._received += 1
        try:
            body = await _read_body(scope, receive, self._max_body_size)
        except RequestTooLarge as exc:
            await _error(send, exc)
            return
        except _Disconnected:
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _WEBHOOK_HEADERS
        }
        verifier = self.verifier
        try:
            webhook_id = verifier.webhook_id(headers, body)
            facts = read_facts(body)
            verifier.check_client(facts.client_id)
        except (SignatureError, PermissionDenied) as exc:
            self._rejected += 1
            await _error(send, exc)
            return
        except UnreadablePayload as exc:
            await self._quarantine(scope, body, exc)
            await _error(send, exc)
            return
        handlers = self._registry.for_status(facts.status)
        key = dedupe_key(webhook_id, body)
        try:
            recorded = await self.store.record_facts(
                facts, body, dedupe_key=key, webhook_id=webhook_id, handled=not handlers
            )
        except UnstorablePayload as exc:  # would fail on every retry: refuse it once, say so
            await self._quarantine(scope, body, exc)
            await _error(send, exc)
            return
        except StoreUnavailable as exc:
            await _error(send, exc)
            return
        if recorded.seq is None:
            self._duplicates += 1
            await _respond(send, 200, _DUPLICATE)
            return
        self._unique += 1
        if handlers:
            # Read in full only now, after the commit (read_facts took what the write
            # needed); the handlers run once this request yields, never holding up the answer.
            postback = Postback(
                update=payload.parse(body), body=body, dedupe_key=key, webhook_id=webhook_id
            )
            self._runner.dispatch(recorded.seq, postback, handlers)
        await _respond(send, 200, _ACCEPTED)

    async def _quarantine(self, scope: Scope, body: bytes, exc: UnreadablePayload) -> None:
        self._quarantined += 1
        headers = redact_headers(
            {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        )
        try:
            await self.store.quarantine(exc.message, headers, body, now=time.time())
        except StoreUnavailable:
            log.error("could not quarantine an unreadable postback", reason=exc.message)


def _route_path(scope: Scope) -> str:
    """The path below where this app is mounted (Starlette keeps the full path in ``path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :]
    return path or "/"


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    too_large = f"a postback body is at most {limit} bytes"
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise RequestTooLarge(too_large)
            break
    return await receive_body(receive, limit, too_large)


async def _error(send: Send, exc: DhanPostbackError) -> None:
    await _respond(send, exc.http_status, _encode(error_body(exc)))
