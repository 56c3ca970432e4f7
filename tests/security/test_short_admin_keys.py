"""Vector: guessable admin keys (issue 20, item 4).

``serve`` and ``worker`` refuse to start with an admin key shorter than 16 characters, in one
``Error:`` line that says how to make a good one; and no document or test shows a key anyone
would copy (the old ``change``-``me`` example).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.processes import clean_env, run_cli

ROOT = Path(__file__).resolve().parents[2]
SHORT_KEY = "fifteen-chars-k"


def _run(*args: str, admin_key: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=clean_env(DHAN_POSTBACK_ADMIN_KEY=admin_key))


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_admin_key_shorter_than_16_characters_is_refused(tmp_path: Path, command: str) -> None:
    assert len(SHORT_KEY) == 15
    result = _run(command, "--db", f"sqlite:///{tmp_path / 'db.sqlite'}", admin_key=SHORT_KEY)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "at least 16" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert SHORT_KEY not in result.stderr
    assert not (tmp_path / "db.sqlite").exists()


def test_no_document_or_test_uses_the_old_example_key() -> None:
    old_example = "change" + "-me"
    places = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "tests").rglob("*.py")]
    using = [str(path.relative_to(ROOT)) for path in places if old_example in path.read_text()]
    assert using == []
