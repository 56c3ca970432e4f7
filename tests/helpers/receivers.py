"""Receivers that misbehave on purpose, for testing the dispatcher against real HTTP.

:class:`RecordingReceiver` is a Starlette app that records every request it gets (headers,
body, arrival order and time) and answers each one as its *plan* says: 200, a 5xx, a 429 with
``Retry-After``, a redirect, a slow answer, an answer too late for the dispatcher's timeout,
or a connection closed in the middle of the answer. (Not the product's
:class:`dhan_postback.receiver.Receiver`, which verifies and stores postbacks.) Serve it with
``UvicornThread`` (one port) or ``MultiPortServer`` (several ports, one thread), both in
:mod:`tests.helpers.servers`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = [
    "OK",
    "Plan",
    "Received",
    "RecordingReceiver",
    "Reply",
    "always",
    "fail_first",
    "flaky",
]


@dataclass(frozen=True)
class Reply:
    """How to answer one request. ``reset``: start the answer, then drop the connection."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0
    reset: bool = False


OK = Reply()


@dataclass(frozen=True)
class Received:
    """One request as it arrived; ``attempt`` counts arrivals of its ``webhook-id`` so far."""

    index: int
    port: int
    path: str
    method: str
    headers: Mapping[str, str]
    body: bytes
    arrived: float
    attempt: int
    reply: Reply
    client_port: int = 0
    """The sender's port: requests with the same one came on the same connection."""

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


Plan = Callable[[Received], Reply]
"""Chooses the answer to a request (``reply`` of the argument is not set yet)."""


def always(reply: Reply) -> Plan:
    return lambda _: reply


def fail_first(times: int, reply: Reply = Reply(500), then: Reply = OK) -> Plan:
    """The first ``times`` arrivals of each webhook-id get ``reply``, later ones ``then``."""
    return lambda request: reply if request.attempt <= times else then


def flaky(rate: float, faults: Sequence[Reply], *, seed: int = 0) -> Plan:
    """Each request fails with probability ``rate``, with one of ``faults`` picked at random."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def plan(_: Received) -> Reply:
        with lock:
            if rng.random() < rate:
                return rng.choice(list(faults))
        return OK

    return plan


class _Reset(Exception):
    """Raised after the answer started: uvicorn then closes the connection."""


class _QuietResets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Reset))


logging.getLogger("uvicorn.error").addFilter(_QuietResets())


class _ResetResponse(Response):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000")],
            }
        )
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise _Reset


class RecordingReceiver:
    """Records every request and answers it as ``plan`` says (200 when no plan)."""

    def __init__(self, plan: Plan | None = None) -> None:
        self.plan: Plan = plan or always(OK)
        self.requests: list[Received] = []
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT"])]
        )

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {key.lower(): value for key, value in request.headers.items()}
        webhook_id = headers.get("webhook-id", "")
        server = request.scope.get("server") or ("", 0)
        client = request.scope.get("client") or ("", 0)
        with self._lock:
            attempt = self._attempts[webhook_id] = self._attempts.get(webhook_id, 0) + 1
            received = Received(
                index=len(self.requests),
                port=int(server[1] or 0),
                path=request.url.path,
                method=request.method,
                headers=headers,
                body=body,
                arrived=time.monotonic(),
                attempt=attempt,
                reply=OK,
                client_port=int(client[1] or 0),
            )
        reply = self.plan(received)
        with self._lock:
            self.requests.append(_with_reply(received, reply))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.reset:
            return _ResetResponse()
        return Response(reply.body, status_code=reply.status, headers=dict(reply.headers))

    # What arrived ----------------------------------------------------------------------------
    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def accepted(self) -> list[Received]:
        """Requests answered 2xx (on time or not), in arrival order."""
        return [r for r in self.snapshot() if 200 <= r.reply.status < 300 and not r.reply.reset]

    def first_arrivals(self) -> list[Received]:
        """The first arrival of each webhook-id, in arrival order (a receiver's dedupe)."""
        seen: set[str] = set()
        firsts = []
        for request in self.snapshot():
            if request.webhook_id not in seen:
                seen.add(request.webhook_id)
                firsts.append(request)
        return firsts

    def arrivals_of(self, webhook_id: str) -> list[Received]:
        return [r for r in self.snapshot() if r.webhook_id == webhook_id]


def _with_reply(received: Received, reply: Reply) -> Received:
    return dataclasses.replace(received, reply=reply)
