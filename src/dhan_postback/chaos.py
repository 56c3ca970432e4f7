"""A receiver that misbehaves on purpose, so that retries can be seen doing their job.

:class:`ChaosMiddleware` wraps any ASGI app. For a fraction of POSTs it does one of the
things real endpoints do on a bad day, chosen at random:

* ``error``: answers 503 without passing the request on;
* ``lost_answer``: lets the app store the update, then answers 500, so the sender retries
  something the receiver already has (the receiver must absorb the duplicate);
* ``timeout``: holds the request longer than the sender waits, then passes it on;
* ``reset``: starts an answer and drops the connection half-way;
* ``throttle``: answers 429 with ``Retry-After: 1`` (slow down for a second).

Nothing here is used by the service or the receiver themselves: only by ``demo --chaos``.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FAULTS", "ChaosMiddleware"]

FAULTS: Final = ("error", "lost_answer", "timeout", "reset", "throttle")


class _DroppedConnection(Exception):
    """Raised after a response has started: the server then closes the connection."""


class ChaosMiddleware:
    """Fail ``rate`` of the POSTs that reach ``app`` (GETs always pass)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        rate: float,
        hold: float = 1.0,
        seed: int | None = None,
        faults: Sequence[str] = FAULTS,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("the chaos rate is a fraction between 0 and 1")
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}")
        self.app = app
        self.rate = rate
        self.hold = hold
        self.faults = tuple(faults)
        self.injected: Counter[str] = Counter()
        self._rng = random.Random(seed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or self._rng.random() >= self.rate:
            await self.app(scope, receive, send)
            return
        fault = self._rng.choice(self.faults)
        self.injected[fault] += 1
        if fault == "error":
            await _answer(send, 503, b'{"error":"chaos: service unavailable"}')
        elif fault == "lost_answer":
            await self.app(scope, receive, _swallow)
            await _answer(send, 500, b'{"error":"chaos: answer lost after storing"}')
        elif fault == "throttle":
            await _answer(send, 429, b'{"error":"chaos: slow down"}', [(b"retry-after", b"1")])
        elif fault == "timeout":
            await asyncio.sleep(self.hold)
            await self.app(scope, receive, send)
        else:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise _DroppedConnection("chaos: connection dropped mid-answer")


async def _swallow(message: Message) -> None:
    return None


async def _answer(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
