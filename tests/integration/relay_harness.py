"""Running a real relay (websocket client, SQLite log, HTTP sink) inside a test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dhan_postback.relay import Backoff, Login, OrderUpdateStream, Relay, RelayLog, Sink

__all__ = ["CLIENT_ID", "TOKEN", "running_relay"]

CLIENT_ID = "1000000001"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.test-access-token"


@contextlib.asynccontextmanager
async def running_relay(
    ws_url: str,
    sink: Sink,
    db: Path,
    *,
    login: Login | None = None,
    batch_size: int = 500,
    **stream_options: Any,
) -> AsyncIterator[Relay]:
    """A relay running in the background until the block ends (then stopped and awaited)."""
    options: dict[str, Any] = {"backoff": Backoff(base=0.01, cap=0.05), "stable_after": 5.0}
    options.update(stream_options)
    stream = OrderUpdateStream(login or Login.individual(CLIENT_ID, TOKEN), url=ws_url, **options)
    async with RelayLog(db) as relay_log:
        relay = Relay(stream, sink, relay_log, batch_size=batch_size, shutdown_grace=5.0)
        task = asyncio.create_task(relay.run())
        try:
            yield relay
        finally:
            relay.stop()
            await asyncio.wait_for(task, 15)
