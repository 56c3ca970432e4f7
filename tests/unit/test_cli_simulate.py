from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter

from click.testing import CliRunner, Result

from dhan_postback import payload
from dhan_postback.cli import main
from dhan_postback.simulator import OrderKind


def simulate(*args: str) -> Result:
    result = CliRunner().invoke(main, ["simulate", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def lines(result: Result) -> list[bytes]:
    return result.stdout_bytes.splitlines()


def summarised_kinds(result: Result) -> dict[str, int]:
    listed = result.stderr.split(": ", 1)[1]
    return {kind: int(count) for kind, count in re.findall(r"([A-Z_]+) (\d+)", listed)}


def test_simulate_prints_one_valid_payload_per_line_in_documented_field_order() -> None:
    result = simulate("--orders", "20", "--seed", "7")
    assert lines(result)
    for line in lines(result):
        decoded = json.loads(line)
        assert tuple(decoded) == payload.FIELDS
        update = payload.validate_strict(decoded)
        assert payload.dumps(update) == line


def test_simulate_covers_at_least_eight_order_kinds_and_says_so_on_stderr() -> None:
    result = simulate("--orders", "20", "--seed", "7")
    kinds = summarised_kinds(result)
    assert len(kinds) >= 8
    assert set(kinds) <= set(OrderKind)
    assert sum(kinds.values()) == 20
    assert result.stderr.startswith(f"20 orders, {len(lines(result))} updates")


def test_simulate_is_identical_for_the_same_seed_and_differs_for_another() -> None:
    first = simulate("--orders", "20", "--seed", "7").stdout_bytes
    assert simulate("--orders", "20", "--seed", "7").stdout_bytes == first
    assert simulate("--orders", "20", "--seed", "8").stdout_bytes != first


def test_the_installed_command_prints_the_same_bytes() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "dhan_postback", "simulate", "--orders", "20", "--seed", "7"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert completed.stdout == simulate("--orders", "20", "--seed", "7").stdout_bytes


def test_simulate_uses_only_the_given_clients() -> None:
    result = simulate("--orders", "30", "--clients", "1100000001, 1100000002")
    clients = {json.loads(line)["dhanClientId"] for line in lines(result)}
    assert clients == {"1100000001", "1100000002"}


def test_simulate_refuses_an_empty_client_list() -> None:
    result = CliRunner().invoke(main, ["simulate", "--clients", " , "])
    assert result.exit_code == 2
    assert "client id" in result.output


def test_simulate_uses_the_given_trading_date() -> None:
    result = simulate("--orders", "5", "--date", "2025-03-04")
    assert all(json.loads(line)["updateTime"].startswith("2025-03-04") for line in lines(result))


def test_quirks_produce_the_docs_hole_and_duplicates() -> None:
    result = simulate("--orders", "100", "--seed", "7", "--quirks")
    bodies = lines(result)
    assert any(b'"legName": ,' in body for body in bodies)
    assert max(Counter(bodies).values()) >= 2
    assert all(payload.parse(body).order_id for body in bodies)


def test_quirks_lose_no_update() -> None:
    plain = set(lines(simulate("--orders", "100", "--seed", "7")))
    quirky = {
        payload.dumps(payload.parse(body).to_update())
        for body in lines(simulate("--orders", "100", "--seed", "7", "--quirks"))
    }
    assert quirky == plain


def test_a_paced_run_prints_the_same_lines() -> None:
    paced = simulate("--orders", "3", "--seed", "7", "--rate", "1000")
    assert paced.stdout_bytes == simulate("--orders", "3", "--seed", "7").stdout_bytes


def test_zero_orders_print_nothing() -> None:
    result = simulate("--orders", "0")
    assert result.stdout_bytes == b""
    assert result.stderr.startswith("0 orders, 0 updates")


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    command = [sys.executable, "-m", "dhan_postback", "simulate", "--orders", "3000"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        errors = process.stderr.read()
        process.wait(timeout=60)
    assert json.loads(first)["orderId"]
    assert b"Traceback" not in errors
    assert process.returncode == 1
