"""The receiving end of the benchmarks: the fastest honest receiver, in its own process.

Raw ASGI on uvicorn + uvloop + httptools: read the body, answer 200 ``ok``. With ``--record``
it also notes when each update arrived (``time.monotonic()``, a clock every process on the
machine shares) under its ``orderId``. One process can listen on several ports
(``--port`` repeated) and hold black-holed ports (``--blackhole``: accept, read, never answer).

``GET /stats`` answers ``{"count": n}``; ``GET /arrivals`` answers ``{orderId: seconds}`` and
forgets them. Run: ``python -m bench.sink --port 8101 --record``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import time
from typing import Any

import msgspec
import uvicorn

__all__ = ["SinkApp", "main"]


class _Order(msgspec.Struct):
    orderId: str


_decode_order = msgspec.json.Decoder(_Order).decode
_OK_HEAD = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
_OK_BODY = {"type": "http.response.body", "body": b"ok"}


class SinkApp:
    """Counts POSTs (and with ``record`` notes arrival times); answers 200 to each."""

    def __init__(self, record: bool) -> None:
        self.record = record
        self.count = 0
        self.arrivals: dict[str, float] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        if scope["method"] == "GET":
            if scope["path"] == "/arrivals":
                body = msgspec.json.encode(self.arrivals)
                self.arrivals = {}
            else:
                body = msgspec.json.encode({"count": self.count})
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-length", str(len(body)).encode()),
                        (b"content-type", b"application/json"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        arrived = time.monotonic()
        self.count += 1
        if self.record:
            with contextlib.suppress(msgspec.DecodeError):
                self.arrivals[_decode_order(b"".join(chunks)).orderId] = arrived
        await send(_OK_HEAD)
        await send(_OK_BODY)


async def _blackhole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read whatever comes, never answer, until the client gives up."""
    while await reader.read(65536):
        pass
    writer.close()


def _bound(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    return sock


async def _serve(ports: list[int], blackholes: list[int], record: bool) -> None:
    holes = [await asyncio.start_server(_blackhole, sock=_bound(port)) for port in blackholes]
    config = uvicorn.Config(
        SinkApp(record),
        loop="none",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=2048,
    )
    try:
        await uvicorn.Server(config).serve(sockets=[_bound(port) for port in ports])
    finally:
        for hole in holes:
            hole.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, action="append", default=[], required=True)
    parser.add_argument("--blackhole", type=int, action="append", default=[])
    parser.add_argument("--record", action="store_true", help="note arrival times by orderId")
    options = parser.parse_args()
    import uvloop

    uvloop.run(_serve(options.port, options.blackhole, options.record))


if __name__ == "__main__":
    main()
