"""HTTP plumbing of the service API: bodies in, JSON and broker-shaped errors out.

Nothing here knows about tokens or deliveries; :mod:`.app` does. What is here keeps the
promise that every answer, including a bug's, is JSON in the broker's error shape.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, overload

import msgspec
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import (
    DhanPostbackError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadError,
    RequestTooLarge,
    UnreadablePayload,
    UnsupportedMediaType,
    error_body,
)
from ..jsondepth import check_depth
from ..wire import IST

__all__ = [
    "IST",
    "ErrorShield",
    "HttpMiddleware",
    "check_declared_size",
    "check_media_type",
    "decode_json",
    "encode_json",
    "error_response",
    "from_iso",
    "handle_error",
    "handle_http_exception",
    "json_response",
    "log_unexpected",
    "read_body",
    "read_json",
    "require_json",
    "to_iso",
]

log = structlog.get_logger(__name__)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
encode_json = _encoder.encode
"""Any shape, error body or JSON value as the API's JSON bytes."""


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode_json(data), status, headers, media_type="application/json")


def error_response(error: DhanPostbackError, headers: dict[str, str] | None = None) -> Response:
    return json_response(error_body(error), error.http_status, headers)


async def handle_error(request: Request, exc: Exception) -> Response:
    """Starlette handler for every error the code raises on purpose."""
    assert isinstance(exc, DhanPostbackError)
    return error_response(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 (no route, wrong method), in the broker's shape."""
    assert isinstance(exc, HTTPException)
    error: DhanPostbackError
    if exc.status_code == 404:
        error = NotFound("no such endpoint")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed here")
    else:
        error = PayloadError(str(exc.detail))
        error.http_status = exc.status_code  # type: ignore[misc]
    return error_response(error, dict(exc.headers) if exc.headers else None)


class HttpMiddleware:
    """Pure ASGI middleware for HTTP requests: lifespan and websocket scopes pass untouched.

    A subclass implements :meth:`http`, usually by wrapping ``send`` (Starlette's
    ``BaseHTTPMiddleware`` would buffer streaming responses and change how errors travel).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class ErrorShield(HttpMiddleware):
    """ASGI middleware: an unexpected exception becomes a 500 in the broker's shape.

    The log line names the route template and the exception type, never the path (which may
    hold a token) and never local variables.
    """

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            route = getattr(scope.get("route"), "path", "unmatched")
            log_unexpected(scope.get("method"), route, exc)
            if not started:
                await error_response(InternalError("internal error"))(scope, receive, send)


def log_unexpected(method: str | None, route: str, exc: Exception) -> None:
    """The one log line of a bug met by a request: its method, route template and exception
    type; never the path (which may hold a token), the message or local variables."""
    log.error("unexpected error", method=method, route=route, error_type=type(exc).__name__)


def require_json(request: Request) -> None:
    """Refuse a body declared as anything but JSON (no Content-Type is taken as JSON)."""
    check_media_type(request.headers.get("content-type"))


def check_media_type(content_type: str | None) -> None:
    """Refuse a ``Content-Type`` other than JSON; None (no header) is taken as JSON."""
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(f"send JSON (Content-Type: application/json), not {media_type}")


def check_declared_size(declared: str | None, limit: int) -> None:
    """Refuse with 413 a body whose ``Content-Length`` is over ``limit``, before reading it."""
    if declared is None:
        return
    try:
        size = int(declared)
    except ValueError:
        raise PayloadError("Content-Length is not a number") from None
    if size > limit:
        raise RequestTooLarge(f"the body is larger than {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    check_declared_size(request.headers.get("content-length"), limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RequestTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    """The body decoded as JSON (any value), after the media-type and size checks."""
    require_json(request)
    return decode_json(await read_body(request, limit))


def decode_json(body: bytes) -> Any:
    """The body as a JSON value; 400 when it is not JSON or nests too deep to decode safely."""
    check_depth(body)
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise UnreadablePayload(f"the body is not valid JSON: {exc}") from None


@overload
def to_iso(timestamp: float) -> str: ...
@overload
def to_iso(timestamp: float | None) -> str | None: ...
def to_iso(timestamp: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 in IST, to the millisecond (``None`` stays)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, IST).isoformat(timespec="milliseconds")


def from_iso(value: str | float | int, name: str) -> float:
    """Seconds since the epoch from ISO 8601 (no offset means IST) or from a number."""
    invalid = PayloadError(f"`{name}` must be an ISO 8601 time or seconds since the epoch")
    if isinstance(value, bool):
        raise invalid
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise invalid
        return float(value)
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise invalid
        return number
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=IST)
        return moment.timestamp()
    except (ValueError, OverflowError):
        raise PayloadError(
            f"`{name}` must be an ISO 8601 time (2024-05-01T09:15:00+05:30) or epoch seconds"
        ) from None
