"""The outbox's named SQL, read from ``store/sql/<backend>.sql`` (see :mod:`..._sqlite.queries`
for the format: every statement under a ``-- name:`` header, migrations ``migration_<n>``)."""

from __future__ import annotations

from collections.abc import Mapping

from ..._sqlite.queries import load_queries as _load
from ..._sqlite.queries import migrations, parse_queries

__all__ = ["load_queries", "migrations", "parse_queries"]


def load_queries(backend: str) -> Mapping[str, str]:
    """The named queries of ``sql/<backend>.sql``."""
    return _load(__package__, backend)
