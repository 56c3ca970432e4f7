"""A uvicorn server run as one task among others in a process that owns its signals.

``uvicorn.run`` is right when the server *is* the process. The relay and ``worker --port``
serve HTTP next to other work, and SIGTERM must reach that work's own graceful shutdown, so
these servers install no signal handlers and are started and stopped like any task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn

from .connections import ConnectionLimits

__all__ = ["BackgroundServer"]


class BackgroundServer(uvicorn.Server):
    """uvicorn without its signal handlers; ``await start()`` then ``await stop()``.

    Connections are bounded (:mod:`.connections`) with the default limits unless ``config``
    passes others (``**limits.uvicorn_options()``).
    """

    def __init__(self, app: Any, *, host: str, port: int, **config: Any) -> None:
        options: dict[str, Any] = {
            "lifespan": "on",
            "log_level": "warning",
            "access_log": False,
            "server_header": False,
            **ConnectionLimits().uvicorn_options(),
        }
        options.update(config)
        super().__init__(uvicorn.Config(app, host=host, port=port, **options))
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @property
    def port(self) -> int:
        """The port actually bound (useful when 0 asked for any free one)."""
        port: int = self.servers[0].sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._task = asyncio.create_task(self.serve(), name="http-server")
        while not self.started:
            if self._task.done():
                self._task.result()  # its error, if it has one
                raise RuntimeError(f"the HTTP server did not start on port {self.config.port}")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is not None:
            self.should_exit = True
            await self._task
            self._task = None
