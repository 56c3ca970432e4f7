"""Bring a SQLite file's schema up to date, one numbered migration at a time.

The file says which version it holds in ``PRAGMA user_version``; each ``migration_<n>`` of a
store's SQL (see :mod:`.queries`) runs in its own transaction together with the version bump,
so a crash between two migrations leaves a file at a version it really has. A file newer than
the code is refused: this code would not know its tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence

import structlog

__all__ = ["TooNew", "migrate"]

log = structlog.get_logger(__name__)

TooNew = Callable[[int, int], Exception]
"""Builds the error for a file at schema ``(found, known)`` newer than the code knows."""


def migrate(
    conn: sqlite3.Connection,
    scripts: Sequence[tuple[int, str]],
    *,
    too_new: TooNew,
    with_data: Mapping[int, Callable[[sqlite3.Connection], None]] | None = None,
) -> int:
    """Run the ``(version, script)`` migrations past the file's version; the version it had.

    ``with_data[n]`` runs after script ``n``, in its transaction (for a migration that must
    move rows with Python). ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    (current,) = conn.execute("PRAGMA user_version").fetchone()
    known = scripts[-1][0] if scripts else 0
    if current > known:
        raise too_new(current, known)
    for version, script in scripts:
        if version <= current:
            continue
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{script}\n;")
            step = (with_data or {}).get(version)
            if step is not None:
                step(conn)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("sqlite schema migrated", version=version)
    return int(current)
