"""The relay's named SQL, read from ``relay/sql/<name>.sql`` the way the outbox's is
(:mod:`dhan_postback._sqlite.queries`): every statement under a ``-- name:`` header,
migrations named ``migration_<n>``."""

from __future__ import annotations

from collections.abc import Mapping

from .._sqlite.queries import load_queries, migrations

__all__ = ["load_relay_queries", "migrations"]


def load_relay_queries(name: str) -> Mapping[str, str]:
    """The named queries of ``relay/sql/<name>.sql``."""
    return load_queries(__package__, name)
