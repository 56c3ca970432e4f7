"""`dhan-postback relay`: its flags, variables and refusals (the running relay is tested in
tests/integration/test_relay_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dhan_postback.cli import main
from dhan_postback.cli.relay import render_status, signing_secret_beside, token_refused_message
from dhan_postback.relay import Login, RelayStatus, TokenRefused

SECRET = "eyJ-very-secret-token"


@pytest.fixture(autouse=True)
def _in_a_scratch_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's default files (relay.db, relay.whsec) land in the test's own folder."""
    monkeypatch.chdir(tmp_path)


def _invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["relay", *args], env=env or {})
    return result.exit_code, result.output


def test_help_names_every_variable_a_secret_can_come_from() -> None:
    code, output = _invoke("--help")
    assert code == 0
    for variable in ("ACCESS_TOKEN", "PARTNER_SECRET", "SERVICE_TOKEN", "CLIENT_ID"):
        assert f"DHAN_POSTBACK_RELAY_{variable}" in output
    assert "wss://api-order-update.dhan.co" in "".join(output.split())


def test_without_credentials_it_says_what_to_give() -> None:
    code, output = _invoke("--service-url", "http://127.0.0.1:1", "--service-token", "t")
    assert code == 2
    assert "DHAN_POSTBACK_RELAY_ACCESS_TOKEN" in output


def test_a_partner_login_needs_its_secret() -> None:
    code, output = _invoke(
        "--partner-id", "p1", "--service-url", "http://x", "--service-token", "t"
    )
    assert code == 2 and "--partner-secret" in output


def test_a_service_url_and_a_postback_url_together_are_refused() -> None:
    code, output = _invoke(
        "--client-id",
        "1000000001",
        "--service-url",
        "http://127.0.0.1:1",
        "--service-token",
        SECRET,
        "--postback-url",
        "https://example.com/hook",
        env={"DHAN_POSTBACK_RELAY_ACCESS_TOKEN": SECRET},
    )
    assert code == 2 and "--postback-url is for the embedded service" in output
    assert SECRET not in output


def test_a_loopback_postback_url_is_refused_without_the_sandbox_switch(tmp_path: Path) -> None:
    code, output = _invoke(
        "--client-id",
        "1000000001",
        "--postback-url",
        "http://127.0.0.1:8000/hook",
        env={"DHAN_POSTBACK_RELAY_ACCESS_TOKEN": SECRET},
    )
    assert code == 2 and "refused" in output
    assert list(tmp_path.iterdir()) == []  # refused before any file was made


def test_a_malformed_signing_secret_is_a_usage_error() -> None:
    code, output = _invoke(
        "--client-id",
        "1000000001",
        "--postback-url",
        "https://example.com/hook",
        "--signing-secret",
        "whsec_not base64!",
        env={"DHAN_POSTBACK_RELAY_ACCESS_TOKEN": SECRET},
    )
    assert code == 2 and "--signing-secret" in output and "whsec_not" not in output


def test_a_websocket_url_must_be_one() -> None:
    code, output = _invoke("--ws-url", "https://api-order-update.dhan.co")
    assert code == 2 and "--ws-url must start with wss://" in output


def test_an_unreadable_duration_is_a_usage_error() -> None:
    code, output = _invoke("--idle-timeout", "soon")
    assert code == 2 and "not a duration" in output


def _status(**changes: object) -> RelayStatus:
    base: dict[str, object] = {
        "connected": True,
        "connections": 1,
        "disconnects": 0,
        "link_error": None,
        "sink_error": None,
        "frames": 10,
        "relayed": 8,
        "duplicates": 2,
        "other_frames": 0,
        "repaired_frames": 0,
        "dead_letters": 0,
        "refused": 0,
        "warnings": 0,
        "pending": 0,
        "last_update_time": "2025-01-15 10:22:01",
        "last_relayed_at": 100.0,
    }
    base.update(changes)
    return RelayStatus(**base)  # type: ignore[arg-type]


def test_the_status_line_shows_link_counts_and_last_update() -> None:
    line = render_status(_status(), now=103.0).plain
    assert line.startswith("● connected")
    assert "relayed 8" in line and "duplicates skipped 2" in line
    assert "last update 2025-01-15 10:22:01, 3s ago" in line


def test_the_status_line_says_why_it_is_disconnected_and_what_the_service_says() -> None:
    line = render_status(
        _status(connected=False, link_error="timed out", sink_error="HTTP 503", dead_letters=1)
    ).plain
    assert "○ disconnected (timed out)" in line
    assert "dead letters 1" in line and "service: HTTP 503" in line


def test_the_generated_signing_secret_is_kept_for_the_owner_only_and_reused(
    tmp_path: Path,
) -> None:
    secret, where = signing_secret_beside(str(tmp_path / "relay.db"))
    kept = tmp_path / "relay.whsec"
    assert secret.startswith("whsec_") and str(kept) in where
    assert kept.stat().st_mode & 0o777 == 0o600
    assert signing_secret_beside(str(tmp_path / "relay.db"))[0] == secret


def test_help_shows_the_order_book_flags_and_their_defaults() -> None:
    code, output = _invoke("--help")
    flat = "".join(output.split())
    assert code == 0
    assert "--api-url" in output and "https://api.dhan.co/v2" in flat
    assert "--reconcile-interval" in output and "DHAN_POSTBACK_RELAY_RECONCILE_INTERVAL" in output


def test_an_api_url_must_be_http() -> None:
    code, output = _invoke("--api-url", "ftp://api.dhan.co/v2")
    assert code == 2 and "--api-url must start with https://" in output


def test_an_unreadable_reconcile_interval_is_a_usage_error() -> None:
    code, output = _invoke("--reconcile-interval", "often")
    assert code == 2 and "not a duration" in output


def test_a_refused_token_is_one_line_saying_how_to_pass_a_new_one() -> None:
    login = Login.individual("1000000001", SECRET)
    line = token_refused_message(login, TokenRefused("the order book answered HTTP 401 DH-901"))
    assert "\n" not in line and SECRET not in line
    assert "expired" in line and "--access-token or DHAN_POSTBACK_RELAY_ACCESS_TOKEN" in line


def test_the_status_line_shows_what_came_from_the_order_book_and_its_trouble() -> None:
    line = render_status(_status(reconciled=3, reconcile_error="rate limited (HTTP 429)")).plain
    assert "relayed 8 (3 from the order book)" in line
    assert "order book: rate limited (HTTP 429)" in line
