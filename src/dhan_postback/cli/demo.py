"""``dhan-postback demo``: the whole system on one machine, verified on screen."""

from __future__ import annotations

import asyncio
import sys

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bars
from rich.table import Table

from ..demo import DemoOptions, DemoReport, Endpoints, Progress, kinds_covered, run_demo
from ..settings import DemoSettings
from ..urlpolicy import loopback_warning
from .options import settings_options
from .running import run, stop_event

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
@settings_options(DemoSettings)
def demo(settings: DemoSettings) -> None:
    """Run service, dispatcher, receivers and simulator on this machine, and verify.

    With --keep-running, the verification table is printed first and everything stays up
    (the API, /dashboard and /metrics) until Ctrl+C or SIGTERM, which stop all of it.

    \b
    Examples:
      dhan-postback demo
      dhan-postback demo --chaos 0.3 --keep-running
    """
    # Logs and CI have no terminal width; give the verification table room there.
    console = Console() if sys.stdout.isatty() else Console(width=120)
    directory = settings.dir
    options = DemoOptions(
        orders=settings.orders,
        seed=settings.seed,
        rate=settings.rate,
        chaos=settings.chaos,
        directory=directory,
    )
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
    endpoints: list[Endpoints] = []

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

    def ready(found: Endpoints) -> None:
        endpoints.append(found)
        console.print(
            f"service {found.service}  receivers {len(found.receivers)}  "
            f"clients {len(found.tokens)} + 1 partner"
        )

    async def main() -> DemoReport | None:
        stop = stop_event()
        checked = asyncio.Event()

        async def keep_running(report: DemoReport) -> None:
            checked.set()
            bars.stop()
            _print_report(console, report)
            _print_endpoints(console, endpoints[0])
            console.print("[bold]Still running.[/bold] Press Ctrl+C (or send SIGTERM) to stop.")
            await stop.wait()

        demo_task = asyncio.create_task(
            run_demo(
                options,
                on_progress=show,
                on_ready=ready,
                keep_running=keep_running if settings.keep_running else None,
            )
        )
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({demo_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not demo_task.done() and not checked.is_set():
            demo_task.cancel()  # stopped before the checks: stop everything it started
        stopped.cancel()
        try:
            return await demo_task
        except asyncio.CancelledError:
            return None

    try:
        with bars:
            report = run(main())
    except (RuntimeError, TimeoutError, FileExistsError) as exc:
        raise click.ClickException(f"the demo failed: {exc}") from None
    if report is None:
        console.print("stopped")
        sys.exit(130)
    if not settings.keep_running:
        _print_report(console, report)
    sys.exit(0 if report.ok else 1)


def _print_report(console: Console, report: DemoReport) -> None:
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


def _print_endpoints(console: Console, endpoints: Endpoints) -> None:
    console.print(f"  API            {endpoints.service}/v2/deliveries  (header admin-key)")
    console.print(f"  dashboard      {endpoints.service}/dashboard")
    console.print(f"  metrics        {endpoints.service}/metrics")
    console.print(f"  OpenAPI        {endpoints.service}/openapi.json")
    console.print(f"  admin key      {endpoints.admin_key}")
    for name, url in endpoints.receivers.items():
        console.print(f"  receiver       {name}: {url}")
