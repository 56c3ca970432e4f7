"""Prometheus metrics of the postback service, one registry per service instance.

A registry per instance (not prometheus-client's global one) lets tests and the demo run
several services in one process. Labels never carry a token, a secret or a full URL path:
endpoints are labelled by ``scheme://host:port`` only.

The pager's gauges (:meth:`ServiceMetrics.set_endpoint_health`) are set at scrape time, for
the endpoints that need attention only: those with pending deliveries or a breaker that is
not closed, at most :data:`HEALTH_SERIES` of them (the worst first). A healthy, idle
endpoint has no series, so their number follows the trouble, not the clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["BREAKER_VALUES", "HEALTH_SERIES", "ServiceMetrics", "endpoint_label"]

HEALTH_SERIES: Final = 1000
"""Most endpoints each pager gauge shows (the oldest backlogs, the longest outages)."""
BREAKER_VALUES: Final = {"closed": 0, "half_open": 1, "open": 2}
"""``dhan_postback_breaker_state``'s value for each state."""


def endpoint_label(url: str) -> str:
    """``scheme://host[:port]`` of a URL: enough to tell endpoints apart, nothing private."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


class ServiceMetrics:
    """Every metric the service exports at ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.updates_ingested = Counter(
            "dhan_postback_updates_ingested",
            "Order updates accepted by the ingest API.",
            registry=r,
        )
        self.ingest_rejected = Counter(
            "dhan_postback_ingest_rejected",
            "Ingest requests refused, by error code.",
            ["error_code"],
            registry=r,
        )
        self.deliveries_created = Counter(
            "dhan_postback_deliveries_created", "Deliveries committed to the outbox.", registry=r
        )
        self.deliveries = Gauge(
            "dhan_postback_deliveries",
            "Deliveries in the outbox, by status (read from the store at scrape time).",
            ["status"],
            registry=r,
        )
        self.delivered = Counter(
            "dhan_postback_delivered", "Deliveries that got a 2xx.", ["endpoint"], registry=r
        )
        self.failed_attempts = Counter(
            "dhan_postback_failed_attempts",
            "Attempts that did not get a 2xx (will be retried or die).",
            ["endpoint"],
            registry=r,
        )
        self.dead = Counter(
            "dhan_postback_dead", "Deliveries that used up their retries.", ["endpoint"], registry=r
        )
        self.attempt_latency = Histogram(
            "dhan_postback_attempt_latency_seconds",
            "Time from sending a POST to its response (or failure).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.in_flight = Gauge(
            "dhan_postback_in_flight", "POSTs under way.", ["endpoint"], registry=r
        )
        self.pruned = Counter(
            "dhan_postback_pruned",
            "Rows deleted by retention: delivered and dead deliveries, their attempts, and "
            "expired idempotency keys.",
            ["kind"],
            registry=r,
        )
        self.idempotent_replays = Counter(
            "dhan_postback_idempotent_replays",
            "Ingest requests answered again from their Idempotency-Key, nothing stored.",
            registry=r,
        )
        self.breaker_open = Gauge(
            "dhan_postback_breaker_open",
            "1 while an endpoint's circuit breaker is open or probing, else 0.",
            ["endpoint"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "dhan_postback_breaker_state",
            "An endpoint's circuit breaker on this node: 0 closed, 1 half-open (probing), "
            "2 open; only endpoints this node is sending to or whose breaker is not closed.",
            ["endpoint"],
            registry=r,
        )
        self.breaker_open_seconds = Gauge(
            "dhan_postback_breaker_open_seconds",
            "How long an endpoint's breaker has not been closed on this node (open or "
            "probing); only endpoints whose breaker is not closed.",
            ["endpoint"],
            registry=r,
        )
        self.leases_lost = Counter(
            "dhan_postback_leases_lost",
            "Leases this node found taken by another node (it ran out while this node was "
            "stalled or cut off from the store), by when it found out: at a renewal, or when "
            "the store refused to write an outcome (the attempt is logged, the delivery left "
            "to its new holder) or a give-back.",
            ["found_at"],
            registry=r,
        )
        self.oldest_pending_seconds = Gauge(
            "dhan_postback_oldest_pending_seconds",
            "Age of an endpoint's oldest pending delivery (read from the store at scrape "
            "time); only endpoints with pending deliveries.",
            ["endpoint"],
            registry=r,
        )

    def set_endpoint_health(
        self,
        *,
        breakers: Mapping[str, str],
        down_for: Mapping[str, float],
        oldest_pending: Mapping[str, float],
    ) -> None:
        """Replace the pager's gauges with this scrape's values (each by endpoint label, the
        worst of its URLs); endpoints left out lose their series."""
        for gauge, values in (
            (self.breaker_state, {k: float(BREAKER_VALUES[v]) for k, v in breakers.items()}),
            (self.breaker_open_seconds, dict(down_for)),
            (self.oldest_pending_seconds, dict(oldest_pending)),
        ):
            gauge.clear()
            worst = sorted(values.items(), key=lambda item: item[1], reverse=True)
            for label, value in worst[:HEALTH_SERIES]:
                gauge.labels(label).set(value)
