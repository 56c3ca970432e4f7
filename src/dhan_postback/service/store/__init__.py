"""Storage backends of the postback service, chosen by the ``--db`` URL.

``memory://`` (tests), ``sqlite:///path/to/file.db`` (the embedded default) and
``postgresql://user@host/db`` (several nodes). Backends are imported only when used.

The package offers the storage contract of :mod:`.base` (its ``__all__``, re-exported as is)
and :func:`create_store`.
"""

from __future__ import annotations

import importlib

from .base import *  # noqa: F403  (the contract: every name in base.__all__)
from .base import Store
from .base import __all__ as __all__

# Imported under its own name, mypy reads the contract's names as this package's exports;
# the package adds only the factory. One list (base's) to edit when the contract grows.
__all__ = [*__all__, "create_store"]

_BACKENDS = {
    "memory": "dhan_postback.service.store.memory:MemoryStore",
    "sqlite": "dhan_postback.service.store.sqlite:SQLiteStore",
    "postgresql": "dhan_postback.service.store.postgres:PostgresStore",
    "postgres": "dhan_postback.service.store.postgres:PostgresStore",
}


def create_store(url: str) -> Store:
    """The store for a database URL (not yet opened: ``await store.open()``)."""
    scheme = url.split(":", 1)[0].lower()
    target = _BACKENDS.get(scheme)
    if target is None:
        raise ValueError(
            f"unsupported database URL scheme {scheme!r}: use sqlite:///path, postgresql://... "
            "or memory://"
        )
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if scheme == "memory":
        store: Store = cls()
    else:
        store = cls(url)
    return store
