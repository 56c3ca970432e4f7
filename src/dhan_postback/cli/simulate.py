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
from datetime import date
from typing import BinaryIO

import click

from ..payload import dumps
from ..settings import SimulateSettings
from ..simulator import SimulatedOrder, Simulator, interleave
from ..simulator import with_quirks as add_quirks
from .options import settings_options

__all__ = ["QUIRK_RATES", "simulate"]

QUIRK_RATES = {"duplicates": 0.05, "reorder": 0.05, "drop_leg_name": 0.1}
"""How often ``--quirks`` repeats a body, delays one, or writes the docs' ``"legName": ,``."""


@click.command()
@settings_options(SimulateSettings)
def simulate(settings: SimulateSettings) -> None:
    """Print simulated order updates as JSON lines, one postback body per line.

    \b
    Examples:
      dhan-postback simulate --orders 5 --seed 3
      dhan-postback simulate --orders 100 --quirks --rate 20 | head
    """
    seed = settings.seed
    if not settings.clients:
        raise click.UsageError("--clients: give at least one client id, e.g. 1000000001,1000000002")
    simulator = Simulator(seed, clients=settings.clients, start=settings.date)
    orders = simulator.orders(settings.orders)
    stream = interleave(orders, random.Random(f"{seed}:interleave"))
    if settings.quirks:
        bodies = add_quirks(stream, random.Random(f"{seed}:quirks"), **QUIRK_RATES)
    else:
        bodies = [dumps(update) for update in stream]
    _write_lines(sys.stdout.buffer, bodies, settings.rate)
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
