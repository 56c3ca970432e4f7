"""``dhan-postback demo``: the whole system on one machine, verified on screen."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bars
from rich.table import Table

from ..demo import DemoOptions, DemoReport, Endpoints, Progress, kinds_covered, run_demo
from ..urlpolicy import loopback_warning

__all__ = ["demo", "report_table"]


def report_table(report: DemoReport) -> Table:
    """The verification table: one row per receiver, failing rows in red."""
    table = Table(
        title="Verification (one row per receiver)",
        title_justify="left",
        caption="dupes: re-sends absorbed by the receiver; book: its final order book equals "
        "the simulator's; ms: submit to receive",
        caption_justify="left",
    )
    for heading in (
        "receiver",
        "submitted",
        "delivered",
        "unique",
        "dupes",
        "out of order",
        "signed",
        "book",
        "p50 ms",
        "p99 ms",
        "",
    ):
        table.add_column(heading, justify="left" if heading == "receiver" else "right")
    for target in report.targets:
        signatures = f"{target.signatures_verified}"
        if target.signatures_rejected:
            signatures += f" ({target.signatures_rejected} rejected)"
        table.add_row(
            target.name,
            str(target.submitted),
            str(target.delivered),
            str(target.unique_received),
            str(target.duplicates_absorbed),
            str(target.out_of_order),
            signatures,
            "=" if target.book_matches else f"{target.book_mismatches} differ",
            f"{target.latency_p50_ms:,.0f}",
            f"{target.latency_p99_ms:,.0f}",
            "[green]ok[/green]" if target.ok else "[bold red]FAIL[/bold red]",
            style=None if target.ok else "red",
        )
    return table


@click.command()
@click.option("--orders", default=250, show_default=True, help="Orders to simulate.")
@click.option("--seed", default=7, show_default=True, help="Simulator seed.")
@click.option(
    "--rate",
    default=400.0,
    show_default=True,
    help="Updates submitted per second (0: as fast as the service takes them).",
)
@click.option(
    "--chaos",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 0.9),
    help="Fraction of postbacks the receivers fail (5xx, timeouts, resets, lost answers).",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Leave everything up after the checks and print where to look.",
)
@click.option(
    "--dir",
    "directory",
    default="demo-data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the demo's databases and logs (emptied at every run).",
)
def demo(
    orders: int, seed: int, rate: float, chaos: float, keep_running: bool, directory: Path
) -> None:
    """Run service, dispatcher, receivers and simulator on this machine, and verify."""
    # Logs and CI have no terminal width; give the verification table room there.
    console = Console() if sys.stdout.isatty() else Console(width=120)
    options = DemoOptions(orders=orders, seed=seed, rate=rate, chaos=chaos, directory=directory)
    console.print(
        "[bold]dhan-postback demo[/bold]: simulated orders -> postback service -> receivers, "
        f"all on this machine, data in {directory}/"
    )
    console.print(
        f"[yellow]sandbox:[/yellow] {loopback_warning()}. The demo's receivers listen on "
        "127.0.0.1, so its service runs with --allow-loopback."
    )
    bars = Bars(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    submitted = bars.add_task("submitted", total=None, note="")
    delivered = bars.add_task("delivered", total=None, note="")

    def show(progress: Progress) -> None:
        bars.update(submitted, total=progress.updates_total, completed=progress.submitted)
        bars.update(
            delivered,
            total=progress.deliveries_total or None,
            completed=progress.delivered,
            note=(
                f"{progress.rate:,.0f}/s  retried {progress.retried}  "
                f"in flight {progress.in_flight}"
            ),
        )

    def ready(endpoints: Endpoints) -> None:
        console.print(
            f"service {endpoints.service}  receivers {len(endpoints.receivers)}  "
            f"clients {len(endpoints.tokens)} + 1 partner"
        )
        if keep_running:
            _print_endpoints(console, endpoints)

    async def wait_forever() -> None:
        console.print("[bold]Still running.[/bold] Press Ctrl+C to stop.")
        await asyncio.Event().wait()

    try:
        with bars:
            report = asyncio.run(
                run_demo(
                    options,
                    on_progress=show,
                    on_ready=ready,
                    keep_running=wait_forever if keep_running else None,
                )
            )
    except KeyboardInterrupt:
        console.print("stopped")
        return
    except (RuntimeError, TimeoutError, FileExistsError) as exc:
        console.print(f"[bold red]demo failed:[/bold red] {exc}")
        sys.exit(1)
    console.print(
        f"{report.orders} orders ({len(report.kinds)} kinds: {', '.join(kinds_covered(report))}), "
        f"{report.updates} updates, {sum(t.submitted for t in report.targets)} deliveries, "
        f"{report.retried} failed attempts retried, in {report.elapsed:.1f} s"
    )
    if report.chaos_injected:
        injected = ", ".join(
            f"{name} {count}" for name, count in sorted(report.chaos_injected.items())
        )
        console.print(f"chaos injected: {injected}")
    console.print(report_table(report))
    if report.timed_out:
        console.print("[bold red]Not every delivery arrived before the deadline.[/bold red]")
    if report.ok:
        console.print(
            "[bold green]Every update arrived exactly once per receiver, in order, signed, "
            "and every order book matches the simulator.[/bold green]"
        )
    sys.exit(0 if report.ok else 1)


def _print_endpoints(console: Console, endpoints: Endpoints) -> None:
    console.print(f"  API            {endpoints.service}/v2/deliveries  (header admin-key)")
    console.print(f"  dashboard      {endpoints.service}/dashboard")
    console.print(f"  metrics        {endpoints.service}/metrics")
    console.print(f"  OpenAPI        {endpoints.service}/openapi.json")
    console.print(f"  admin key      {endpoints.admin_key}")
    for name, url in endpoints.receivers.items():
        console.print(f"  receiver       {name}: {url}")
