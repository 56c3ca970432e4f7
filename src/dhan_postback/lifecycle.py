"""How an order may move from one snapshot to the next, and which moves deserve a postback.

The broker posts a body "on every change of an order": a new status, a modification, a
partial fill. This module says what those words mean, so that the simulator produces only
legal lifecycles, the service can refuse nonsense, and a receiver can keep an order book that
only moves forward.

**Identity.** One lifecycle is one :func:`order_key`: ``(orderId, legName)``. The legs of a
bracket order (and of a cover order) share the entry order's ``orderId`` and differ only by
``legName``, as on the broker's order book; each leg has its own lifecycle, so an
``ENTRY_LEG`` that is ``TRADED`` does not stop a ``TARGET_LEG`` of the same ``orderId`` from
being ``PENDING``. A receiver that keys its book by ``orderId`` alone must take this into
account.

**Status order.** ::

    TRANSIT (0) -> PENDING (1) -> PART_TRADED (2) -> TRADED | CANCELLED | EXPIRED | REJECTED (3)

A status may stay where it is or move right, never left; a terminal status never changes
again. ``PART_TRADED`` is not a documented postback status (the broker keeps ``PENDING`` and
raises ``filled_qty``), but the broker's order book shows it, so receivers meet it: a
``PENDING`` snapshot with ``filled_qty > 0`` ranks as ``PART_TRADED``, which makes the two
spellings of "partly filled" interchangeable. Any status this module does not know ranks as
``PENDING``: store it, but never let it end or rewind an order.

**TRANSIT -> TRADED is legal.** A market order can be accepted and filled by the exchange
within the same instant, and the broker may then post only the fill. A receiver must be ready
for it, so :func:`check_transition` allows it and the simulator produces it now and then.
Likewise ``TRANSIT -> REJECTED`` (refused by the broker's risk checks before reaching the
exchange), ``TRANSIT -> CANCELLED`` and ``TRANSIT -> EXPIRED`` (an after-market order that never
went out) are forward moves and legal.

**What is a change** (:func:`change_kind`). A first snapshot is ``NEW``; a different status is
``STATUS``; a different ``filled_qty`` with the same status is ``PARTIAL_FILL``; any other
difference is ``MODIFICATION`` (the trader changed price, quantity, trigger, ...; when in
doubt, send: a redundant postback costs the receiver a comparison, a missed one costs it the
truth). A snapshot that differs only in ``updateTime`` is **not** a change (``None``): it tells
the trader nothing new.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final

from .errors import IllegalTransition
from .payload import OrderStatus, OrderUpdate

__all__ = [
    "KNOWN_STATUSES",
    "PART_TRADED",
    "ChangeKind",
    "Violation",
    "change_kind",
    "check_sequence",
    "check_snapshot",
    "check_transition",
    "is_known_status",
    "is_terminal",
    "order_key",
    "progress_key",
    "status_rank",
]

PART_TRADED: Final = "PART_TRADED"
"""The order book's status for a partly filled order; postbacks say ``PENDING`` instead."""

_RANK: Final[dict[str, int]] = {
    OrderStatus.TRANSIT: 0,
    OrderStatus.PENDING: 1,
    PART_TRADED: 2,
    OrderStatus.TRADED: 3,
    OrderStatus.CANCELLED: 3,
    OrderStatus.EXPIRED: 3,
    OrderStatus.REJECTED: 3,
}
_OPEN_RANK: Final = 1
_PART_TRADED_RANK: Final = 2
_TERMINAL_RANK: Final = 3

KNOWN_STATUSES: Final = frozenset(_RANK)
"""The six documented statuses plus ``PART_TRADED``."""


class ChangeKind(enum.StrEnum):
    """Why a new snapshot of an order deserves a postback."""

    NEW = "NEW"
    STATUS = "STATUS"
    PARTIAL_FILL = "PARTIAL_FILL"
    MODIFICATION = "MODIFICATION"


class Violation(enum.StrEnum):
    """The stable tags :class:`~dhan_postback.errors.IllegalTransition` carries in ``.rule``."""

    DIFFERENT_ORDER = "different-order"
    IDENTITY_CHANGED = "identity-changed"
    CREATE_TIME_CHANGED = "create-time-changed"
    TIME_BACKWARDS = "time-backwards"
    CREATED_AFTER_UPDATED = "created-after-updated"
    AFTER_TERMINAL = "after-terminal"
    STATUS_BACKWARDS = "status-backwards"
    FILLED_DECREASED = "filled-decreased"
    FILLED_ABOVE_QUANTITY = "filled-above-quantity"
    TRADED_NOT_FILLED = "traded-not-filled"
    REJECTED_AFTER_FILL = "rejected-after-fill"


# --------------------------------------------------------------------------------------------
# Statuses as plain strings: what a receiver has in hand.


def _normal(status: str) -> str:
    return status.strip().upper()


def is_known_status(status: str) -> bool:
    """Whether ``status`` is one of :data:`KNOWN_STATUSES` (case and spaces ignored)."""
    return _normal(status) in _RANK


def is_terminal(status: str) -> bool:
    """Whether an order in ``status`` can never change again (unknown statuses are not)."""
    return _RANK.get(_normal(status), _OPEN_RANK) == _TERMINAL_RANK


def status_rank(status: str, filled_qty: int = 0) -> int:
    """How far along ``status`` is: 0 transit, 1 open, 2 partly filled, 3 terminal.

    ``PENDING`` with ``filled_qty > 0`` ranks as ``PART_TRADED``. Unknown statuses rank as
    open (1), so they can neither end an order nor move a terminal one.
    """
    rank = _RANK.get(_normal(status), _OPEN_RANK)
    if rank == _OPEN_RANK and filled_qty > 0:
        return _PART_TRADED_RANK
    return rank


def progress_key(update_time: str, status: str, filled_qty: int) -> tuple[str, int, int]:
    """A sort key for snapshots of one order: later time, then further status, then more fills.

    Times have one-second resolution, so several snapshots often share an ``updateTime``; the
    rank and ``filled_qty`` break those ties the only way that cannot lose progress. A forward
    only order book keeps a stored row unless it is not terminal and the incoming key is
    greater or equal.
    """
    return (update_time, status_rank(status, filled_qty), filled_qty)


# --------------------------------------------------------------------------------------------
# Snapshots as OrderUpdate: what the simulator and the service have in hand.


def order_key(update: OrderUpdate) -> tuple[str, str | None]:
    """The identity of one lifecycle: ``(orderId, legName)``."""
    return (update.order_id, update.leg_name)


_IDENTITY_FIELDS: Final = (
    "dhan_client_id",
    "transaction_type",
    "exchange_segment",
    "product_type",
    "security_id",
    "after_market_order",
    "drv_expiry_date",
    "drv_option_type",
    "drv_strike_price",
)
"""Fields fixed when the order is placed; a modification cannot change them."""


def change_kind(previous: OrderUpdate | None, current: OrderUpdate) -> ChangeKind | None:
    """What kind of change ``current`` is after ``previous``; ``None`` when it is none.

    This only classifies; :func:`check_transition` judges whether the move is legal.
    """
    if previous is None:
        return ChangeKind.NEW
    if current.order_status != previous.order_status:
        return ChangeKind.STATUS
    if current.filled_qty != previous.filled_qty:
        return ChangeKind.PARTIAL_FILL
    if current.replace(update_time=previous.update_time) == previous:
        return None
    return ChangeKind.MODIFICATION


def check_snapshot(update: OrderUpdate) -> None:
    """Refuse a single snapshot that contradicts itself."""
    if update.create_time > update.update_time:
        raise IllegalTransition(
            f"createTime {update.create_time} is after updateTime {update.update_time}",
            rule=Violation.CREATED_AFTER_UPDATED,
            field="createTime",
        )
    if update.filled_qty > update.quantity:
        raise IllegalTransition(
            f"filled_qty ({update.filled_qty}) is larger than quantity ({update.quantity})",
            rule=Violation.FILLED_ABOVE_QUANTITY,
            field="filled_qty",
        )
    if update.order_status is OrderStatus.TRADED and update.filled_qty != update.quantity:
        raise IllegalTransition(
            f"TRADED with filled_qty {update.filled_qty} of quantity {update.quantity}",
            rule=Violation.TRADED_NOT_FILLED,
            field="filled_qty",
        )
    if update.order_status is OrderStatus.REJECTED and update.filled_qty > 0:
        raise IllegalTransition(
            f"REJECTED after {update.filled_qty} were filled",
            rule=Violation.REJECTED_AFTER_FILL,
            field="orderStatus",
        )


def check_transition(previous: OrderUpdate | None, current: OrderUpdate) -> ChangeKind | None:
    """Raise :class:`~dhan_postback.errors.IllegalTransition` unless ``current`` may follow
    ``previous`` (the last snapshot of the same :func:`order_key`); return its change kind.

    An identical snapshot (``change_kind`` is ``None``) is always allowed, even after a terminal
    status: at-least-once delivery repeats things, and a repeat changes nothing.
    """
    check_snapshot(current)
    if previous is None:
        return ChangeKind.NEW
    if order_key(previous) != order_key(current):
        raise IllegalTransition(
            f"order {order_key(current)} cannot follow order {order_key(previous)}",
            rule=Violation.DIFFERENT_ORDER,
            field="orderId",
        )
    _refuse_identity_change(previous, current)
    if current.update_time < previous.update_time:
        raise IllegalTransition(
            f"updateTime went back from {previous.update_time} to {current.update_time}",
            rule=Violation.TIME_BACKWARDS,
            field="updateTime",
        )
    kind = change_kind(previous, current)
    if kind is None:
        return None
    if is_terminal(previous.order_status):
        raise IllegalTransition(
            f"order {current.order_id} is already {previous.order_status}; "
            f"nothing may follow (got a {kind.lower().replace('_', ' ')})",
            rule=Violation.AFTER_TERMINAL,
            field="orderStatus",
        )
    if current.filled_qty < previous.filled_qty:
        raise IllegalTransition(
            f"filled_qty went down from {previous.filled_qty} to {current.filled_qty}",
            rule=Violation.FILLED_DECREASED,
            field="filled_qty",
        )
    before = status_rank(previous.order_status, previous.filled_qty)
    after = status_rank(current.order_status, current.filled_qty)
    if after < before:
        raise IllegalTransition(
            f"status went back from {previous.order_status} to {current.order_status}",
            rule=Violation.STATUS_BACKWARDS,
            field="orderStatus",
        )
    return kind


def _refuse_identity_change(previous: OrderUpdate, current: OrderUpdate) -> None:
    if current.create_time != previous.create_time:
        raise IllegalTransition(
            f"createTime changed from {previous.create_time} to {current.create_time}",
            rule=Violation.CREATE_TIME_CHANGED,
            field="createTime",
        )
    for name in _IDENTITY_FIELDS:
        before, after = getattr(previous, name), getattr(current, name)
        if before != after:
            wire = _WIRE_NAME[name]
            raise IllegalTransition(
                f"`{wire}` changed from {before!r} to {after!r}; it is fixed at placement",
                rule=Violation.IDENTITY_CHANGED,
                field=wire,
            )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_WIRE_NAME: Final = {name: _camel(name) for name in _IDENTITY_FIELDS}


def check_sequence(updates: Iterable[OrderUpdate]) -> list[ChangeKind | None]:
    """Check a stream (any number of orders, each in its own order); the kind of each update.

    Every update is checked against the previous one of its :func:`order_key`. Raises
    :class:`~dhan_postback.errors.IllegalTransition` at the first illegal one.
    """
    last: dict[tuple[str, str | None], OrderUpdate] = {}
    kinds: list[ChangeKind | None] = []
    for update in updates:
        key = order_key(update)
        kinds.append(check_transition(last.get(key), update))
        last[key] = update
    return kinds
