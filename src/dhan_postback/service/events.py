"""What the operator is told: one log line per change, and signed operator events.

Two parts:

* :class:`EndpointWatch`, held by each dispatcher, turns what the dispatcher sees into log
  lines and reports: a URL's breaker leaving ``closed`` (one warning), coming back (one info
  line, with how long it was down), staying open past ``failing_after`` (one warning, and an
  ``endpoint.failing`` report), and a delivery dying (one warning, and a ``delivery.dead``
  report). A breaker that flaps between ``open`` and ``half_open`` while its endpoint stays
  down is one outage: its failed probes say nothing.
* :class:`OperatorEvents`, held by the node, sends reports to ``--operator-url`` as
  ``{"type", "timestamp", "data"}`` through the outbox: a delivery like any postback (durable,
  retried, ordered, signed with ``--operator-secret`` by the Standard Webhooks headers), to
  the operator's own endpoint (owner :data:`OPERATOR`, which no partner id can spell).

Events about the operator's URL itself are only logged, never sent: a dead event about a
dead event would follow every one of them, forever.

Several nodes (PostgreSQL): each node's dispatcher has its own breakers, so each node that
sends to a failing URL sees the outage. ``endpoint.failing`` and ``endpoint.recovered`` carry
an id derived from the URL and the ``failing_after``-long period in which the outage began,
and the outbox keeps one delivery per id: nodes whose breakers opened in the same period send
one event between them (two at most, when their openings straddle a period's end).
``delivery.dead`` is derived from the delivery and its attempt, and written only by the node
whose attempt killed it. ``endpoint.paused`` and ``endpoint.resumed`` come from the node whose
request changed the flag (``Store.set_paused`` tells exactly one). An event is committed just
after the change it reports; a crash in between loses that event, not the change (which the
delivery log and ``GET /v2/endpoints`` still show).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog

from ..errors import Conflict
from ..settings import ServiceSettings
from .breaker import BreakerState
from .http import to_iso
from .ids import derived_delivery_id, new_delivery_id, new_endpoint_id
from .metrics import endpoint_label
from .store.base import (
    Attempt,
    EndpointKind,
    EndpointRecord,
    NewDelivery,
    Store,
    Target,
)

__all__ = ["OPERATOR", "EndpointWatch", "EventType", "OperatorEvents", "Report", "watching"]

log = structlog.get_logger(__name__)

OPERATOR: Final = "@operator"
"""Owner of the operator's endpoint, and the client of its deliveries: partner ids are
letters, digits and ``_.-``, so no partner can be it."""
_CLOSE_GRACE: Final = 5.0
"""How long a stopping node waits for the events it is still committing."""

Report = Callable[["EventType", str, dict[str, Any], "str | None"], None]
"""``(type, subject URL, data, delivery id)``: an event to send, with the id that every node
reporting the same event uses (None: a new one). Never blocks, never raises."""


class EventType(enum.StrEnum):
    FAILING = "endpoint.failing"
    RECOVERED = "endpoint.recovered"
    PAUSED = "endpoint.paused"
    RESUMED = "endpoint.resumed"
    DEAD = "delivery.dead"


@dataclass(slots=True)
class _Outage:
    since: float
    reported: bool = False


class EndpointWatch:
    """One node's view of its endpoints' outages and dead deliveries (see the module
    docstring). ``report`` is set by the node that sends events; without it, only logs."""

    def __init__(self, *, failing_after: float, report: Report | None = None) -> None:
        self.failing_after = failing_after
        self.report = report
        self._down: dict[str, _Outage] = {}
        """URL -> its outage, for every URL whose breaker is not closed (the breaker board
        keeps those too, so this is as small as the set of troubled URLs)."""

    def down_since(self) -> dict[str, float]:
        """When each URL whose breaker is not closed left ``closed``."""
        return {url: outage.since for url, outage in self._down.items()}

    def breaker_changed(self, url: str, state: BreakerState, now: float) -> None:
        """The dispatcher saw ``url``'s breaker change to ``state``."""
        if state is not BreakerState.CLOSED:
            if url not in self._down:  # a failed probe (half-open, open again) is no news
                self._down[url] = _Outage(now)
                log.warning("circuit breaker opened", endpoint=endpoint_label(url))
            return
        outage = self._down.pop(url, None)
        if outage is None:
            return
        down_for = round(now - outage.since, 3)
        log.info("circuit breaker closed", endpoint=endpoint_label(url), down_for=down_for)
        if outage.reported:
            data = {"postbackUrl": url, "failingSince": to_iso(outage.since)}
            data["recoveredAt"] = to_iso(now)
            self._report(
                EventType.RECOVERED, url, data, self._outage_id(EventType.RECOVERED, url, outage)
            )

    def check(self, now: float) -> None:
        """Report each URL that has just been down for ``failing_after``."""
        for url, outage in self._down.items():
            if not outage.reported and now - outage.since >= self.failing_after:
                outage.reported = True
                log.warning(
                    "endpoint failing",
                    endpoint=endpoint_label(url),
                    down_for=round(now - outage.since, 3),
                )
                data = {"postbackUrl": url, "failingSince": to_iso(outage.since)}
                self._report(
                    EventType.FAILING, url, data, self._outage_id(EventType.FAILING, url, outage)
                )

    def delivery_dead(self, attempt: Attempt, url: str, order_id: str) -> None:
        """A delivery's last attempt failed and that is now committed."""
        log.warning(
            "delivery dead",
            delivery_id=attempt.delivery_id,
            endpoint=endpoint_label(url),
            order_id=order_id,
            attempts=attempt.number,
            status_code=attempt.status_code,
            error=attempt.error,
        )
        data = {
            "deliveryId": attempt.delivery_id,
            "postbackUrl": url,
            "orderId": order_id,
            "attempts": attempt.number,
            "lastStatusCode": attempt.status_code,
            "lastError": attempt.error,
        }
        now = attempt.started_at
        same = derived_delivery_id(
            EventType.DEAD.value, attempt.delivery_id, attempt.number, at=now
        )
        self._report(EventType.DEAD, url, data, same)

    def _outage_id(self, event: EventType, url: str, outage: _Outage) -> str:
        """The same on every node whose outage of ``url`` began in the same period."""
        period = self.failing_after or 1.0
        start = outage.since - outage.since % period
        return derived_delivery_id(event.value, url, start, at=start)

    def _report(
        self, event: EventType, url: str, data: dict[str, Any], delivery_id: str | None
    ) -> None:
        if self.report is not None:
            self.report(event, url, data, delivery_id)


class OperatorEvents:
    """Sends operator events to ``settings.operator_url`` through ``store``'s outbox; does
    nothing without one. :meth:`open` before use (it makes the operator's endpoint),
    :meth:`close` to wait for the events still being committed."""

    def __init__(
        self,
        store: Store,
        settings: ServiceSettings,
        *,
        wake: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = settings.operator_url
        secret = settings.operator_secret
        self._secret = secret.get_secret_value() if secret is not None else None
        self._store = store
        self._wake = wake
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.url is not None and self._secret is not None

    async def open(self) -> None:
        """Make (or find) the operator's endpoint; give it the configured secret if it had
        another (the old one stops signing: the operator changed it on purpose)."""
        if self.url is None or self._secret is None:
            return
        now = self._clock()
        endpoint = await self._store.ensure_endpoint(
            EndpointRecord(
                id=new_endpoint_id(),
                kind=EndpointKind.PARTNER,
                owner_id=OPERATOR,
                url=self.url,
                signing_secret=self._secret,
                created_at=now,
            )
        )
        if endpoint.signing_secret != self._secret:
            await self._store.rotate_secret(endpoint.id, self._secret, now=now, keep_until=now)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=_CLOSE_GRACE)

    def about_operator(self, url: str) -> bool:
        """Whether ``url`` is where the events go (events about it are only logged)."""
        return url == self.url

    def report(
        self, event: EventType, url: str, data: dict[str, Any], delivery_id: str | None = None
    ) -> None:
        """Commit an event in the background (callers are the dispatcher's hot paths)."""
        if not self.enabled or self.about_operator(url):
            return
        task = asyncio.get_running_loop().create_task(self.send(event, url, data, delivery_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def send(
        self, event: EventType, url: str, data: dict[str, Any], delivery_id: str | None = None
    ) -> None:
        """Commit one event to the outbox and wake the dispatcher. Never raises: an event
        that cannot be committed is logged (the change it reports is in the store)."""
        if not self.enabled or self.about_operator(url):
            return
        assert self.url is not None
        now = self._clock()
        try:
            if event in (EventType.FAILING, EventType.RECOVERED):
                data = {**data, "endpointIds": await self._endpoint_ids(url)}
            body = json.dumps(
                {"type": event.value, "timestamp": to_iso(now), "data": data},
                separators=(",", ":"),
            ).encode()
            delivery = NewDelivery(
                id=delivery_id or new_delivery_id(),
                dhan_client_id=OPERATOR,
                token_hash=OPERATOR,
                target=Target.PARTNER,
                partner_id=OPERATOR,
                url=self.url,
                order_id=f"{OPERATOR}:{data.get('deliveryId', url)}",
                payload=body,
                created_at=now,
            )
            await self._store.enqueue([delivery])
        except Conflict:
            log.debug("operator event already committed by another node", type=event.value)
            return
        except Exception as exc:
            log.error("operator event not committed", type=event.value, error=f"{exc}")
            return
        self._wake()

    async def _endpoint_ids(self, url: str) -> list[str]:
        return [
            endpoint.id
            for endpoint in await self._store.list_endpoints()
            if endpoint.url == url and endpoint.owner_id != OPERATOR
        ]


@contextlib.asynccontextmanager
async def watching(watch: EndpointWatch, clock: Callable[[], float]) -> AsyncIterator[None]:
    """Check ``watch`` for endpoints that have failed long enough, while in the context: every
    second, or more often when ``failing_after`` is short (tests)."""
    tick = min(1.0, max(watch.failing_after / 4, 0.02))

    async def loop() -> None:
        while True:
            await asyncio.sleep(tick)
            try:
                watch.check(clock())
            except Exception:  # a bug must not stop the watch for good
                log.exception("endpoint watch failed")

    task = asyncio.create_task(loop(), name="endpoint-watch")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
