"""Vector: idle and trickling sockets held forever (issue 20, item 5).

500 sockets that send nothing, or one header line at a time, must not be held past the header
timeout by any server this package runs (``serve``, ``worker --port``, ``receive``), and a
normal request must still be answered meanwhile.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.helpers.processes import ServerProcess, serve_process
from tests.helpers.servers import free_port

IDLE, TRICKLING = 400, 100
HEADER_TIMEOUT = 1.0
BOUND = HEADER_TIMEOUT + 10.0
"""Generous: the machine is shared; the point is "closed", not how fast."""


def _serve(tmp_path: Path, port: int) -> ServerProcess:
    process = serve_process(tmp_path / "service.db", port, "security-admin-key-0123456789")
    process.args += ["--header-timeout", "1s"]
    return process


def _worker(tmp_path: Path, port: int) -> ServerProcess:
    args = ["worker", "--db", f"sqlite:///{tmp_path / 'outbox.db'}", "--port", str(port)]
    return ServerProcess(
        [*args, "--header-timeout", "1s"], health_url=f"http://127.0.0.1:{port}/healthz"
    )


def _receive(tmp_path: Path, port: int) -> ServerProcess:
    args = ["receive", "--port", str(port), "--db", str(tmp_path / "receiver.db"), "--quiet"]
    return ServerProcess(
        [*args, "--header-timeout", "1s"], health_url=f"http://127.0.0.1:{port}/healthz"
    )


SERVERS: dict[str, Callable[[Path, int], ServerProcess]] = {
    "serve": _serve,
    "worker": _worker,
    "receive": _receive,
}


def _wait_until_closed(
    idle: list[socket.socket], trickling: list[socket.socket], bound: float
) -> tuple[int, float]:
    """How many sockets the server closed within ``bound`` seconds, and when the last went.

    The trickling sockets send one more header line every 0.2 s while they stay open.
    """
    started = time.monotonic()
    selector = selectors.DefaultSelector()
    for sock in idle + trickling:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    open_trickling = set(trickling)
    closed, last = 0, 0.0
    next_line = started
    while closed < len(idle) + len(trickling) and time.monotonic() - started < bound:
        if time.monotonic() >= next_line:
            for sock in list(open_trickling):
                try:
                    sock.send(b"x-slow: 1\r\n")
                except OSError:
                    open_trickling.discard(sock)
            next_line += 0.2
        for key, _ in selector.select(timeout=0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data == b"":
                selector.unregister(sock)
                open_trickling.discard(sock)
                closed += 1
                last = time.monotonic() - started
    selector.close()
    return closed, last


@pytest.mark.parametrize("command", sorted(SERVERS))
def test_idle_and_trickling_connections_are_closed_within_the_header_timeout(
    tmp_path: Path, command: str
) -> None:
    port = free_port()
    with SERVERS[command](tmp_path, port):
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(IDLE)]
        trickling = [socket.create_connection(("127.0.0.1", port)) for _ in range(TRICKLING)]
        try:
            for sock in trickling:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
            answered = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            closed, _ = _wait_until_closed(idle, trickling, BOUND)
        finally:
            for sock in idle + trickling:
                sock.close()
    assert answered.status_code == 200
    assert closed == IDLE + TRICKLING, f"{closed} of {IDLE + TRICKLING} closed within {BOUND}s"


@pytest.mark.parametrize("command", sorted(SERVERS))
def test_connections_beyond_the_cap_are_closed_at_once(tmp_path: Path, command: str) -> None:
    port = free_port()
    server = SERVERS[command](tmp_path, port)
    server.args += ["--max-connections", "20", "--header-timeout", "60s"]
    with server:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        try:
            extra = socket.create_connection(("127.0.0.1", port))
            extra.settimeout(10)
            try:
                refused = extra.recv(1) == b""
            except ConnectionResetError:
                refused = True
            extra.close()
        finally:
            for sock in held:
                sock.close()
        assert refused
        time.sleep(0.2)  # let the server see the held sockets go
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
