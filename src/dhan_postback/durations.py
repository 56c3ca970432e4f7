"""Durations as people write them in settings: ``50ms``, ``5s``, ``2m``, ``3h``, ``1d``."""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration", "parse_schedule"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(text: str | float) -> float:
    """Seconds for ``text``; a bare number is seconds. Raises ``ValueError`` when unreadable."""
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return float(text)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (examples: 50ms, 5s, 2m, 3h, 1d)")
    number, unit = match.groups()
    return float(number) * _UNITS[unit or "s"]


def parse_schedule(text: str) -> tuple[float, ...]:
    """A retry schedule such as ``0s,5s,30s,2m``: one delay before each attempt."""
    delays = tuple(parse_duration(part) for part in text.split(",") if part.strip())
    if not delays:
        raise ValueError("a retry schedule needs at least one delay")
    return delays


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of ``seconds`` in the units :func:`parse_duration` reads."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    if seconds == 0:
        return "0s"
    return f"{round(seconds * 1000, 3):g}ms"
