"""Vector: databases readable by every user of the machine (issue 20, item 6).

The service's outbox holds signing secrets and payloads, the receiver's file holds every
order, the relay's log the account's updates: each is created 0600, and the ``-wal`` and
``-shm`` files SQLite adds beside it get the same mode.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dhan_postback.relay.log import RelayLog
from tests.helpers.processes import ServerProcess, serve_process
from tests.helpers.servers import free_port
from tests.helpers.updates import update_body


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common umask (022), under which SQLite alone would make files 0644."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _modes(directory: Path) -> dict[str, int]:
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir()}


def test_the_services_database_files_are_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    with serve_process(data / "service.db", port, "security-admin-key-0123456789"):
        modes = _modes(data)
    assert {"service.db", "service.db-wal", "service.db-shm"} <= set(modes)
    assert set(modes.values()) == {0o600}, modes


def test_the_receivers_database_files_are_owner_only(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    data.mkdir()
    args = ["receive", "--port", str(port), "--db", str(data / "receiver.db"), "--quiet"]
    with ServerProcess(args, health_url=f"http://127.0.0.1:{port}/healthz"):
        body = update_body("900001", "TRADED", filled_qty=1)
        headers = {"content-type": "application/json"}
        assert httpx.post(f"http://127.0.0.1:{port}/", content=body, headers=headers).is_success
        modes = _modes(data)
    assert {"receiver.db", "receiver.db-wal", "receiver.db-shm"} <= set(modes)
    assert set(modes.values()) == {0o600}, modes


async def test_the_relays_log_is_owner_only(tmp_path: Path) -> None:
    async with RelayLog(str(tmp_path / "relay" / "relay.db")):
        modes = _modes(tmp_path / "relay")
    assert "relay.db" in modes
    assert set(modes.values()) == {0o600}, modes
