"""Raw ASGI plumbing for the routes that skip a framework because every update takes them:
the receiver's postback POST and the service's ingest POST.

A body read whole from ``receive`` with a size limit, and a JSON answer sent in two messages;
nothing is built per request that these do not need (no Request, no Headers, no Response).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

from .errors import RequestTooLarge

__all__ = ["Disconnected", "receive_body", "respond"]

_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_JSON: Final = (b"content-type", b"application/json")


class Disconnected(Exception):
    """The client went away before sending its whole body: there is nobody to answer."""


async def receive_body(receive: _Receive, limit: int, too_large: str) -> bytes:
    """The whole body; :class:`~dhan_postback.errors.RequestTooLarge` (``too_large``) once it
    passes ``limit`` bytes, however it is sent (a declared ``Content-Length`` is the caller's
    to check first), and :class:`Disconnected` if the client leaves first."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise Disconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise RequestTooLarge(too_large)
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(too_large)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def respond(
    send: _Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Answer ``status`` with the JSON ``body`` (and any other ``headers``)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
