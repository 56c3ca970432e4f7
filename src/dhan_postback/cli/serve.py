"""``dhan-postback serve``: the postback service (HTTP API and dispatcher)."""

from __future__ import annotations

import asyncio
import gc
import socket
from typing import TYPE_CHECKING, Final

import click
import structlog
from starlette.applications import Starlette

from ..logs import configure_logging
from ..settings import ServiceSettings
from ..urlpolicy import loopback_warning
from .options import settings_options
from .running import listen, run, stop_event

if TYPE_CHECKING:
    from ..service.node import ServiceNode

__all__ = ["build_app", "serve"]

log = structlog.get_logger(__name__)

_GC_YOUNG_THRESHOLD: Final = 20_000
"""Allocations (less deallocations) between two collections of the youngest generation;
CPython's default is 700. See :func:`_settle_garbage_collector`."""


def build_app(settings: ServiceSettings) -> Starlette:
    """The app ``serve`` runs, on a node of its own that its lifespan starts and stops."""
    from ..service.app import create_app
    from ..service.node import ServiceNode

    return create_app(ServiceNode(settings))


@click.command()
@settings_options(ServiceSettings)
def serve(settings: ServiceSettings) -> None:
    """Run the postback service: accept order updates, commit them, deliver them.

    Every option can also be set with its DHAN_POSTBACK_* variable; prefer
    DHAN_POSTBACK_ADMIN_KEY or --admin-key-file to --admin-key, which other users can see in
    the process list.
    The port is bound first, then the database opened (and migrated), then delivery starts.
    SIGTERM or Ctrl-C stops taking requests and gives POSTs under way --shutdown-grace.

    \b
    Examples:
      dhan-postback serve --db service.db --admin-key-file /etc/dhan-postback/admin.key
      dhan-postback serve --db postgresql://postback@db.internal/postback --port 8080
    """
    if settings.admin_key is None or not settings.admin_key.get_secret_value():
        raise click.UsageError(
            "an admin key is required (the admin API creates the access tokens): set "
            "DHAN_POSTBACK_ADMIN_KEY or --admin-key-file"
        )
    listening = listen(settings.host, settings.port)
    configure_logging()
    if settings.allow_loopback:
        log.warning("SANDBOX: " + loopback_warning())
    run(_serve(settings, listening))


async def _serve(settings: ServiceSettings, listening: socket.socket) -> None:
    from ..service.app import create_app
    from ..service.node import ServiceNode
    from ..serving import BackgroundServer

    stop = stop_event()
    async with ServiceNode(settings) as node:
        server = BackgroundServer(
            create_app(node),
            host=settings.host,
            port=settings.port,
            timeout_graceful_shutdown=int(settings.shutdown_grace) or None,
            **settings.connection_limits.uvicorn_options(),
        )
        await server.start(sockets=[listening])
        _settle_garbage_collector()
        log.info("dhan-postback service running", host=settings.host, port=server.port)
        preloading = asyncio.create_task(_preload(node))
        await stop.wait()
        log.info("dhan-postback service stopping")
        preloading.cancel()
        await server.stop()


def _settle_garbage_collector() -> None:
    """Keep the cycle collector off the per-request path once the service is up.

    Almost everything a request makes is freed by reference counting; the collector mostly
    walks objects that live as long as the process (modules, the app, the node, caches).
    Frozen after startup, those are left out of every later collection, and the young
    generation is collected every ``_GC_YOUNG_THRESHOLD`` allocations instead of 700: with
    one update per request this took ``serve``'s collections from 8-15 % of its CPU to under
    1 % (docs/performance.md, "The last hops").
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, middle, old)


async def _preload(node: ServiceNode) -> None:
    """Cache the live tokens in the background (see ``Registry.preload``); a failure only
    leaves them to be read one by one."""
    try:
        tokens = await node.registry.preload()
    except Exception as exc:  # the store's trouble shows on the requests too
        log.warning("tokens not preloaded", error=str(exc))
    else:
        log.info("tokens preloaded", tokens=tokens)
