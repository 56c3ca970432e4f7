"""Property: whatever order updates arrive in, repeats included, the book ends at the newest."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dhan_postback.receiver import Receiver
from tests.receiver_support import Step, body_of, lifecycles
from tests.support import UvicornThread

_order_ids = itertools.count(1)


@pytest.fixture(scope="module")
def receiver_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Receiver, str]]:
    db: Path = tmp_path_factory.mktemp("orderings") / "receiver.db"
    receiver = Receiver(db=db)
    with UvicornThread(receiver) as server:
        yield receiver, server.url


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[list[Step]], list[tuple[Step, str | None]]]:
    """A few orders' lifecycles, and their updates shuffled with some delivered twice (a
    retry keeps its webhook-id; a broker resend has none and repeats the body)."""
    orders = [draw(lifecycles(f"H{next(_order_ids)}")) for _ in range(draw(st.integers(1, 4)))]
    sends: list[tuple[Step, str | None]] = []
    for steps in orders:
        for index, step in enumerate(steps):
            webhook_id = draw(st.sampled_from([f"msg_{step.order_id}_{index}", None]))
            sends += [(step, webhook_id)] * draw(st.integers(1, 3))
    return orders, draw(st.permutations(sends))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=deliveries())
def test_the_book_ends_at_each_orders_last_legal_state(
    receiver_url: tuple[Receiver, str],
    case: tuple[list[list[Step]], list[tuple[Step, str | None]]],
) -> None:
    receiver, url = receiver_url
    orders, sends = case
    with httpx.Client(base_url=url, timeout=10) as client:
        for step, webhook_id in sends:
            headers = {"webhook-id": webhook_id} if webhook_id else {}
            assert client.post("/", content=body_of(step), headers=headers).status_code == 200
    for steps in orders:
        last = steps[-1]
        row = receiver.store.order(last.order_id)
        assert row is not None
        assert (row.status, row.update_time, row.filled_qty) == (
            last.status,
            last.update_time,
            last.filled_qty,
        )
        assert len(receiver.store.history(last.order_id)) == len(steps)
