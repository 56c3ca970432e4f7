"""``dhan-postback worker``: only the dispatcher, sending a shared outbox (one more node).

``serve`` already runs a dispatcher next to the API; a worker adds sending capacity on
another process or machine, on the same database. Like ``serve`` it also prunes what is past
its retention (:mod:`..service.retention`); on PostgreSQL one node prunes at a time. It stops
on SIGTERM or Ctrl-C the graceful way: no new claims, POSTs under way get
``--shutdown-grace`` to finish, the rest go back to the outbox for the next node.
"""

from __future__ import annotations

import asyncio
import socket

import click
import structlog
from starlette.applications import Starlette

from ..logs import configure_logging
from ..service.node import ServiceNode
from ..service.operations import MetricsAccess, operations_routes
from ..serving import BackgroundServer
from ..settings import DISPATCHER_FIELDS, ServiceSettings, WorkerSettings
from ..urlpolicy import loopback_warning
from .options import settings_options
from .running import listen, run, stop_event

__all__ = ["DISPATCHER_FIELDS", "run_worker", "worker"]

log = structlog.get_logger(__name__)


@click.command()
@settings_options(ServiceSettings, only=DISPATCHER_FIELDS)
@settings_options(WorkerSettings, param="http")
def worker(settings: ServiceSettings, http: WorkerSettings) -> None:
    """Run only the dispatcher on a shared outbox (add sending capacity).

    Like serve it also prunes what is past its retention (on PostgreSQL one node prunes at a
    time). Every option can also be set with its DHAN_POSTBACK_* variable. SIGTERM or Ctrl-C
    stops claiming, gives POSTs under way --shutdown-grace and hands the rest back to the
    outbox.

    \b
    Examples:
      dhan-postback worker --db postgresql://postback@db.internal/postback
      dhan-postback worker --db postgresql://postback@db.internal/postback --port 9100
    """
    listening = None if http.port is None else listen(http.host, http.port)
    configure_logging()
    run(run_worker(settings, listening=listening))


async def run_worker(
    settings: ServiceSettings,
    *,
    stop: asyncio.Event | None = None,
    listening: socket.socket | None = None,
) -> None:
    """Send the outbox until ``stop`` is set, or SIGTERM/SIGINT when no event is given.

    With ``listening`` (a bound socket), also serve ``/healthz`` and ``/metrics`` there.
    """
    stop = stop or stop_event()
    if settings.allow_loopback:
        log.warning("SANDBOX: " + loopback_warning())
    async with ServiceNode(settings) as node:
        server = None
        if listening is not None:
            token = settings.metrics_token
            bound = str(listening.getsockname()[0])
            access = MetricsAccess.for_bind(bound, token.get_secret_value() if token else None)
            app = Starlette(routes=operations_routes(node, access))
            server = BackgroundServer(
                app,
                host="",
                port=0,
                lifespan="off",
                **settings.connection_limits.uvicorn_options(),
            )
            await server.start(sockets=[listening])
        log.info("worker running", db=settings.db.split(":", 1)[0], port=server and server.port)
        await stop.wait()
        log.info("worker stopping")
        if server is not None:
            await server.stop()
