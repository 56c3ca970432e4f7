"""Real servers on loopback for the hostile-input tests: the service API and a receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dhan_postback import signing
from dhan_postback.receiver import Receiver
from tests.helpers.servers import UvicornThread
from tests.helpers.service import Service, running_service

RECEIVER_SECRET = signing.generate_secret()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """The service API (SQLite, no dispatcher) served by uvicorn."""
    with running_service(tmp_path) as running:
        yield running


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[Receiver, httpx.Client]]:
    """The bundled receiver, verifying signatures with :data:`RECEIVER_SECRET`, and a client."""
    app = Receiver(RECEIVER_SECRET, db=tmp_path / "receiver.db")
    with UvicornThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield app, client
