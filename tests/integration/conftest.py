"""Fixtures for integration tests: every storage backend, behind the same ``store`` fixture.

To add a backend, add its name to ``BACKENDS`` and a branch to ``_store_url`` that returns a
fresh, empty database URL for one test (the ``postgres`` helper starts its server there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dhan_postback.service.store import Store, create_store

BACKENDS = ["memory", "sqlite"]


def _store_url(backend: str, tmp_path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'outbox.db'}"
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


@pytest.fixture(params=BACKENDS)
def store_maker(request: pytest.FixtureRequest, tmp_path: Path) -> StoreMaker:
    backend: str = request.param
    return StoreMaker(backend, _store_url(backend, tmp_path))


@pytest.fixture
async def store(store_maker: StoreMaker) -> AsyncIterator[Store]:
    opened = store_maker()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
