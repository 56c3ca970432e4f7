"""``dhan-postback worker``: only the dispatcher, sending a shared outbox (one more node).

``serve`` already runs a dispatcher next to the API; a worker adds sending capacity on
another process or machine, on the same database. Like ``serve`` it also prunes what is past
its retention (:mod:`..service.retention`); on PostgreSQL one node prunes at a time. It stops
on SIGTERM or Ctrl-C the graceful way: no new claims, POSTs under way get
``--shutdown-grace`` to finish, the rest go back to the outbox for the next node.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import click
import structlog
from starlette.applications import Starlette

from ..logs import configure_logging
from ..service.dispatcher import Dispatcher
from ..service.metrics import ServiceMetrics
from ..service.operations import MetricsAccess, operations_routes
from ..service.retention import pruning
from ..service.store import create_store
from ..serving import BackgroundServer
from ..settings import ServiceSettings
from ..urlpolicy import loopback_warning
from ._secrets import secret_file_option
from ._settings import check_admin_key, settings_from_flags, settings_options_for

__all__ = ["DISPATCHER_FIELDS", "run_worker", "worker"]

log = structlog.get_logger(__name__)

DISPATCHER_FIELDS: tuple[str, ...] = (
    "db",
    "allow_loopback",
    "retry_schedule",
    "timeout",
    "max_in_flight_per_url",
    "max_in_flight",
    "retry_after_cap",
    "breaker_failure_rate",
    "breaker_min_attempts",
    "breaker_window",
    "breaker_cooldown",
    "breaker_max_cooldown",
    "lease",
    "claim_batch",
    "shutdown_grace",
    "header_timeout",
    "keep_alive_timeout",
    "max_connections",
    "metrics_token",
    "idempotency_window",
    "retain_delivered",
    "retain_dead",
    "prune_interval",
    "prune_batch",
)
"""The settings the dispatcher and the pruner read: the worker's flags."""


@click.command()
@settings_options_for(DISPATCHER_FIELDS)
@secret_file_option(
    "metrics_token", "--metrics-token-file", envvar="DHAN_POSTBACK_METRICS_TOKEN_FILE"
)
@click.option(
    "--host",
    "http_host",
    default="127.0.0.1",
    show_default=True,
    envvar="DHAN_POSTBACK_WORKER_HOST",
    help="Address for /healthz and /metrics. [env: DHAN_POSTBACK_WORKER_HOST]",
)
@click.option(
    "--port",
    "http_port",
    default=None,
    type=click.IntRange(0, 65535),
    envvar="DHAN_POSTBACK_WORKER_PORT",
    help="Serve /healthz and /metrics on this port (none by default, so that workers "
    "beside `serve` need no port of their own). [env: DHAN_POSTBACK_WORKER_PORT]",
)
def worker(http_host: str, http_port: int | None, **flags: Any) -> None:
    """Run only the dispatcher on a shared outbox (add sending capacity).

    Every option can also be set with its DHAN_POSTBACK_* environment variable.
    """
    settings = settings_from_flags(flags)
    check_admin_key(settings, required=False)
    configure_logging()
    listen = None if http_port is None else (http_host, http_port)
    _run(run_worker(settings, listen=listen))


def _run(main: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


async def run_worker(
    settings: ServiceSettings,
    *,
    stop: asyncio.Event | None = None,
    listen: tuple[str, int] | None = None,
) -> None:
    """Send the outbox until ``stop`` is set, or SIGTERM/SIGINT when no event is given.

    With ``listen`` (host, port), also serve ``/healthz`` and ``/metrics`` there.
    """
    stop = stop or _stop_on_signals()
    if settings.allow_loopback:
        log.warning("SANDBOX: " + loopback_warning())
    store = create_store(settings.db)
    metrics = ServiceMetrics()
    await store.open()
    server = None
    try:
        async with (
            Dispatcher(store, settings, metrics=metrics),
            pruning(store, settings, metrics=metrics),
        ):
            if listen is not None:
                token = settings.metrics_token
                access = MetricsAccess.for_bind(
                    listen[0], token.get_secret_value() if token else None
                )
                app = Starlette(routes=operations_routes(store, metrics, access))
                server = BackgroundServer(
                    app,
                    host=listen[0],
                    port=listen[1],
                    lifespan="off",
                    **settings.connection_limits.uvicorn_options(),
                )
                await server.start()
            log.info(
                "worker running",
                db=settings.db.split(":", 1)[0],
                port=listen and server and server.port,
            )
            await stop.wait()
            log.info("worker stopping")
            if server is not None:
                await server.stop()
    finally:
        await store.close()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
