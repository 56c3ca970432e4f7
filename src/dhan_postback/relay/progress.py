"""Whether an update of an order is newer than the last one the relay took for that order.

Two sources report the same orders: the websocket (every change, but nothing while it is
down) and the broker's order book (only the latest state, but whenever asked). The relay
keeps, per order and leg, the last state it took from either, and lets an update through
only if it says something new *and* does not move the order backwards:

* **the same state** (status, filled quantity, quantity, price, trigger price and update
  time all equal) is nothing new, whichever source it comes from: a book row and a late
  websocket frame for one change make one postback;
* **an older state** is ignored: an earlier ``updateTime``, a lower ``filled_qty``, a status
  further back (``TRANSIT < PENDING < part-filled < terminal``, :func:`lifecycle.status_rank`),
  or anything at all after a terminal status. A book row fetched just before a frame that
  the relay already took cannot rewind the order;
* **anything else is newer**: a later time, a further status, more fills, or a modification
  (price, quantity, trigger) within the same second.

The relay never invents the states in between: a book row that went from ``PENDING`` to
``TRADED`` while the websocket was down is relayed as that one ``TRADED`` row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..lifecycle import is_terminal, status_rank
from ..payload import OrderUpdate

__all__ = ["OrderState", "Verdict", "compare"]


@dataclass(frozen=True, slots=True)
class OrderState:
    """What the relay remembers of the last update it took for one order and leg."""

    update_time: str
    status: str
    filled_qty: int
    quantity: int
    price: float
    trigger_price: float

    @classmethod
    def of(cls, update: OrderUpdate) -> OrderState:
        return cls(
            update_time=update.update_time,
            status=update.order_status.value,
            filled_qty=update.filled_qty,
            quantity=update.quantity,
            price=update.price,
            trigger_price=update.trigger_price,
        )


class Verdict(enum.StrEnum):
    """How an update compares with the order's last state."""

    NEWER = "newer"
    SAME = "same"
    OLDER = "older"


def compare(update: OrderUpdate, last: OrderState | None) -> Verdict:
    """Whether ``update`` is newer than ``last`` (None: the order was never seen), the same
    state, or older (it would move the order backwards)."""
    if last is None:
        return Verdict.NEWER
    state = OrderState.of(update)
    if state == last:
        return Verdict.SAME
    if (
        is_terminal(last.status)
        or state.update_time < last.update_time
        or state.filled_qty < last.filled_qty
        or status_rank(state.status, state.filled_qty) < status_rank(last.status, last.filled_qty)
    ):
        return Verdict.OLDER
    return Verdict.NEWER
