"""``GET /healthz`` and ``GET /metrics``: what every node exposes to its operators.

``serve`` mounts them next to the API; ``worker --port`` serves only these two. One place, so
that a health check means the same thing on every kind of node.

``/metrics`` names every endpoint's host and counts its traffic: who the service's clients
are. It is open by default only when the server listens on a loopback address (where only
this machine can ask); otherwise it needs ``Authorization: Bearer <--metrics-token>``, and
without a token configured it is refused. ``/healthz`` says only "ok" and stays open.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import (
    AuthenticationError,
    DhanPostbackError,
    PermissionDenied,
    StoreUnavailable,
    error_body,
)

if TYPE_CHECKING:
    from .node import ServiceNode

__all__ = ["Endpoint", "MetricsAccess", "is_loopback_host", "operations_routes"]

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


def is_loopback_host(host: str) -> bool:
    """Whether a bind address reaches this machine only (``localhost``, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class MetricsAccess:
    """Who may read ``/metrics``: anyone (a loopback bind, no token), a bearer of the token,
    or nobody (a public bind without a token)."""

    token_digest: bytes | None
    open: bool

    @classmethod
    def for_bind(cls, host: str, token: str | None) -> MetricsAccess:
        digest = hashlib.sha256(token.encode()).digest() if token else None
        return cls(digest, open=digest is None and is_loopback_host(host))

    def refusal(self, request: Request) -> Response | None:
        """None when ``request`` may read the metrics, else the 401/403 to answer."""
        if self.open:
            return None
        if self.token_digest is None:
            denied = PermissionDenied(
                "/metrics is served only on loopback binds unless a metrics token is set "
                "(--metrics-token-file or DHAN_POSTBACK_METRICS_TOKEN)"
            )
            return JSONResponse(error_body(denied), denied.http_status)
        scheme, _, offered = request.headers.get("authorization", "").partition(" ")
        offered_digest = hashlib.sha256(offered.strip().encode()).digest()
        if scheme.lower() == "bearer" and hmac.compare_digest(offered_digest, self.token_digest):
            return None
        refused = AuthenticationError("send the metrics token: Authorization: Bearer <token>")
        return JSONResponse(
            error_body(refused), refused.http_status, headers={"WWW-Authenticate": "Bearer"}
        )


def _metrics(node: ServiceNode, access: MetricsAccess) -> Endpoint:
    metrics = node.metrics

    async def metrics_text(request: Request) -> Response:
        """Prometheus text; the outbox and endpoint gauges are read at scrape time."""
        refusal = access.refusal(request)
        if refusal is not None:
            return refusal
        with contextlib.suppress(DhanPostbackError):
            await node.refresh_gauges()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics_text


def operations_routes(node: ServiceNode, access: MetricsAccess | None = None) -> list[Route]:
    """``/healthz`` and ``/metrics``; ``access`` defaults to the node's (its settings' bind
    and metrics token)."""
    access = access or node.metrics_access
    return [
        Route("/healthz", _health(node), methods=["GET"]),
        Route("/metrics", _metrics(node, access), methods=["GET"]),
    ]
