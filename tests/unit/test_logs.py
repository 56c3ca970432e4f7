from __future__ import annotations

import json

import pytest
import structlog

from dhan_postback.logs import configure_logging


@pytest.fixture(autouse=True)
def _restore_structlog() -> object:
    yield
    structlog.reset_defaults()


def _log_an_exception_with_a_secret_in_a_local() -> None:
    secret = "whsec_must-not-appear"
    try:
        raise ValueError("bad thing")
    except ValueError:
        structlog.get_logger("test").exception("failed", length=len(secret))


def test_json_logs_are_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True)
    structlog.get_logger("test").info("hello", answer=42)
    line = capsys.readouterr().err.strip()
    assert json.loads(line)["answer"] == 42


def test_json_tracebacks_do_not_show_local_variables(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True)
    _log_an_exception_with_a_secret_in_a_local()
    err = capsys.readouterr().err
    assert "ValueError" in err
    assert "must-not-appear" not in err


def test_console_tracebacks_do_not_show_local_variables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(json=False)
    _log_an_exception_with_a_secret_in_a_local()
    err = capsys.readouterr().err
    assert "ValueError" in err
    assert "must-not-appear" not in err
