"""Files only their owner may read: databases hold signing secrets, payloads and sessions.

SQLite creates a database with the process's umask (usually 0644: readable by every user of
the machine) and its ``-wal`` and ``-shm`` files with the database file's own mode. So the
database file is created here first, with mode 0600, before SQLite opens it; the files SQLite
adds beside it then inherit that mode. An existing file is left as its owner set it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["create_private"]


def create_private(path: str | os.PathLike[str]) -> None:
    """Create ``path`` empty with mode 0600 (and its directory) unless it exists."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
