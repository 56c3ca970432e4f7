"""Delivered per second as the receiver counts it, between 10 % and 90 % of a run.

For senders that run in processes of their own (workers, ``serve``): their start-up (imports,
connecting, opening the database) and the last stragglers are not counted, only the steady
middle of the run. The CPU seconds of the given processes are sampled alongside, so the CPU
per delivery over the same window comes with the rate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import urllib.request
from collections.abc import Sequence

import aiohttp

from bench.harness import cpu_seconds

__all__ = ["Window", "counted", "sink_count", "watch"]


@dataclasses.dataclass(frozen=True)
class Window:
    """The steady middle of a run: delivered/s, and CPU seconds per delivery of each pid."""

    rate: float
    cpu_per_delivery: tuple[float, ...]


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
    start: int | None = None,
    timeout: float = 600.0,
    every: float = 0.02,
) -> Window:
    """Poll the sink until it has counted ``total`` more POSTs than ``start`` (its count now
    when not given); the rate and CPU per delivery between 10 % and 90 % of ``total``."""
    samples: list[tuple[float, int, tuple[float, ...]]] = []
    async with aiohttp.ClientSession() as session:
        if start is None:
            start = await sink_count(session, sink)
        deadline = time.monotonic() + timeout
        while not samples or samples[-1][1] < total:
            if time.monotonic() > deadline:
                got = samples[-1][1] if samples else 0
                raise TimeoutError(f"only {got} of {total} arrived in {timeout:.0f} s")
            done = await sink_count(session, sink) - start
            samples.append((time.perf_counter(), done, tuple(cpu_seconds(pid) for pid in pids)))
            await asyncio.sleep(every)
    first = next(sample for sample in samples if sample[1] >= total // 10)
    last = next(sample for sample in samples if sample[1] >= total * 9 // 10)
    delivered = max(1, last[1] - first[1])
    return Window(
        delivered / max(1e-9, last[0] - first[0]),
        tuple((b - a) / delivered for a, b in zip(first[2], last[2], strict=True)),
    )
