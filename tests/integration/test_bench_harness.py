"""The benchmark harness behaves: it lists, runs a scenario into rows, keeps hand-written docs.

Behaviour only: nothing here times anything.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import bench.__main__ as bench_main
import pytest
from bench.__main__ import main, scenarios
from bench.dispatch_bench import bare
from bench.harness import BEGIN, END, ROOT, Context, Row, Scenario, run_async, write_markdown
from bench.ingest_bench import batch_body, update_body

from tests.helpers.servers import free_port


def test_list_names_every_scenario_b1_to_b8() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    keys = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert keys == [f"B{number}" for number in range(1, 9)]


def test_scenario_keys_are_unique() -> None:
    keys = [scenario.key for scenario in scenarios()]
    assert len(keys) == len(set(keys))


def test_unknown_scenario_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--only", "B99", "--no-write"])
    assert exited.value.code == 2


def tiny_scenario(ctx: Context) -> list[Row]:
    """50 bare POSTs to a sink in its own process: the harness end to end, in a second."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with ctx.spawn(["-m", "bench.sink", "--port", str(port)], health_url=url + "/stats"):
        wall, _ = run_async(bare(url + "/hook", 50, 4, update_body("tiny")))
    return [Row("B0", "tiny", 50 / wall, None, "/s", note="harness test")]


def test_a_scenario_run_produces_its_row_in_the_table_and_the_markdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_main, "scenarios", lambda: [Scenario("B0", "tiny", tiny_scenario)])
    output = tmp_path / "benchmarks.md"
    assert main(["--quick", "--output", str(output)]) == 0
    assert "tiny" in capsys.readouterr().out
    assert "| B0 | tiny |" in output.read_text()


def test_ratio_is_ours_over_baseline_and_absent_without_baseline() -> None:
    assert Row("B0", "x", 50.0, 100.0, "/s").ratio == 0.5
    assert Row("B0", "x", 50.0, None, "/s").ratio is None
    assert Row("B0", "x", None, 100.0, "/s").ratio is None


def test_markdown_replaces_only_the_generated_section(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text(f"# Benchmarks\n\nintro\n\n{BEGIN}\nold table\n{END}\n\n## Analysis\nmine\n")
    row = Row("B1", "durable delivery", 800.0, 1000.0, "/s", target=">= 0.8x", met=True)
    write_markdown(
        path,
        [row],
        command="python -m bench",
        started=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        elapsed=1.0,
        loads=["0.10 0.20 0.30"],
    )
    text = path.read_text()
    assert "old table" not in text
    assert "intro" in text and "## Analysis\nmine" in text
    assert "| B1 | durable delivery | 800 /s | 1,000 /s | 0.80x | >= 0.8x | yes |" in text
    assert "python -m bench" in text and "cores" in text and "0.10 0.20 0.30" in text


def test_sink_records_arrivals_by_order_id(tmp_path: Path) -> None:
    port = free_port()
    context = Context(True, tmp_path)
    sink = f"http://127.0.0.1:{port}"
    with context.spawn(
        ["-m", "bench.sink", "--port", str(port), "--record"], health_url=sink + "/stats"
    ):
        request = urllib.request.Request(sink + "/hook", data=update_body("order-7"))
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(sink + "/arrivals", timeout=5) as response:
            assert list(json.load(response)) == ["order-7"]
        with urllib.request.urlopen(sink + "/stats", timeout=5) as response:
            assert json.load(response) == {"count": 1}


def test_batch_body_is_a_json_array_of_the_given_orders() -> None:
    updates = json.loads(batch_body(["a", "b"]))
    assert [update["orderId"] for update in updates] == ["a", "b"]
    assert json.loads(update_body("c", "1000000142"))["dhanClientId"] == "1000000142"
