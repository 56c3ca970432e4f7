"""Endpoint health as the dashboard shows it: what the log says, plus the dispatcher's view.

The store knows the outcome of recent attempts and the backlog; only the running dispatcher
knows a breaker's state and what is in flight right now. The dispatcher hands the latter in as
:class:`EndpointHealth` rows through the ``endpoint_health`` callable of
:func:`~dhan_postback.service.dashboard.create_dashboard`; without it those columns stay empty.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..store.base import Attempt, DeliveryQuery, DeliveryStatus, Store

__all__ = [
    "BACKLOG_CAP",
    "RECENT_ATTEMPTS_PER_URL",
    "RECENT_DELIVERIES",
    "EndpointHealth",
    "EndpointSummary",
    "percentile",
    "summarise_endpoints",
]

RECENT_DELIVERIES = 500
"""How many of the newest deliveries are read for success rate and latency."""

RECENT_ATTEMPTS_PER_URL = 200
"""How many of an endpoint's newest attempts the success rate and percentiles describe."""

BACKLOG_CAP = 10_000
"""Backlog and dead counts stop at this many per page load (shown as ``10000+``)."""


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    """The live state of one Postback URL in the dispatcher.

    ``breaker`` is ``"closed"`` (sending), ``"open"`` (paused after consecutive failures) or
    ``"half_open"`` (probing); ``in_flight`` counts POSTs under way to the URL right now.
    """

    url: str
    breaker: str
    in_flight: int
    consecutive_failures: int = 0


@dataclass(frozen=True, slots=True)
class EndpointSummary:
    """One row of the endpoints page."""

    url: str
    sampled_attempts: int = 0
    succeeded: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    last_attempt_at: float | None = None
    last_status_code: int | None = None
    backlog: int = 0
    dead: int = 0
    live: EndpointHealth | None = None

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.sampled_attempts if self.sampled_attempts else None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (``fraction`` in 0..1): a value that really occurred."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _succeeded(attempt: Attempt) -> bool:
    return attempt.status_code is not None and 200 <= attempt.status_code < 300


async def _count_by_url(store: Store, query: DeliveryQuery) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for delivery in await store.list_deliveries(replace(query, limit=BACKLOG_CAP)):
        counts[delivery.url] += 1
    return counts


async def summarise_endpoints(
    store: Store,
    *,
    scope: DeliveryQuery | None = None,
    live: Sequence[EndpointHealth] = (),
) -> list[EndpointSummary]:
    """Every URL seen in recent deliveries, the backlog, or the dispatcher, worst first.

    ``scope`` restricts what is read (a token's holder: its client's own URLs); when it
    names a client, the dispatcher's rows are shown only for URLs found in that scope.
    """
    scope = scope or DeliveryQuery()
    attempts: dict[str, list[Attempt]] = defaultdict(list)
    for delivery in await store.list_deliveries(replace(scope, limit=RECENT_DELIVERIES)):
        if delivery.attempts:
            attempts[delivery.url].extend(await store.get_attempts(delivery.id))
    backlog = await _count_by_url(store, replace(scope, status=DeliveryStatus.PENDING))
    dead = await _count_by_url(store, replace(scope, status=DeliveryStatus.DEAD))
    live_by_url = {row.url: row for row in live}
    if scope.dhan_client_id is not None:
        # A client sees the dispatcher's view of its own URLs only.
        known = set(attempts) | set(backlog) | set(dead)
        live_by_url = {url: row for url, row in live_by_url.items() if url in known}

    summaries: list[EndpointSummary] = []
    for url in sorted(set(attempts) | set(backlog) | set(dead) | set(live_by_url)):
        recent = sorted(attempts.get(url, []), key=lambda a: a.started_at)[
            -RECENT_ATTEMPTS_PER_URL:
        ]
        latencies = [a.latency_ms for a in recent]
        summaries.append(
            EndpointSummary(
                url=url,
                sampled_attempts=len(recent),
                succeeded=sum(1 for a in recent if _succeeded(a)),
                p50_ms=percentile(latencies, 0.50),
                p99_ms=percentile(latencies, 0.99),
                last_attempt_at=recent[-1].started_at if recent else None,
                last_status_code=recent[-1].status_code if recent else None,
                backlog=backlog.get(url, 0),
                dead=dead.get(url, 0),
                live=live_by_url.get(url),
            )
        )
    summaries.sort(key=_worst_first)
    return summaries


def _worst_first(summary: EndpointSummary) -> tuple[float, int, str]:
    rate = summary.success_rate
    return (1.0 if rate is None else rate, -(summary.backlog + summary.dead), summary.url)
