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
from ._secrets import secret_file_option
from ._settings import check_admin_key, settings_from_flags, settings_options

__all__ = ["build_app", "serve"]

log = structlog.get_logger(__name__)


def build_app(settings: ServiceSettings) -> Starlette:
    """The app ``serve`` runs: the API, and the dispatcher and the pruner as its lifespan
    hooks, the dispatcher woken by each commit, all sharing one metrics registry."""
    from ..service.app import create_app
    from ..service.dispatcher import hook
    from ..service.metrics import ServiceMetrics
    from ..service.retention import prune_hook

    metrics = ServiceMetrics()
    dispatch = hook(settings, metrics=metrics)
    prune = prune_hook(settings, metrics=metrics)
    return create_app(
        settings,
        on_commit=dispatch.wake,
        lifespan_hooks=[dispatch, prune],
        metrics=metrics,
        breaker_state=dispatch.breaker_state,
    )


@click.command()
@settings_options
@secret_file_option("admin_key", "--admin-key-file", envvar="DHAN_POSTBACK_ADMIN_KEY_FILE")
@secret_file_option(
    "metrics_token", "--metrics-token-file", envvar="DHAN_POSTBACK_METRICS_TOKEN_FILE"
)
def serve(**flags: Any) -> None:
    """Run the postback service: accept order updates, commit them, deliver them.

    Every option can also be set with its DHAN_POSTBACK_* environment variable (prefer
    DHAN_POSTBACK_ADMIN_KEY or --admin-key-file to --admin-key, which other users can see in
    the process list).
    """
    settings = settings_from_flags(flags)
    check_admin_key(settings, required=True)
    configure_logging()
    if settings.allow_loopback:
        log.warning("SANDBOX: " + loopback_warning())
    log.info("dhan-postback service starting", host=settings.host, port=settings.port)
    uvicorn.run(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        access_log=False,
        log_level="warning",
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace) or None,
        **settings.connection_limits.uvicorn_options(),
    )
