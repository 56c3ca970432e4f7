"""Building postbacks for receiver tests: bodies, signed headers, and order lifecycles.

``lifecycles`` is a small stand-in for the simulator (until it lands): a hypothesis strategy for
the updates one order goes through, each strictly newer than the one before by the book's rule
(later ``updateTime``, or the same second with a higher status rank or more filled).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import strategies as st

from dhan_postback import payload, signing

__all__ = [
    "Step",
    "body_of",
    "eventually",
    "lifecycles",
    "signed",
    "update_body",
]

DOCS_EXAMPLE = Path(__file__).parent / "fixtures" / "docs_example.json"
_BASE = payload.parse(DOCS_EXAMPLE.read_bytes()).to_update().to_dict()
_encode = msgspec.json.Encoder().encode


def update_body(
    order_id: str,
    status: str = "PENDING",
    update_time: str = "2024-01-02 10:00:00",
    filled_qty: int = 0,
    *,
    quantity: int = 10,
    client_id: str = "1000000003",
    leg_name: str | None = None,
    **extra: Any,
) -> bytes:
    """A valid postback body (any status string, PART_TRADED included) in documented order."""
    fields = dict(_BASE)
    fields.update(
        dhanClientId=client_id,
        orderId=order_id,
        orderStatus=status,
        quantity=quantity,
        filled_qty=filled_qty,
        updateTime=update_time,
        exchangeTime=update_time,
        legName=leg_name,
    )
    fields.update(extra)
    return _encode(fields)


def signed(
    secret: str, body: bytes, msg_id: str, *, timestamp: int | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, plus the content type."""
    headers = signing.Signer(secret).headers(msg_id, body, timestamp)
    headers["content-type"] = "application/json"
    return headers


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``check()`` holds (work that happens after the response, like handlers)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition did not hold in time")
        time.sleep(0.02)


@dataclass(frozen=True)
class Step:
    """One update of a generated lifecycle."""

    order_id: str
    status: str
    update_time: str
    filled_qty: int
    quantity: int

    def key(self) -> tuple[str, str, int]:
        return (self.update_time, self.status, self.filled_qty)


def body_of(step: Step) -> bytes:
    return update_body(
        step.order_id, step.status, step.update_time, step.filled_qty, quantity=step.quantity
    )


_START = datetime.datetime(2024, 1, 2, 9, 15, 0)


@st.composite
def lifecycles(draw: st.DrawFn, order_id: str) -> list[Step]:
    """The updates of one order, oldest first: placed, maybe modified, filled in parts, and
    maybe finished (traded, cancelled, expired or rejected)."""
    quantity = draw(st.integers(min_value=1, max_value=50))
    clock = _START + datetime.timedelta(seconds=draw(st.integers(0, 3600)))
    steps: list[Step] = []

    def add(status: str, filled: int, *, at_least: int = 0) -> None:
        nonlocal clock
        clock += datetime.timedelta(seconds=draw(st.integers(at_least, max(at_least, 2))))
        steps.append(Step(order_id, status, clock.strftime("%Y-%m-%d %H:%M:%S"), filled, quantity))

    add("TRANSIT", 0)
    if draw(st.integers(0, 9)) == 0:  # refused before it reached the exchange
        add("REJECTED", 0)
        return steps
    add("PENDING", 0)
    for _ in range(draw(st.integers(0, 2))):  # modifications: same status, a later second
        add("PENDING", 0, at_least=1)
    filled = 0
    for _ in range(draw(st.integers(0, 3))):
        if filled + 1 >= quantity:
            break
        filled = draw(st.integers(filled + 1, quantity - 1))
        add("PART_TRADED", filled)
    ending = draw(st.sampled_from(["TRADED", "CANCELLED", "EXPIRED", "REJECTED", None]))
    if ending == "TRADED":
        add("TRADED", quantity)
    elif ending in ("CANCELLED", "EXPIRED"):
        add(ending, filled)
    elif ending == "REJECTED" and filled == 0:
        add("REJECTED", 0)
    return steps
