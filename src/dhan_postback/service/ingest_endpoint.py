"""``POST /v2/order-updates`` as a raw ASGI app: the ingest hot path, without Starlette.

The broker posts one update per request, so whatever a request costs, an update costs. Through
Starlette that was its middleware stack (server errors, our error shield, exception handlers),
its router, and a Request, a Headers and a Response object each time: a quarter of the event
loop's time per update, for a route that needs none of it. So :func:`~.app.create_app` hands
this path to :class:`IngestEndpoint` before Starlette sees the request, and Starlette keeps
everything else (``HEAD``, ``GET`` and other methods on this path too: a 405 as before).

One request, in order (the order of the checks is the API's, so that the same bad request
gets the same error through either route)::

    access-token (401/429)  ->  Idempotency-Key (400)  ->  Content-Type (415)
      ->  body, at most --max-body-bytes (413)  ->  updates (400)  ->  their client (403)
      ->  commit (503 when the store is down)  ->  202 with the delivery ids

The 202 is sent only once the outbox has committed the updates. Every refusal is in the
broker's shape and counted in ``dhan_postback_ingest_rejected``; a wrong token counts against
its address's failed-login budget exactly as on every other route (:mod:`.throttle`); a bug
is a 500 in the same shape, logged as the error shield logs it (:func:`.http.log_unexpected`).
A client that goes away before its body has arrived gets nothing and costs nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterable, Sequence
from typing import Final

import msgspec
from starlette.types import Receive, Scope, Send

from ..asgi import Disconnected, receive_body, respond
from ..errors import AuthenticationError, Conflict, DhanPostbackError, InternalError, error_body
from . import shapes
from .http import check_declared_size, check_media_type, encode_json, log_unexpected
from .ingest import check_client, decode_updates, idempotency_key, plan_deliveries
from .node import ServiceNode
from .store import IdempotencyRecord, NewDelivery, TokenRecord
from .throttle import TooManyFailures

__all__ = ["INGEST_PATH", "IngestEndpoint"]

INGEST_PATH: Final = "/v2/order-updates"
_HOLD_ANSWER_VARIABLE: Final = "DHAN_POSTBACK_TEST_HOLD_ANSWER_AFTER_COMMIT"
"""Test-only fault injection: seconds an ingest answer waits after its commit, so that a
crash test can kill the process between the two. Not a setting: never set in production."""
_NO_DESTINATION_NOTE: Final = (
    "this access token has no Postback URL and no partner: the updates were accepted, "
    "and there is nowhere to send them"
)

_HEADERS_READ: Final = frozenset(
    {b"access-token", b"admin-key", b"idempotency-key", b"content-type", b"content-length"}
)
_REPLAYED: Final = [(b"idempotent-replayed", b"true")]
_Headers = dict[bytes, str]
_Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]


class IngestEndpoint:
    """The ASGI app of ``POST /v2/order-updates`` on ``node`` (see the module docstring).

    It answers whatever it is called with as that route: the caller (the service app, or a
    Starlette ``Route`` when the app is mounted below a root path) has matched the path and
    the method.
    """

    def __init__(self, node: ServiceNode) -> None:
        self._node = node
        self._max_body = node.settings.max_body_bytes
        self._too_large = f"the body is larger than {self._max_body} bytes"
        self._max_batch = node.settings.max_batch
        self._idempotency_window = node.settings.idempotency_window
        self._metrics = node.metrics
        self._throttle = node.throttle
        self._hold_answer = float(os.environ.get(_HOLD_ANSWER_VARIABLE) or 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers_read(scope["headers"])
        try:
            status, body, extra = await self._ingest(headers, receive)
        except Disconnected:
            return  # nobody to answer
        except AuthenticationError as exc:
            client = scope.get("client")
            refusal = self._throttle.refusal(
                exc,
                host=client[0] if client else None,
                offered=bool(headers.get(b"access-token") or headers.get(b"admin-key")),
                where="api",
            )
            await _error(send, refusal)
        except DhanPostbackError as exc:
            await _error(send, exc)
        except Exception as exc:
            log_unexpected(scope.get("method"), INGEST_PATH, exc)
            await _error(send, InternalError("internal error"))
        else:
            await respond(send, status, body, extra)

    async def _ingest(self, headers: _Headers, receive: Receive) -> _Answer:
        node = self._node
        metrics = self._metrics
        try:
            token = await node.registry.authenticate(headers.get(b"access-token"))
            key = idempotency_key(headers.get(b"idempotency-key"))
            check_media_type(headers.get(b"content-type"))
            check_declared_size(headers.get(b"content-length"), self._max_body)
            body = await receive_body(receive, self._max_body, self._too_large)
            updates, batch = decode_updates(body, max_batch=self._max_batch)
            check_client(updates, token, batch=batch)
            destinations = await node.registry.destinations(token)
            now = time.time()
            deliveries = plan_deliveries(updates, token, destinations, now=now)
            answer = encode_json(
                shapes.Accepted(
                    delivery_ids=[delivery.id for delivery in deliveries],
                    note=msgspec.UNSET if deliveries else _NO_DESTINATION_NOTE,
                )
            )
            if key is None:
                if deliveries:
                    await node.enqueue(deliveries)  # which wakes what it has to
            else:
                earlier = await self._enqueue_once(token, key, body, deliveries, answer, now)
                if earlier is not None:
                    return earlier
        except DhanPostbackError as exc:
            metrics.ingest_rejected.labels(error_code=exc.error_code).inc()
            raise
        metrics.updates_ingested.inc(len(updates))
        if deliveries:
            metrics.deliveries_created.inc(len(deliveries))
            if key is not None:
                node.wake()
        if self._hold_answer:
            await asyncio.sleep(self._hold_answer)
        return 202, answer, []

    async def _enqueue_once(
        self,
        token: TokenRecord,
        key: str,
        body: bytes,
        deliveries: Sequence[NewDelivery],
        answer: bytes,
        now: float,
    ) -> _Answer | None:
        """Commit under ``key``; None when committed now, else the key's first answer again
        (or 409 when the key came with another body)."""
        record = IdempotencyRecord(
            dhan_client_id=token.dhan_client_id,
            key=key,
            request_hash=hashlib.sha256(body).hexdigest(),
            status=202,
            response=answer,
            created_at=now,
        )
        earlier = await self._node.store.enqueue_once(
            deliveries, record, fresh_after=now - self._idempotency_window
        )
        if earlier is None:
            return None
        if earlier.request_hash != record.request_hash:
            raise Conflict(
                "this Idempotency-Key was already used with a different body: "
                "use a new key for a new request"
            )
        self._metrics.idempotent_replays.inc()
        return earlier.status, earlier.response, _REPLAYED


def _headers_read(raw: Iterable[tuple[bytes, bytes]]) -> _Headers:
    """The few request headers ingest reads, each its first occurrence (as Starlette's
    ``headers.get``), decoded as Latin-1."""
    found: _Headers = {}
    for name, value in raw:
        if name in _HEADERS_READ and name not in found:
            found[name] = value.decode("latin-1")
    return found


async def _error(send: Send, error: DhanPostbackError) -> None:
    headers = None
    if isinstance(error, TooManyFailures):
        headers = [(name.lower().encode(), value.encode()) for name, value in error.headers.items()]
    await respond(send, error.http_status, encode_json(error_body(error)), headers or ())
