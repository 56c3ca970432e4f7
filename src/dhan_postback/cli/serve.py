"""``dhan-postback serve``: the postback service (HTTP API and dispatcher)."""

from __future__ import annotations

from typing import Any

import click
import structlog
import uvicorn
from starlette.applications import Starlette

from ..logs import configure_logging
from ..settings import ServiceSettings
from ..urlpolicy import loopback_warning
from ._settings import settings_from_flags, settings_options

__all__ = ["build_app", "serve"]

log = structlog.get_logger(__name__)


def build_app(settings: ServiceSettings) -> Starlette:
    """The app ``serve`` runs: the API, and the dispatcher as its lifespan hook, woken by each
    commit and sharing one metrics registry with it."""
    from ..service.app import create_app
    from ..service.dispatcher import hook
    from ..service.metrics import ServiceMetrics

    metrics = ServiceMetrics()
    dispatch = hook(settings, metrics=metrics)
    return create_app(
        settings,
        on_commit=dispatch.wake,
        lifespan_hooks=[dispatch],
        metrics=metrics,
        breaker_state=dispatch.breaker_state,
    )


@click.command()
@settings_options
def serve(**flags: Any) -> None:
    """Run the postback service: accept order updates, commit them, deliver them.

    Every option can also be set with its DHAN_POSTBACK_* environment variable (prefer
    DHAN_POSTBACK_ADMIN_KEY to --admin-key, which other users can see in the process list).
    """
    settings = settings_from_flags(flags)
    if settings.admin_key is None or not settings.admin_key.get_secret_value():
        raise click.UsageError(
            "an admin key is required: set DHAN_POSTBACK_ADMIN_KEY (or pass --admin-key); "
            "the admin API creates the access tokens"
        )
    configure_logging()
    if settings.allow_loopback:
        log.warning("SANDBOX: " + loopback_warning())
    log.info("dhan-postback service starting", host=settings.host, port=settings.port)
    uvicorn.run(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace) or None,
    )
