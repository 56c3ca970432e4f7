"""``dhan-postback demo`` and ``dhan-postback send`` as a user runs them: real processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dhan_postback.cli.demo import report_table
from dhan_postback.demo import DemoReport, TargetReport
from dhan_postback.signing import generate_secret
from tests.helpers.processes import ServerProcess, run_cli
from tests.helpers.servers import free_port


def test_demo_verifies_every_delivery_and_exits_zero(tmp_path: Path) -> None:
    result = run_cli("demo", "--orders", "40", "--rate", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Every update arrived exactly once per receiver, in order" in result.stdout
    assert "FAIL" not in result.stdout
    assert (tmp_path / "demo-data" / "service.db").exists()


def test_demo_with_chaos_shows_retries_and_still_passes(tmp_path: Path) -> None:
    result = run_cli("demo", "--orders", "30", "--rate", "0", "--chaos", "0.3", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "chaos injected:" in result.stdout
    assert " 0 failed attempts retried" not in result.stdout


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "demo-data").mkdir()
    (tmp_path / "demo-data" / "precious.txt").write_text("keep me")
    result = run_cli("demo", "--orders", "5", cwd=tmp_path)
    assert result.returncode == 1
    assert "Error: the demo failed: demo-data exists and was not made by the demo" in result.stderr
    assert (tmp_path / "demo-data" / "precious.txt").exists()


def test_the_report_marks_a_failing_receiver() -> None:
    good = TargetReport("1000000001", 10, 10, 10, 0, 0, 10, 0, True, 0, 1.0, 2.0)
    late = TargetReport("partner", 10, 9, 9, 0, 1, 9, 0, False, 1, 1.0, 2.0)
    report = DemoReport([good, late], 5, 10, {}, 0, {}, 1.0, timed_out=False)
    assert not report.ok
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(report_table(report))
    text = console.export_text()
    assert text.count("FAIL") == 1
    assert "1 differ" in text


@pytest.fixture
def receiver(tmp_path: Path) -> tuple[str, str, Path]:
    secret = generate_secret()
    port = free_port()
    db = tmp_path / "receiver.db"
    process = ServerProcess(
        ["receive", "--port", str(port), "--db", str(db), "--quiet"],
        env={"DHAN_POSTBACK_RECEIVER_SECRET": secret},
        health_url=f"http://127.0.0.1:{port}/healthz",
    )
    with process:
        yield f"http://127.0.0.1:{port}/", secret, db


def test_send_to_receive_is_a_verified_delivery(
    receiver: tuple[str, str, Path], tmp_path: Path
) -> None:
    url, secret, db = receiver
    result = run_cli("send", url, "--secret", secret, "--allow-loopback", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "delivered" in result.stderr
    book = run_cli("orders", "--db", str(db), cwd=tmp_path)
    assert "TRADED" in book.stdout


def test_send_with_the_wrong_secret_is_refused_by_the_receiver(
    receiver: tuple[str, str, Path], tmp_path: Path
) -> None:
    url, _, _ = receiver
    result = run_cli("send", url, "--secret", generate_secret(), "--allow-loopback", cwd=tmp_path)
    assert result.returncode == 1
    assert "401" in result.stdout


def test_send_refuses_loopback_without_the_sandbox_switch(tmp_path: Path) -> None:
    result = run_cli("send", "http://127.0.0.1:8001/", cwd=tmp_path)
    assert result.returncode == 2
    assert "loopback" in result.stderr
