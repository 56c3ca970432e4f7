"""The order book's one rule: an order only moves forward.

Postbacks can arrive late, twice, or out of order (a retry of an old update lands after a newer
one). The book keeps one row per order (per bracket-order leg) and lets an incoming update
replace that row only when it is *newer*:

* its ``updateTime`` is later, or, at the same second, its status ranks higher
  (TRANSIT < PENDING < PART_TRADED < a terminal status), or, at the same status, it has filled
  more; an exact tie goes to the later arrival unless the row is already terminal;
* a terminal status (TRADED, CANCELLED, REJECTED, EXPIRED) never goes back to an open one;
* ``filled_qty`` never decreases.

For any legal lifecycle this makes the book's final row independent of arrival order: it is the
update with the greatest ``(updateTime, rank, filled_qty)``. Everything here is pure; the store
applies it inside the transaction that records the update.

The status helpers below are a local stand-in until ``dhan_postback.lifecycle`` lands.
"""

from __future__ import annotations

from typing import Final, NamedTuple

__all__ = [
    "OPEN_RANK",
    "TERMINAL_RANK",
    "TERMINAL_STATUSES",
    "Progress",
    "is_terminal",
    "status_rank",
    "supersedes",
]

TERMINAL_STATUSES: Final = frozenset({"TRADED", "CANCELLED", "REJECTED", "EXPIRED"})
TERMINAL_RANK: Final = 3
OPEN_RANK: Final = 1
"""Rank of PENDING, and of any status the book does not know (an unknown status is open)."""

_RANKS: Final[dict[str, int]] = {
    "TRANSIT": 0,
    "PENDING": OPEN_RANK,
    "PART_TRADED": 2,
    **dict.fromkeys(TERMINAL_STATUSES, TERMINAL_RANK),
}


def status_rank(status: str | None) -> int:
    """Where ``status`` sits in an order's life; unknown statuses count as open (PENDING)."""
    if status is None:
        return OPEN_RANK
    return _RANKS.get(status, OPEN_RANK)


def is_terminal(status: str | None) -> bool:
    """Whether an order with ``status`` is finished for good."""
    return status in TERMINAL_STATUSES


class Progress(NamedTuple):
    """The three facts of an update that decide whether it moves an order forward."""

    update_time: str
    """``YYYY-MM-DD HH:MM:SS`` (compares correctly as text); empty when the update had none."""
    status: str
    filled_qty: int

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.update_time, status_rank(self.status), self.filled_qty)


def supersedes(incoming: Progress, current: Progress | None) -> bool:
    """Whether ``incoming`` should replace ``current`` as the order's row in the book."""
    if current is None:
        return True
    current_terminal = current.status in TERMINAL_STATUSES
    if current_terminal and incoming.status not in TERMINAL_STATUSES:
        return False
    if incoming.filled_qty < current.filled_qty:
        return False
    incoming_key, current_key = incoming.key, current.key
    if incoming_key == current_key:
        return not current_terminal
    return incoming_key > current_key
