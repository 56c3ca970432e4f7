"""The relay's named SQL, read from ``relay/sql/<name>.sql`` the way the outbox's is
(:mod:`dhan_postback.service.store.queries`): every statement under a ``-- name:`` header,
migrations named ``migration_<n>``."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

from ..service.store.queries import migrations, parse_queries

__all__ = ["load_relay_queries", "migrations"]


def load_relay_queries(name: str) -> Mapping[str, str]:
    """The named queries of ``relay/sql/<name>.sql``."""
    text = resources.files(__package__).joinpath("sql", f"{name}.sql").read_text("utf-8")
    return parse_queries(text)
