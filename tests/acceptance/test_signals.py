"""SIGTERM or Ctrl-C (SIGINT) to any long-running command stops all of it: the command exits,
and nothing it started is left running (checked with ``ps`` on the command's session)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers.broker import DhanWsServer, individual_login
from tests.helpers.processes import clean_env
from tests.helpers.receivers import RecordingReceiver
from tests.helpers.relay import CLIENT_ID, TOKEN
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.timeout(180)

COMMANDS = ("serve", "worker", "receive", "relay", "demo")


def _answers(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    return check


def _says(path: Path, words: str) -> Callable[[], bool]:
    return lambda: path.exists() and words in path.read_text(errors="replace")


@asynccontextmanager
async def _command(name: str, tmp: Path) -> AsyncIterator[tuple[list[str], Callable[[], bool]]]:
    """The arguments that run ``name`` in ``tmp``, and how to tell that it is up."""
    port = free_port()
    output = tmp / "output.log"
    if name == "serve":
        yield (
            ["serve", "--db", "s.db", "--port", str(port)],
            _answers(f"http://127.0.0.1:{port}/healthz"),
        )
    elif name == "worker":
        yield (
            ["worker", "--db", "w.db", "--port", str(port)],
            _answers(f"http://127.0.0.1:{port}/healthz"),
        )
    elif name == "receive":
        yield (
            ["receive", "--db", "r.db", "--port", str(port)],
            _answers(f"http://127.0.0.1:{port}/healthz"),
        )
    elif name == "demo":
        yield ["demo", "--orders", "10", "--keep-running"], _says(output, "Still running")
    else:
        broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN))
        with UvicornThread(RecordingReceiver().app) as trader:
            async with broker:
                args = ["relay", "--client-id", CLIENT_ID, "--ws-url", broker.url]
                args += ["--postback-url", trader.url + "/hook", "--allow-loopback"]
                yield args, _says(output, "relay.ws.connected")


def _left_in_session(session: int) -> list[str]:
    listing = subprocess.run(
        ["ps", "-o", "pid=,args=", "--sid", str(session)],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line for line in listing.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("name", COMMANDS)
async def test_a_signal_stops_the_command_and_everything_it_started(
    name: str, sig: signal.Signals, tmp_path: Path
) -> None:
    env = clean_env(
        DHAN_POSTBACK_ADMIN_KEY="signals-admin-key-0123456789",
        DHAN_POSTBACK_RELAY_ACCESS_TOKEN=TOKEN,
        NO_COLOR="1",
    )
    async with _command(name, tmp_path) as (args, is_up):
        with (tmp_path / "output.log").open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "dhan_postback", *args],
                cwd=tmp_path,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session: ps finds whatever it started
            )
        try:
            await eventually(is_up, timeout=90, message=f"{name} did not come up")
            process.send_signal(sig)
            await eventually(lambda: process.poll() is not None, timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    log = (tmp_path / "output.log").read_text(errors="replace")
    assert process.returncode == 0, log
    assert "Traceback" not in log
    await asyncio.sleep(0)
    assert _left_in_session(process.pid) == []
