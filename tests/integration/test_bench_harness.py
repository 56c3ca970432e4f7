"""The benchmark harness behaves: it lists, runs a scenario into rows, keeps hand-written docs.

Behaviour only: nothing here times anything.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import bench.__main__ as bench_main
import bench.redis_server as redis_server_module
import pytest
from bench import e2e_bench, endpoints_bench, peers_bench
from bench.__main__ import main, scenarios
from bench.dispatch_bench import bare
from bench.harness import BEGIN, END, ROOT, Context, Row, Scenario, run_async, write_markdown
from bench.ingest_bench import CLIENT_ID, batch_body, update_body
from bench.watch import Window, counted, watch

from dhan_postback import payload, signing
from dhan_postback.simulator import Simulator
from tests.helpers.servers import free_port


def test_list_names_every_scenario_b1_to_b9_end_to_end_then_the_peers() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    keys = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert keys == [*(f"B{number}" for number in range(1, 10)), "E2E", "peers"]


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


def test_only_finds_a_scenario_by_its_key_in_any_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_main, "scenarios", lambda: [Scenario("peers", "tiny", tiny_scenario)])
    output = tmp_path / "benchmarks.md"
    assert main(["--quick", "--only", "PEERS", "--output", str(output)]) == 0
    assert "| B0 | tiny |" in output.read_text()


def test_peers_are_skipped_in_one_row_when_redis_server_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    [row] = peers_bench.run(Context(True, tmp_path))
    assert row.ours is None
    assert row.note.startswith("skipped: no redis-server on PATH")


def test_peers_are_skipped_in_one_row_naming_the_missing_extras(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "arq", None)  # find_spec then finds nothing
    [row] = peers_bench.run(Context(True, tmp_path))
    assert row.ours is None
    assert "arq" in row.note and "pip install -e '.[peers]'" in row.note


def test_peers_sign_as_standard_webhooks_so_our_check_accepts_them() -> None:
    pytest.importorskip("standardwebhooks")
    from bench import peer_signing

    body = update_body("order-1").decode()
    headers = peer_signing.signed_headers("msg_1", body)
    assert signing.verify(peer_signing.SECRET, headers, body.encode()) == "msg_1"


def test_redis_server_answers_on_loopback_and_is_gone_after_the_block(tmp_path: Path) -> None:
    if redis_server_module.unavailable_reason():
        pytest.skip(redis_server_module.unavailable_reason() or "")
    with redis_server_module.redis_server(tmp_path) as redis:
        port = int(redis.url.rsplit(":", 1)[1].split("/")[0])
        assert redis.url.startswith("redis://127.0.0.1:")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            connection.sendall(b"PING\r\n")
            assert connection.recv(64) == b"+PONG\r\n"
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


@pytest.mark.parametrize("peer", sorted(peers_bench.PEERS))
def test_a_peer_worker_delivers_every_queued_update_to_the_sink(peer: str, tmp_path: Path) -> None:
    reason = redis_server_module.unavailable_reason()
    missing = peers_bench.missing_extras()
    if reason or missing:
        pytest.skip(reason or f"peers extras missing: {', '.join(missing)}")
    context = Context(True, tmp_path)
    port = free_port()
    sink = f"http://127.0.0.1:{port}"
    with (
        context.spawn(["-m", "bench.sink", "--port", str(port)], health_url=sink + "/stats"),
        redis_server_module.redis_server(tmp_path) as redis,
    ):
        window, queued = peers_bench.run_peer(
            context, peer, redis, sink, 40, update_body("p").decode(), signing.generate_secret()
        )
        assert counted(sink) == 40
    assert window.rate > 0 and queued > 0


def test_free_ports_are_distinct() -> None:
    ports = endpoints_bench.free_ports(500)
    assert len(set(ports)) == 500


def test_b9_layout_gives_each_endpoint_a_port_and_spreads_the_tokens_evenly() -> None:
    ports = endpoints_bench.free_ports(10)
    shape = endpoints_bench.layout(ports, 100)
    by_url: dict[str, list[str]] = {}
    for access in shape.tokens:
        by_url.setdefault(access.url, []).append(access.client_id)
    assert shape.endpoints == 10 and len(by_url) == 10
    assert {url.split(":")[2].split("/")[0] for url in by_url} == {str(port) for port in ports}
    assert all(len(clients) == 10 and len(set(clients)) == 1 for clients in by_url.values())
    assert len({access.token for access in shape.tokens}) == 100


def test_b9_ingest_layout_puts_every_endpoint_on_one_port_by_path() -> None:
    shape = endpoints_bench.layout([9], 40, 20)
    urls = {access.url for access in shape.tokens}
    assert len(urls) == 20 and all(url.startswith("http://127.0.0.1:9/hook/") for url in urls)


def test_watch_gives_the_rate_and_cpu_of_the_posts_the_sink_counted(tmp_path: Path) -> None:
    port = free_port()
    sink = f"http://127.0.0.1:{port}"
    context = Context(True, tmp_path)
    with context.spawn(
        ["-m", "bench.sink", "--port", str(port)], health_url=sink + "/stats"
    ) as server:

        async def both() -> Window:
            watching = asyncio.create_task(watch(sink, 300, [server.pid], start=0, every=0.001))
            await bare(sink + "/hook", 300, 8, update_body("w"))
            return await watching

        window = run_async(both())
    assert window.rate > 0
    assert len(window.cpu_per_delivery) == 1 and window.cpu_per_delivery[0] >= 0


def test_watch_gives_each_meter_per_delivery_after_the_pids_and_how_busy_the_machine_was(
    tmp_path: Path,
) -> None:
    port = free_port()
    sink = f"http://127.0.0.1:{port}"
    with Context(True, tmp_path).spawn(
        ["-m", "bench.sink", "--port", str(port)], health_url=sink + "/stats"
    ) as server:

        async def both() -> Window:
            watching = asyncio.create_task(
                watch(sink, 300, [server.pid], meters=[lambda: 7.0], start=0, every=0.001)
            )
            await bare(sink + "/hook", 300, 8, update_body("m"))
            return await watching

        window = run_async(both())
    assert len(window.cpu_per_delivery) == 2 and window.cpu_per_delivery[1] == 0.0
    assert 0.0 <= window.busy <= 1.0


def test_e2e_streams_hold_whole_orders_of_several_updates_each_in_their_order() -> None:
    streams, orders = e2e_bench.order_streams(300, 8, seed=7)
    sent: dict[str, list[bytes]] = {}
    stream_of: dict[str, set[int]] = {}
    for number, bodies in enumerate(streams):
        for body in bodies:
            order_id = payload.parse(body).to_update().order_id
            sent.setdefault(order_id, []).append(body)
            stream_of.setdefault(order_id, set()).add(number)
    simulator = Simulator(7, clients=(CLIENT_ID,))
    simulated = {
        order.order_id: [payload.dumps(update) for update in order.updates]
        for _ in range(orders // 256)  # as order_streams makes them
        for order in simulator.orders(256)
    }
    assert sent == simulated
    assert all(len(numbers) == 1 for numbers in stream_of.values())
    assert sum(len(bodies) for bodies in streams) >= max(300, 2 * orders)
