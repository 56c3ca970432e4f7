"""Running a real relay inside a test: in this process (websocket client, SQLite log, HTTP
sink), or as the ``relay`` command delivering to a real receiver (:class:`Trader`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dhan_postback.receiver import Postback, Receiver
from dhan_postback.relay import Backoff, Login, OrderUpdateStream, Relay, RelayLog, Sink

from .processes import ServerProcess
from .servers import UvicornThread

__all__ = [
    "CLIENT_ID",
    "TOKEN",
    "Trader",
    "relay_process",
    "running_relay",
    "stop_process",
    "wait_for_exit",
]

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


class Trader:
    """A receiver at the Postback URL, remembering every body its handler was given."""

    def __init__(self, directory: Path, secret: str, port: int | None = None) -> None:
        self.secret = secret
        self.receiver = Receiver(secret, db=directory / "receiver.db")
        self.bodies: list[bytes] = []
        self.receiver.on_update(self._handle)
        self.server = UvicornThread(self.receiver, port=port)

    async def _handle(self, postback: Postback) -> None:
        self.bodies.append(postback.body)

    @property
    def url(self) -> str:
        return self.server.url + "/"


def relay_process(
    trader: Trader, ws_url: str, directory: Path, *flags: str, token: str = TOKEN
) -> ServerProcess:
    """``dhan-postback relay`` with an embedded service delivering to ``trader``, quick to
    redial and retry; its output in ``directory/relay.log``. Started."""
    return ServerProcess(
        [
            "relay",
            "--client-id",
            CLIENT_ID,
            "--ws-url",
            ws_url,
            "--postback-url",
            trader.url,
            "--allow-loopback",
            "--retry-schedule",
            "0s,50ms,100ms",
            "--backoff-cap",
            "200ms",
            "--db",
            str(directory / "relay.db"),
            *flags,
        ],
        env={
            "DHAN_POSTBACK_RELAY_ACCESS_TOKEN": token,
            "DHAN_POSTBACK_RELAY_SIGNING_SECRET": trader.secret,
        },
        log_path=directory / "relay.log",
    ).start()


async def wait_for_exit(process: ServerProcess, timeout: float = 30.0) -> int:
    """The exit status, waiting without blocking the loop the test broker runs on."""
    assert process.process is not None
    for _ in range(int(timeout / 0.05)):
        code = process.process.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.05)
    process.process.kill()
    raise AssertionError("the relay did not exit in time")


async def stop_process(process: ServerProcess) -> int:
    """SIGTERM, then the exit status."""
    assert process.process is not None
    process.process.send_signal(signal.SIGTERM)
    return await wait_for_exit(process, 15.0)
