"""A throwaway PostgreSQL server for the tests and benchmarks, started and stopped by them.

The server lives in a temporary folder (data directory, unix socket, log), listens on a free
loopback port, runs with ``fsync=off`` (nothing here needs to survive a power cut) and is
stopped at the end of the session. When the process is root, PostgreSQL refuses to run as
root, so the binaries run as the ``postgres`` user and the folder belongs to it.

``DHAN_POSTBACK_TEST_PG_URL=postgresql://user@host/db`` uses an existing database instead:
each test then gets its own fresh schema in it (the user needs ``CREATE`` on that database);
the schemas are dropped at the end.

When neither is available the PostgreSQL tests skip with a loud reason, except under CI
(``CI`` set), where a missing server is a failure: ``make test`` installs the ``postgresql``
package when it can, so a skip there would hide a hole.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from bench.servers import free_port

__all__ = ["ENV_URL", "PostgresServer", "find_bin_dir", "unavailable_reason"]

ENV_URL = "DHAN_POSTBACK_TEST_PG_URL"
_SERVER_USER = "postgres"


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb and pg_ctl, or PATH's."""

    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parent.parent.name
        return tuple(int(p) for p in part.split(".") if p.isdigit())

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True)
    for initdb in candidates:
        bin_dir = Path(initdb).parent
        if (bin_dir / "pg_ctl").exists():
            return bin_dir
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    return None


def unavailable_reason() -> str | None:
    """Why no PostgreSQL can be had for the tests, or None when one can."""
    if os.environ.get(ENV_URL):
        return None
    if find_bin_dir() is None:
        return (
            "PostgreSQL TESTS SKIPPED: no initdb/pg_ctl in /usr/lib/postgresql/*/bin or on PATH "
            f"and {ENV_URL} is not set. Install the 'postgresql' package (make test does this "
            "as root) or point the variable at a server."
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_SERVER_USER)
        except KeyError:
            return "PostgreSQL TESTS SKIPPED: running as root and there is no 'postgres' user"
    return None


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, or an existing server from the env."""

    def __init__(self, *, durable: bool = False) -> None:
        """``durable`` keeps PostgreSQL's default fsync settings (for benchmarks)."""
        self._durable = durable
        self._existing = os.environ.get(ENV_URL)
        self._folder: Path | None = None
        self._bin_dir = find_bin_dir()
        self._names = itertools.count(1)
        self._created: list[str] = []
        self._shared_url = ""
        self.port = 0
        self.admin_url = self._existing or ""

    # Lifecycle ----------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        if self._existing:
            return self
        if self._bin_dir is None:
            raise RuntimeError(unavailable_reason())
        self._folder = Path(tempfile.mkdtemp(prefix="dhan-postback-pg-"))
        data, sockets = self._folder / "data", self._folder / "sockets"
        sockets.mkdir()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(_SERVER_USER)
            for path in (self._folder, sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            ["-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        )
        self.port = free_port()
        settings = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={sockets}",
            "-c max_connections=200",
            "-c shared_buffers=128MB",
        ]
        if not self._durable:
            settings += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        options = " ".join(settings)
        log = self._folder / "server.log"
        self._run("pg_ctl", ["-D", str(data), "-l", str(log), "-o", options, "-w", "start"])
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        return self

    def stop(self) -> None:
        if self._existing:
            self._drop_created()
            return
        if self._folder is None:
            return
        data = self._folder / "data"
        try:
            self._run("pg_ctl", ["-D", str(data), "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def cpu_seconds(self) -> float | None:
        """CPU seconds the server has used so far, every process of it (the postmaster, its
        live backends, and the ones that have exited); None for an existing server."""
        if self._folder is None:
            return None
        postmaster = (self._folder / "data" / "postmaster.pid").read_text().split()[0]
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            if stat.parent.name == postmaster:  # with its children that have exited
                total += sum(int(value) for value in fields[11:15])
            elif fields[1] == postmaster:
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def _run(self, program: str, args: Sequence[str]) -> None:
        assert self._bin_dir is not None
        command = [str(self._bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", _SERVER_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr or result.stdout}"
            )

    # Databases ----------------------------------------------------------------------------
    def new_database(self) -> str:
        """The URL of a fresh, empty database of one test's own.

        Cheaply made: every test gets its own schema in one shared database, named first on
        the URL's search_path, so its tables, sequences and schema_version are its own.
        (A CREATE DATABASE per test costs a tenth to a third of a second; a schema, a
        millisecond.) Advisory locks and NOTIFY channels are per database, so they are
        shared, which is harmless for tests that run one after another.
        """
        if not self._shared_url:
            self._shared_url = self._create_shared_database()
        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self._shared_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        self._created.append(name)
        return _with_search_path(self._shared_url, name)

    def _create_shared_database(self) -> str:
        if self._existing:
            return self._existing
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE dhan_test")
        return _with_database(self.admin_url, "dhan_test")

    def _drop_created(self) -> None:
        if not self._created:
            return
        with psycopg.connect(self._shared_url, autocommit=True) as conn:
            for name in self._created:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )
        self._created.clear()


def _with_database(url: str, name: str) -> str:
    """``url`` with its database name replaced by ``name`` (query options kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _with_search_path(url: str, schema: str) -> str:
    """``url`` with ``schema`` first on the search_path of every connection made with it."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))
