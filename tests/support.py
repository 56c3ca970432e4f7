"""Real servers for tests: uvicorn in a thread, or a whole ``dhan-postback`` process.

Tests talk HTTP to these over loopback; nothing here fakes a network.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn

__all__ = ["ServerProcess", "UvicornThread", "free_port", "serve_process", "wait_http_ok"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http_ok(url: str, timeout: float = 20.0) -> None:
    """Poll ``url`` with GET until it answers 2xx, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if 200 <= response.status < 300:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 2xx within {timeout}s (last error: {last})")


class UvicornThread:
    """Serve an ASGI app with uvicorn on a loopback port, in a background thread.

    Use as a context manager; ``url`` is ``http://127.0.0.1:<port>``.
    """

    def __init__(self, app: Any, port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options: dict[str, Any] = {"log_level": "warning", "lifespan": "on", "loop": "asyncio"}
        options.update(config)
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, **options)
        )
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve())

    def start(self) -> UvicornThread:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)

    def __enter__(self) -> UvicornThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ServerProcess:
    """A ``dhan-postback`` sub-command run as a real process (so tests can ``kill -9`` it)."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        health_url: str | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.args = [sys.executable, "-m", "dhan_postback", *args]
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.health_url = health_url
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        if self.log_path:
            with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
                self.process = subprocess.Popen(
                    self.args, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT
                )
        else:
            self.process = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=self.cwd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
        if self.health_url:
            try:
                wait_http_ok(self.health_url, timeout)
            except TimeoutError:
                self.kill()
                raise
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def terminate(self) -> None:
        self.kill(signal.SIGTERM)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.kill(signal.SIGTERM)


@contextlib.contextmanager
def running(*servers: UvicornThread | ServerProcess) -> Iterator[None]:
    """Start several servers and stop them all, whatever happens."""
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.enter_context(server)
        yield


FAST_RETRIES = "0s,50ms,100ms,200ms,400ms"


def serve_process(
    db: Path | str,
    port: int,
    admin_key: str,
    *,
    retry_schedule: str = FAST_RETRIES,
    flags: Sequence[str] = (),
    log_path: Path | None = None,
) -> ServerProcess:
    """``dhan-postback serve`` on a SQLite file (or any database URL given as a string), in
    sandbox mode, with quick retries.

    ``flags`` come after the defaults here, so they override them (``--timeout 500ms``).

    The environment is this one minus every ``DHAN_POSTBACK_*`` variable, so a developer's
    own settings cannot leak into a test.
    """
    args = [
        "serve",
        "--port", str(port),
        "--db", db if isinstance(db, str) else f"sqlite:///{db}",
        "--allow-loopback",
        "--retry-schedule", retry_schedule,
        "--timeout", "2s",
        "--lease", "3s",
        "--max-in-flight-per-url", "8",
        *flags,
    ]  # fmt: skip
    process = ServerProcess(args, health_url=f"http://127.0.0.1:{port}/healthz", log_path=log_path)
    process.env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DHAN_POSTBACK_")},
        "DHAN_POSTBACK_ADMIN_KEY": admin_key,
    }
    return process
