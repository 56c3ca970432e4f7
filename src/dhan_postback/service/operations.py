"""``GET /healthz`` and ``GET /metrics``: what every node exposes to its operators.

``serve`` mounts them next to the API; ``worker --port`` serves only these two. One place, so
that a health check means the same thing on every kind of node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import DhanPostbackError, StoreUnavailable, error_body

if TYPE_CHECKING:
    from .node import ServiceNode

__all__ = ["operations_routes"]

log = structlog.get_logger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


def _health(node: ServiceNode) -> Endpoint:
    async def health(request: Request) -> Response:
        """200 when the store answers, else 503 in the broker's error shape."""
        try:
            await node.store.ping()
        except StoreUnavailable as exc:
            return JSONResponse(error_body(exc), exc.http_status)
        except Exception as exc:
            log.error("health check failed", error_type=type(exc).__name__)
            unavailable = StoreUnavailable("the store does not answer")
            return JSONResponse(error_body(unavailable), unavailable.http_status)
        return JSONResponse({"status": "ok"})

    return health


def _metrics(node: ServiceNode) -> Endpoint:
    metrics = node.metrics

    async def metrics_text(request: Request) -> Response:
        """Prometheus text; the outbox gauge is read from the store at scrape time."""
        with contextlib.suppress(DhanPostbackError):
            for status, count in (await node.store.counts()).items():
                metrics.deliveries.labels(status=status.value).set(count)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics_text


def operations_routes(node: ServiceNode) -> list[Route]:
    return [
        Route("/healthz", _health(node), methods=["GET"]),
        Route("/metrics", _metrics(node), methods=["GET"]),
    ]
