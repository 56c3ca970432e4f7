"""What every SQLite file of dhan-postback is built on: named SQL, migrations, one writer.

* :mod:`.queries`: every statement in a ``sql/<name>.sql`` file under a ``-- name:`` header;
* :mod:`.migrate`: ``migration_<n>`` scripts applied by ``PRAGMA user_version``;
* :mod:`.writer`: one writer thread with group commit.

The service's SQLite outbox, the receiver's store and the relay's log use all three, so they
open, migrate and write their files the same way.
"""

from __future__ import annotations

from .migrate import TooNew, migrate
from .queries import load_queries, migrations, parse_queries
from .writer import VALUE_ERRORS, BatchOp, GroupCommitWriter, Job, unstorable_values

__all__ = [
    "VALUE_ERRORS",
    "BatchOp",
    "GroupCommitWriter",
    "Job",
    "TooNew",
    "load_queries",
    "migrate",
    "migrations",
    "parse_queries",
    "unstorable_values",
]
