from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .pg import PostgresServer, unavailable_reason

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def docs_example() -> bytes:
    """The broker's documented example body, verbatim, invalid JSON included."""
    return (FIXTURES / "docs_example.json").read_bytes()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole session (see tests/pg.py)."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (under CI the PostgreSQL tests must run)")
        pytest.skip(reason)
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """The URL of a fresh, empty database (a schema of its own) for one test."""
    return pg_server.new_database()
