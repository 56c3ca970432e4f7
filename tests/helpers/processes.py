"""``dhan-postback`` as a real process: a server tests can ``kill -9``, or a command run to its
end; each with an environment free of the developer's ``DHAN_POSTBACK_*`` settings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .servers import UvicornThread, wait_http_ok

__all__ = [
    "FAST_RETRIES",
    "ServerProcess",
    "clean_env",
    "run_cli",
    "running",
    "serve_process",
]


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


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any ``DHAN_POSTBACK_*`` variable, plus ``extra``: a
    developer's own settings cannot leak into a test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DHAN_POSTBACK_")}
    return {**env, **extra}


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``dhan-postback ARGS`` as a real process, to its end; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "dhan_postback", *args],
        env=dict(env) if env is not None else clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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
    process.env = clean_env(DHAN_POSTBACK_ADMIN_KEY=admin_key)
    return process
