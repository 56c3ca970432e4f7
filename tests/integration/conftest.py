"""Fixtures for integration tests: every storage backend, behind the same ``store`` fixture.

To add a backend, add its name to ``BACKENDS`` and a branch to ``_store_url`` that returns a
fresh, empty database URL for one test. PostgreSQL tests use the session's throwaway server
(``bench/postgres.py``), started only when a PostgreSQL test runs; they carry the ``postgres`` mark,
so ``-m "not postgres"`` leaves them out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bench.postgres import PostgresServer

from dhan_postback.service.store import Store, create_store
from tests.helpers.service import Service, running_service

BACKENDS = ["memory", "sqlite", "postgres"]


def _store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'outbox.db'}"
    if backend == "postgres":
        server: PostgresServer = request.getfixturevalue("pg_server")
        return server.new_database()
    raise ValueError(f"no test database for backend {backend!r}")


@dataclass(frozen=True)
class StoreMaker:
    """Makes stores on one test database; ``durable`` backends keep data across stores."""

    backend: str
    url: str
    make: Callable[[str], Store] = create_store

    @property
    def durable(self) -> bool:
        return self.backend != "memory"

    def __call__(self) -> Store:
        return self.make(self.url)


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.postgres] if name == "postgres" else [])
        for name in BACKENDS
    ]
)
def store_maker(request: pytest.FixtureRequest, tmp_path: Path) -> StoreMaker:
    backend: str = request.param
    return StoreMaker(backend, _store_url(backend, request, tmp_path))


@pytest.fixture
async def store(store_maker: StoreMaker) -> AsyncIterator[Store]:
    opened = store_maker()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres])],
)
def service_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL for a whole service, on each persistent backend."""
    backend: str = request.param
    return _store_url(backend, request, tmp_path)


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres])],
)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """One service API (no dispatcher) for a whole module, on each persistent backend: starting
    one per test would be slow, and tests keep apart by using clients of their own. A module
    gives settings of its own in ``SERVICE_SETTINGS``; one that needs another kind of service
    defines its own ``service`` fixture, which takes precedence."""
    settings: dict[str, Any] = dict(getattr(request.module, "SERVICE_SETTINGS", {}))
    if request.param == "postgres":
        settings["db"] = request.getfixturevalue("pg_server").new_database()
    with running_service(tmp_path_factory.mktemp("service"), **settings) as running:
        yield running
