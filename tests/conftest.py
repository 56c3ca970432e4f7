from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.postgres import PostgresServer, unavailable_reason

FIXTURES = Path(__file__).parent / "fixtures"

KEPT_VARIABLES = frozenset({"DHAN_POSTBACK_TEST_PG_URL"})
"""``DHAN_POSTBACK_*`` variables that configure the test suite itself, not the product: the
PostgreSQL server the tests use (``bench/postgres.py``). Every other one is cleared."""


def _clear_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DHAN_POSTBACK_") and name not in KEPT_VARIABLES:
            monkeypatch.delenv(name)


@pytest.fixture(scope="session", autouse=True)
def _clean_session_environ() -> Iterator[None]:
    """No ``DHAN_POSTBACK_*`` setting of the developer's shell reaches a session- or
    module-scoped fixture (a service started once for a module reads its settings too)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _clear_settings(monkeypatch)
        yield


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no ``DHAN_POSTBACK_*`` setting but :data:`KEPT_VARIABLES` (httpx's
    ``clean_environ``): with ``DHAN_POSTBACK_MAX_BODY_BYTES=2000`` in the shell, a test of the
    default limit would otherwise fail. A test sets what it needs with ``monkeypatch``."""
    _clear_settings(monkeypatch)


@pytest.fixture
def docs_example() -> bytes:
    """The broker's documented example body, verbatim, invalid JSON included."""
    return (FIXTURES / "docs_example.json").read_bytes()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole session (see bench/postgres.py)."""
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
