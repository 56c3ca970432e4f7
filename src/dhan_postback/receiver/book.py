"""The order book's one rule: an order only moves forward.

Postbacks can arrive late, twice, or out of order (a retry of an old update lands after a newer
one). The book keeps one row per order (per bracket-order leg, see
:func:`dhan_postback.lifecycle.order_key`) and lets an incoming update replace that row only
when it is *newer*:

* its :func:`~dhan_postback.lifecycle.progress_key` is greater: a later ``updateTime``, or at
  the same second a further status (TRANSIT < PENDING < PART_TRADED < a terminal status; a
  ``PENDING`` with fills counts as PART_TRADED) or more filled; an exact tie goes to the later
  arrival unless the row is already terminal;
* a terminal status (TRADED, CANCELLED, REJECTED, EXPIRED) never goes back to an open one;
* ``filled_qty`` never decreases, even under a later ``updateTime``.

For any legal lifecycle this makes the book's final row independent of arrival order: it is the
update with the greatest key. Everything here is pure; the store applies it inside the
transaction that records the update.
"""

from __future__ import annotations

from typing import NamedTuple

from ..lifecycle import is_terminal, progress_key

__all__ = ["Progress", "supersedes"]


class Progress(NamedTuple):
    """The three facts of an update that decide whether it moves an order forward."""

    update_time: str
    """``YYYY-MM-DD HH:MM:SS`` (compares correctly as text); empty when the update had none."""
    status: str
    """As parsed (upper case when known); empty when the update had none."""
    filled_qty: int

    @property
    def key(self) -> tuple[str, int, int]:
        return progress_key(self.update_time, self.status, self.filled_qty)


def supersedes(incoming: Progress, current: Progress | None) -> bool:
    """Whether ``incoming`` should replace ``current`` as the order's row in the book."""
    if current is None:
        return True
    current_terminal = is_terminal(current.status)
    if current_terminal and not is_terminal(incoming.status):
        return False
    if incoming.filled_qty < current.filled_qty:
        return False
    incoming_key, current_key = incoming.key, current.key
    if incoming_key == current_key:
        return not current_terminal
    return incoming_key > current_key
