"""Delivered per second as the receiver counts it, between 10 % and 90 % of a run.

For senders that run in processes of their own (workers, ``serve``): their start-up (imports,
connecting, opening the database) and the last stragglers are not counted, only the steady
middle of the run. The CPU seconds of the given processes (and of any other meter) are
sampled alongside, so the CPU per delivery over the same window comes with the rate, and so is
how busy the machine's CPUs were.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import time
import urllib.request
from collections.abc import Callable, Sequence

import aiohttp

from bench.harness import cpu_seconds

__all__ = ["Meter", "Window", "counted", "sink_count", "watch"]

Meter = Callable[[], float]
"""A running total of CPU seconds (a process's, or a database server's), read when sampled."""


@dataclasses.dataclass(frozen=True)
class Window:
    """The steady middle of a run: delivered/s, CPU seconds per delivery of each pid and then
    of each meter, and how busy the machine's CPUs were meanwhile (0 to 1)."""

    rate: float
    cpu_per_delivery: tuple[float, ...]
    busy: float = 0.0


def counted(sink: str) -> int:
    """:func:`sink_count`, from synchronous code."""
    with urllib.request.urlopen(sink + "/stats", timeout=10) as response:
        count: int = json.load(response)["count"]
        return count


async def sink_count(session: aiohttp.ClientSession, sink: str) -> int:
    """How many POSTs the :mod:`bench.sink` at ``sink`` has answered so far."""
    async with session.get(sink + "/stats") as response:
        count: int = (await response.json())["count"]
        return count


async def watch(
    sink: str,
    total: int,
    pids: Sequence[int] = (),
    *,
    meters: Sequence[Meter] = (),
    start: int | None = None,
    timeout: float = 600.0,
    every: float = 0.02,
) -> Window:
    """Poll the sink until it has counted ``total`` more POSTs than ``start`` (its count now
    when not given); the rate and CPU per delivery between 10 % and 90 % of ``total``."""
    every_meter = [*(functools.partial(cpu_seconds, pid) for pid in pids), *meters]
    samples: list[tuple[float, int, tuple[float, ...], tuple[int, int]]] = []
    async with aiohttp.ClientSession() as session:
        if start is None:
            start = await sink_count(session, sink)
        deadline = time.monotonic() + timeout
        while not samples or samples[-1][1] < total:
            if time.monotonic() > deadline:
                got = samples[-1][1] if samples else 0
                raise TimeoutError(f"only {got} of {total} arrived in {timeout:.0f} s")
            done = await sink_count(session, sink) - start
            cpu = tuple(meter() for meter in every_meter)
            samples.append((time.perf_counter(), done, cpu, machine_ticks()))
            await asyncio.sleep(every)
    first = next(sample for sample in samples if sample[1] >= total // 10)
    last = next(sample for sample in samples if sample[1] >= total * 9 // 10)
    delivered = max(1, last[1] - first[1])
    return Window(
        delivered / max(1e-9, last[0] - first[0]),
        tuple((b - a) / delivered for a, b in zip(first[2], last[2], strict=True)),
        (last[3][0] - first[3][0]) / max(1, last[3][1] - first[3][1]),
    )


def machine_ticks() -> tuple[int, int]:
    """The machine's (busy, total) CPU ticks so far, from /proc/stat (0, 0 elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(part) for part in stat.readline().split()[1:]]
    except OSError:
        return 0, 0
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)
