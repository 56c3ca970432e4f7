"""``dhan-postback simulate``: a trading day's postbacks as JSON lines on standard output.

Each line is exactly the body the broker would POST (``payload.dumps``), so the output can be
piped into anything that sends, stores or checks postbacks. The same ``--seed`` gives the same
bytes. A summary of the order kinds goes to standard error, out of the way of the data.
"""

from __future__ import annotations

import collections
import os
import random
import sys
import time
from collections.abc import Iterable
from datetime import date, datetime
from typing import BinaryIO

import click

from ..payload import dumps
from ..simulator import DEFAULT_CLIENTS, DEFAULT_DATE, SimulatedOrder, Simulator, interleave
from ..simulator import with_quirks as add_quirks

__all__ = ["simulate"]

QUIRK_RATES = {"duplicates": 0.05, "reorder": 0.05, "drop_leg_name": 0.1}
"""How often ``--quirks`` repeats a body, delays one, or writes the docs' ``"legName": ,``."""


def _client_list(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    clients = tuple(part.strip() for part in value.split(",") if part.strip())
    if not clients:
        raise click.BadParameter("give at least one client id, e.g. 1000000001,1000000002")
    return clients


@click.command()
@click.option(
    "--orders",
    "count",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="How many orders to simulate (each posts several updates).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed; the same seed prints the same bytes.",
)
@click.option(
    "--clients",
    default=",".join(DEFAULT_CLIENTS),
    show_default=True,
    callback=_client_list,
    help="Comma-separated dhanClientId values to spread orders over.",
)
@click.option(
    "--date",
    "trading_date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=DEFAULT_DATE.isoformat(),
    show_default=True,
    help="Trading date (IST) of the simulated day.",
)
@click.option(
    "--quirks",
    is_flag=True,
    help="Deliver like an imperfect sender: some duplicates, some out of order, and "
    'some bodies with the documentation\'s invalid "legName": , hole.',
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Pace the output at this many lines per second (default: as fast as possible).",
)
def simulate(
    count: int,
    seed: int,
    clients: tuple[str, ...],
    trading_date: datetime,
    quirks: bool,
    rate: float | None,
) -> None:
    """Print simulated order updates as JSON lines, one postback body per line."""
    simulator = Simulator(seed, clients=clients, start=trading_date.date())
    orders = simulator.orders(count)
    stream = interleave(orders, random.Random(f"{seed}:interleave"))
    if quirks:
        bodies = add_quirks(stream, random.Random(f"{seed}:quirks"), **QUIRK_RATES)
    else:
        bodies = [dumps(update) for update in stream]
    _write_lines(sys.stdout.buffer, bodies, rate)
    click.echo(_summary(orders, len(bodies), simulator.trading_date), err=True)


def _write_lines(out: BinaryIO, bodies: Iterable[bytes], rate: float | None) -> None:
    started = time.monotonic()
    try:
        for index, body in enumerate(bodies):
            if rate is not None:
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            out.write(body + b"\n")
            if rate is not None:
                out.flush()
        out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as command-line tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(1) from None


def _summary(orders: list[SimulatedOrder], lines: int, trading_date: date) -> str:
    kinds = collections.Counter(order.kind for order in orders)
    listed = ", ".join(f"{kind} {kinds[kind]}" for kind in sorted(kinds))
    return f"{len(orders)} orders, {lines} updates on {trading_date}: {listed}"
