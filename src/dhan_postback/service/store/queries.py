"""Named SQL queries, read from ``store/sql/<dialect>.sql``.

Each backend keeps its SQL in one file, each query under a ``-- name: <name>`` header, so that
reviewers read SQL as SQL and the backends can be compared query by query: the same operation
has the same name in every dialect. Text before the first header is the file's own comment.
Queries named ``migration_<n>`` are the schema migrations, applied in ``n`` order.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

__all__ = ["load_queries", "migrations"]

_HEADER = re.compile(r"^--\s*name:\s*([A-Za-z_][A-Za-z0-9_]*)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^migration_(\d+)$")


@cache
def load_queries(dialect: str) -> dict[str, str]:
    """Every query of ``sql/<dialect>.sql`` by name. Raises ``ValueError`` on a repeated name."""
    text = resources.files(__package__).joinpath("sql", f"{dialect}.sql").read_text("utf-8")
    queries: dict[str, str] = {}
    headers = list(_HEADER.finditer(text))
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        name = header.group(1)
        if name in queries:
            raise ValueError(f"{dialect}.sql names {name!r} twice")
        end = following.start() if following else len(text)
        queries[name] = text[header.end() : end].strip()
    return queries


def migrations(dialect: str) -> list[tuple[int, str]]:
    """The ``(version, sql)`` migrations of a dialect, oldest first."""
    found = []
    for name, query in load_queries(dialect).items():
        match = _MIGRATION.match(name)
        if match:
            found.append((int(match.group(1)), query))
    return sorted(found)
