"""Named SQL, read from a package's ``sql/<name>.sql`` (procrastinate's ``queries.sql``).

Every statement a store runs lives in its SQL file under a ``-- name: <name>`` header, so
that SQL is reviewed as SQL and backends can be compared side by side. Migrations are named
``migration_<n>``: they bring the schema from version ``n - 1`` to ``n``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

__all__ = ["load_queries", "migrations", "parse_queries"]

_HEADER = re.compile(r"^--\s*name:\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:--)?\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^migration_(\d+)$")


def parse_queries(text: str) -> Mapping[str, str]:
    """``{name: sql}`` for every ``-- name:`` block of ``text`` (text before the first is a
    preamble and ignored)."""
    queries: dict[str, str] = {}
    headers = list(_HEADER.finditer(text))
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        end = following.start() if following is not None else len(text)
        name = header.group(1)
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = text[header.end() : end].strip()
    return MappingProxyType(queries)


def load_queries(package: str | None, name: str) -> Mapping[str, str]:
    """The named queries of ``sql/<name>.sql`` in ``package`` (pass ``__package__``)."""
    if package is None:
        raise ValueError("load_queries needs the package holding sql/")
    text = resources.files(package).joinpath("sql", f"{name}.sql").read_text("utf-8")
    return parse_queries(text)


def migrations(queries: Mapping[str, str]) -> list[tuple[int, str]]:
    """``(version, script)`` for every ``migration_<n>``, in order; versions must be 1..n."""
    found = sorted(
        (int(match.group(1)), sql)
        for name, sql in queries.items()
        if (match := _MIGRATION.match(name))
    )
    if [version for version, _ in found] != list(range(1, len(found) + 1)):
        raise ValueError("migrations must be numbered 1, 2, 3, ... without gaps")
    return found
