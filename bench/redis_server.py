"""A throwaway Redis server for the peer baseline: Debian's ``redis-server`` on a free port.

It listens on 127.0.0.1 only, keeps nothing on disk (no RDB snapshots, no append-only file:
the peers' queue is not durable, which favours them next to our fsynced outbox) and is stopped
when the block ends. ``apt-get install redis-server`` provides it; :func:`unavailable_reason`
says so when it is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bench.servers import free_port

__all__ = ["Redis", "redis_server", "unavailable_reason"]


@dataclasses.dataclass(frozen=True)
class Redis:
    """A running server: its URL and process id (for its CPU time)."""

    url: str
    pid: int


def unavailable_reason() -> str | None:
    """Why no Redis server can be started here, or None when one can."""
    if shutil.which("redis-server") is None:
        return "no redis-server on PATH (as root: apt-get install -y redis-server)"
    return None


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(workdir: Path, timeout: float = 20.0) -> Iterator[Redis]:
    """Run ``redis-server`` until the block ends; yield its URL and pid."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(unavailable_reason())
    port = free_port()
    log = workdir / f"redis-{port}.log"
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes"]
    args += ["--save", "", "--appendonly", "no", "--dir", str(workdir), "--logfile", str(log)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not _ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server did not start on port {port}:\n{tail}")
            time.sleep(0.05)
        yield Redis(f"redis://127.0.0.1:{port}/0", process.pid)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
