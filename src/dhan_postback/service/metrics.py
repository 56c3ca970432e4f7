"""Prometheus metrics of the postback service, one registry per service instance.

A registry per instance (not prometheus-client's global one) lets tests and the demo run
several services in one process. Labels never carry a token, a secret or a full URL path:
endpoints are labelled by ``scheme://host:port`` only.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ServiceMetrics", "endpoint_label"]


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
