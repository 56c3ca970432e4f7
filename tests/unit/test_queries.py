from __future__ import annotations

import re
from pathlib import Path

import pytest

from dhan_postback.service.store import sqlite as sqlite_store
from dhan_postback.service.store.queries import load_queries, migrations, parse_queries


def test_queries_are_read_by_name_with_their_sql() -> None:
    text = "-- preamble\n-- name: first\nSELECT 1;\n\n-- name: second --\nSELECT 2;\n"
    assert dict(parse_queries(text)) == {"first": "SELECT 1;", "second": "SELECT 2;"}


def test_a_name_used_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_migrations_come_in_order_and_without_gaps() -> None:
    queries = parse_queries("-- name: migration_2\nB;\n-- name: migration_1\nA;\n")
    assert migrations(queries) == [(1, "A;"), (2, "B;")]
    with pytest.raises(ValueError, match="without gaps"):
        migrations(parse_queries("-- name: migration_2\nB;\n"))


def test_every_query_the_sqlite_store_names_is_in_its_sql_file() -> None:
    source = Path(sqlite_store.__file__).read_text()
    named = set(re.findall(r'_QUERIES\["(\w+)"\]', source))
    named |= set(re.findall(r'_run(?:_many)?\(\s*conn,\s*"(\w+)"', source))
    named |= set(re.findall(r'_write_rows\("(\w+)"', source))
    queries = load_queries("sqlite")
    assert named - set(queries) == set()
    assert "migration_1" in queries
