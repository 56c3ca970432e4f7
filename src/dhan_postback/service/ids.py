"""Delivery ids: ``msg_`` and a ULID, so ids sort by creation time and never collide.

A ULID is 48 bits of milliseconds since the epoch and 80 random bits, written as 26
characters of Crockford base32. Within one millisecond this generator adds one to the random
part instead of drawing a new one, so the ids one process makes are strictly increasing
(the ULID "monotonic" rule). The id is made before the outbox commit: it is the
``webhook-id`` receivers de-duplicate on, and the API returns it in the 202.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time

__all__ = [
    "DELIVERY_ID_PREFIX",
    "derived_delivery_id",
    "new_delivery_id",
    "new_delivery_ids",
    "new_endpoint_id",
    "new_ulid",
    "ulid_time",
]

DELIVERY_ID_PREFIX = "msg_"

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]
"""The two characters of every 10-bit value."""
_FROM_CROCKFORD = {char: value for value, char in enumerate(_CROCKFORD)}
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1


class _Monotonic:
    """The last (millisecond, random) pair handed out, shared by every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ms = 0
        self._random = 0
        # Ids must be unique, not secret: a PRNG seeded from the OS is enough, and it does not
        # release the GIL (os.urandom does, and then waits for it behind the SQLite writer).
        self._source = random.Random(os.urandom(32))

    def take(self, count: int) -> tuple[int, int]:
        """Reserve ``count`` consecutive values; return the first as (ms, random)."""
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._ms:
                self._ms = ms
                # One bit short of 80, so that increments within this millisecond do not overflow.
                self._random = self._source.getrandbits(_RANDOM_BITS - 1)
            if self._random + count > _RANDOM_MAX:
                self._ms += 1  # borrowed from the future; astronomically rare
                self._random = self._source.getrandbits(_RANDOM_BITS - 1)
            first = (self._ms, self._random)
            self._random += count
            return first


_state = _Monotonic()


def _encode(value: int) -> str:
    """Crockford base32 of a 128-bit value: 26 characters, the first of its top 3 bits (a
    ULID is 130 bits, two of them zero). Two characters per table lookup, 13 lookups: the
    stdlib's ``base64.b32encode`` is written in Python and cost five times as much per id,
    on the path of every update ingested."""
    pairs = _PAIRS
    return (
        pairs[value >> 120]
        + pairs[value >> 110 & 1023]
        + pairs[value >> 100 & 1023]
        + pairs[value >> 90 & 1023]
        + pairs[value >> 80 & 1023]
        + pairs[value >> 70 & 1023]
        + pairs[value >> 60 & 1023]
        + pairs[value >> 50 & 1023]
        + pairs[value >> 40 & 1023]
        + pairs[value >> 30 & 1023]
        + pairs[value >> 20 & 1023]
        + pairs[value >> 10 & 1023]
        + pairs[value & 1023]
    )


def new_ulid() -> str:
    """One ULID, greater than every ULID this process made before."""
    ms, random = _state.take(1)
    return _encode((ms << _RANDOM_BITS) | random)


def new_delivery_id() -> str:
    """``msg_`` followed by a new ULID."""
    return DELIVERY_ID_PREFIX + new_ulid()


def derived_delivery_id(*parts: object, at: float) -> str:
    """A delivery id timed ``at`` whose random part is a hash of ``parts``: the same parts give
    the same id on every node, so that an outbox that keeps one delivery per id keeps one."""
    digest = int.from_bytes(hashlib.sha256(repr(parts).encode()).digest(), "big")
    value = (int(at * 1000) << _RANDOM_BITS) | (digest & _RANDOM_MAX)
    return DELIVERY_ID_PREFIX + _encode(value)


def new_endpoint_id() -> str:
    """A new endpoint id: ``ep_`` and a ULID (stores migrated from before endpoints existed
    gave theirs ``ep_`` and random hex; ids are opaque either way)."""
    return "ep_" + new_ulid()


def new_delivery_ids(count: int) -> list[str]:
    """``count`` increasing delivery ids, cheaper than ``count`` calls (one lock, one time)."""
    if count <= 0:
        return []
    ms, random = _state.take(count)
    first = (ms << _RANDOM_BITS) | random
    return [DELIVERY_ID_PREFIX + _encode(value) for value in range(first, first + count)]


def ulid_time(value: str) -> float:
    """Seconds since the epoch at which a ULID (or ``msg_`` id) was made."""
    text = value.removeprefix(DELIVERY_ID_PREFIX).upper()
    if len(text) != 26:
        raise ValueError("a ULID has 26 characters")
    number = 0
    for char in text[:10]:
        try:
            number = number * 32 + _FROM_CROCKFORD[char]
        except KeyError:
            raise ValueError(f"not a Crockford base32 character: {char!r}") from None
    return number / 1000
