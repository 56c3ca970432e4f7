"""The README's tour, run as a user would paste it: if the README drifts, this fails."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

from dhan_postback.settings import ServiceSettings
from tests.helpers.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()

_BLOCK = re.compile(r"<!-- (tour|file: [\w.]+) -->\n```(\w+)\n(.*?)```", re.DOTALL)


def _blocks() -> tuple[list[str], dict[str, str]]:
    shell: list[str] = []
    files: dict[str, str] = {}
    for marker, _language, text in _BLOCK.findall(README):
        if marker == "tour":
            shell.append(text)
        else:
            files[marker.removeprefix("file: ")] = text
    return shell, files


def test_the_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block.splitlines()[0].startswith("make demo")
    assert first_block.splitlines()[1].startswith("make test")


def test_the_readme_lists_every_setting() -> None:
    for name in ServiceSettings.model_fields:
        assert f"`DHAN_POSTBACK_{name.upper()}`" in README, name


def test_the_tour_runs_from_start_to_end(tmp_path: Path) -> None:
    shell, files = _blocks()
    assert len(shell) >= 8 and {"app.py", "verify.py"} <= set(files)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "tour").mkdir()
    for name, text in files.items():
        (tmp_path / "tour" / name).write_text(text)
    script = "set -euo pipefail\n" + "\n".join(shell)
    # The tour uses the usual ports 8000-8002; the test moves them to free ones so that it
    # never meets another server on this machine. Nothing else in the commands changes.
    ports = {port: free_port() for port in ("8000", "8001", "8002")}
    for usual, free in ports.items():
        script = script.replace(usual, str(free))
    env = {key: value for key, value in os.environ.items() if not key.startswith("DHAN_POSTBACK")}
    env["DHAN_POSTBACK_SERVER"] = f"http://127.0.0.1:{ports['8000']}"  # `tokens` defaults to 8000
    log = tmp_path / "tour.out"
    # A file, not a pipe: the servers the tour starts in the background inherit its stdout.
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(timeout=120)
        finally:
            # Whatever the tour left running (it stops its servers itself when it succeeds).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text()
    assert process.returncode == 0, output
    assert '"deliveryIds"' in output
    assert "same endpoint" in output  # the renewed token came with the receiver's secret
    assert '"status":"delivered"' in output.replace(" ", "")
    assert "TRADED" in output or "CANCELLED" in output
    assert (tmp_path / "tour" / "receiver.db").exists()
    assert "filled:" in (tmp_path / "tour" / "app.out").read_text()
