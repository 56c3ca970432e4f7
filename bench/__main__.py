"""``python -m bench``: run the scenarios, print the table, write ``docs/benchmarks.md``.

    python -m bench                 # every scenario, full size (about 11 minutes)
    python -m bench --quick         # smaller runs (under 4 minutes)
    python -m bench --only B1 B4    # some of them
    python -m bench --list          # what there is
    python -m bench --only peers    # Celery and arq on Redis doing our job (the peers extras)

Everything runs on loopback; servers run in their own processes. ``docs/benchmarks.md`` is
rewritten (its generated section) only by a full run of every scenario; ``--output FILE``
writes any run's table to FILE, ``--no-write`` writes nothing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import logging
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import structlog
from rich.console import Console

from bench.harness import ROOT, Context, Row, Scenario, load_average, render, write_markdown

MODULES = [
    "bench.dispatch_bench",
    "bench.latency_bench",
    "bench.ingest_bench",
    "bench.receiver_bench",
    "bench.memory_bench",
    "bench.isolation_bench",
    "bench.pg_bench",
    "bench.retention_bench",
    "bench.endpoints_bench",
    "bench.e2e_bench",
    "bench.peers_bench",
]


def scenarios() -> list[Scenario]:
    """Every scenario, in order (B1 ... B9, end to end, then the peers)."""
    return [importlib.import_module(name).SCENARIO for name in MODULES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (under 4 minutes)")
    parser.add_argument("--only", nargs="+", metavar="KEY", help="run these scenarios only")
    parser.add_argument("--list", action="store_true", help="list the scenarios and stop")
    parser.add_argument("--output", type=Path, help="write the table here (any run)")
    parser.add_argument("--no-write", action="store_true", help="do not write the markdown")
    options = parser.parse_args(argv)
    console = Console()
    chosen = scenarios()
    if options.list:
        for scenario in chosen:
            console.print(f"{scenario.key}  {scenario.title}")
        return 0
    if options.only:
        wanted = {key.upper() for key in options.only}
        unknown = wanted - {scenario.key.upper() for scenario in chosen}
        if unknown:
            parser.error(f"no such scenario: {', '.join(sorted(unknown))}")
        chosen = [scenario for scenario in chosen if scenario.key.upper() in wanted]
    started = datetime.datetime.now(datetime.UTC)
    clock = time.monotonic()
    loads = [load_average()]
    rows: list[Row] = []
    failed = False
    console.print(f"load average {loads[0]}; {'quick' if options.quick else 'full'} run")
    with tempfile.TemporaryDirectory(prefix="dhan-bench-") as workdir:
        context = Context(options.quick, Path(workdir))
        for scenario in chosen:
            console.print(f"[bold]{scenario.key}[/bold] {scenario.title} ...")
            scenario_clock = time.monotonic()
            try:
                new_rows = scenario.run(context)
            except Exception:
                failed = True
                console.print(traceback.format_exc(), markup=False)
                new_rows = [Row(scenario.key, "failed (see the output)", None, None, "")]
            rows.extend(new_rows)
            loads.append(load_average())
            render(new_rows, console)
            console.print(f"  {time.monotonic() - scenario_clock:.0f} s, load average {loads[-1]}")
    elapsed = time.monotonic() - clock
    render(rows, console, title=f"dhan-postback benchmarks ({elapsed:.0f} s)")
    output = options.output
    if output is None and not options.quick and not options.only:
        output = ROOT / "docs" / "benchmarks.md"
    if output is not None and not options.no_write:
        command = "python -m bench" + (" --quick" if options.quick else "")
        command += f" --only {' '.join(options.only)}" if options.only else ""
        write_markdown(output, rows, command=command, started=started, elapsed=elapsed, loads=loads)
        console.print(f"wrote {output}")
    return 1 if failed else 0


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so every server this run started is stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # the in-process dispatcher (B1) logs its start and stop: not wanted between table rows
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sys.exit(main())
