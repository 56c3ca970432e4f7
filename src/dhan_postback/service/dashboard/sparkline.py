"""An endpoint's last hour as a small inline SVG: delivered and failed attempts per minute.

Inline SVG needs no script, no image request and no charting library, so the page stays
within its Content-Security-Policy and renders the same in every browser. The counts come
from :meth:`~dhan_postback.service.store.base.Store.endpoint_minutes`; minutes without an
attempt are zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..store.base import MinuteCounts

__all__ = ["HEIGHT", "WIDTH", "Sparkline", "sparkline"]

WIDTH = 360
HEIGHT = 60
_PAD = 2


@dataclass(frozen=True, slots=True)
class Sparkline:
    """What ``endpoint.html`` draws: the two lines' SVG points (``x,y ...`` in a
    ``WIDTH`` x ``HEIGHT`` box, one scale), and the totals, said in words beside the chart
    for people and tests."""

    delivered_points: str
    failed_points: str
    delivered: int
    failed: int
    minutes: int
    top: int
    width: int = WIDTH
    height: int = HEIGHT
    baseline: int = HEIGHT - _PAD


def _points(values: Sequence[int], top: int) -> str:
    step = (WIDTH - 2 * _PAD) / max(len(values) - 1, 1)
    usable = HEIGHT - 2 * _PAD
    return " ".join(
        f"{_PAD + i * step:.1f},{HEIGHT - _PAD - (value / top) * usable:.1f}"
        for i, value in enumerate(values)
    )


def sparkline(counts: Sequence[MinuteCounts], *, until: float, minutes: int = 60) -> Sparkline:
    """The ``minutes`` whole minutes up to the one ``until`` falls in, oldest on the left."""
    last = until // 60 * 60
    first = last - (minutes - 1) * 60
    delivered = [0] * minutes
    failed = [0] * minutes
    for row in counts:
        index = int((row.minute - first) // 60)
        if 0 <= index < minutes:
            delivered[index] += row.delivered
            failed[index] += row.failed
    top = max([*delivered, *failed, 1])
    return Sparkline(
        delivered_points=_points(delivered, top),
        failed_points=_points(failed, top),
        delivered=sum(delivered),
        failed=sum(failed),
        minutes=minutes,
        top=top,
    )
