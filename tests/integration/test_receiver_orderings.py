"""Property: whatever order updates arrive in, repeats included, the book ends at the newest."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dhan_postback import payload
from dhan_postback.payload import OrderUpdate
from dhan_postback.receiver import Receiver
from dhan_postback.simulator import OrderKind, Simulator
from tests.helpers.lifecycles import Step, body_of, lifecycles
from tests.helpers.servers import UvicornThread

_examples = iter(range(1_000_000))


@pytest.fixture(scope="module")
def receiver_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Receiver, str]]:
    db: Path = tmp_path_factory.mktemp("orderings") / "receiver.db"
    receiver = Receiver(db=db)
    with UvicornThread(receiver) as server:
        yield receiver, server.url


Delivery = tuple[bytes, str | None]


@st.composite
def simulated(draw: st.DrawFn) -> tuple[list[list[OrderUpdate]], list[Delivery]]:
    """The simulator's lifecycles (one per order leg), delivered shuffled with repeats: a retry
    keeps its webhook-id, a resend by the broker has none and repeats the body."""
    simulator = Simulator(seed=draw(st.integers(0, 2**32)))
    kinds = draw(st.lists(st.sampled_from(list(OrderKind)), min_size=1, max_size=4))
    example = next(_examples)  # the receiver is shared: order ids must be fresh every time
    legs: dict[tuple[str, str | None], list[OrderUpdate]] = {}
    sends: list[Delivery] = []
    for order in (simulator.order(kind) for kind in kinds):
        for index, original in enumerate(order.updates):
            update = original.replace(order_id=f"{example}-{original.order_id}")
            legs.setdefault((update.order_id, update.leg_name), []).append(update)
            webhook_id = draw(st.sampled_from([f"msg_{update.order_id}_{index}", None]))
            sends += [(payload.dumps(update), webhook_id)] * draw(st.integers(1, 3))
    return list(legs.values()), draw(st.permutations(sends))


def deliver(url: str, sends: list[Delivery]) -> None:
    """POST every body, up to 16 at a time, so that one commit often holds several updates of
    one order (arrival order is then up to the network, which the property allows)."""

    async def run() -> None:
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/", content=body, headers={"webhook-id": webhook_id} if webhook_id else {}
                    )
                    for body, webhook_id in sends
                )
            )
        assert all(response.status_code == 200 for response in responses)

    asyncio.run(run())


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=simulated())
def test_the_book_ends_at_the_last_state_of_every_simulated_order_leg(
    receiver_url: tuple[Receiver, str],
    case: tuple[list[list[OrderUpdate]], list[Delivery]],
) -> None:
    receiver, url = receiver_url
    legs, sends = case
    deliver(url, sends)
    for updates in legs:
        last = updates[-1]
        row = receiver.store.order(last.order_id, last.leg_name or "")
        assert row is not None
        assert (row.status, row.update_time, row.filled_qty) == (
            last.order_status,
            last.update_time,
            last.filled_qty,
        )
    for order_id in {updates[0].order_id for updates in legs}:
        expected = sum(len(u) for u in legs if u[0].order_id == order_id)
        assert len(receiver.store.history(order_id)) == expected


@st.composite
def part_traded_lifecycles(draw: st.DrawFn) -> tuple[list[Step], list[Delivery]]:
    """The same with the order-book spelling PART_TRADED, which the simulator never sends."""
    steps = draw(lifecycles(f"P{next(_examples)}"))
    sends: list[Delivery] = []
    for index, step in enumerate(steps):
        webhook_id = draw(st.sampled_from([f"msg_{step.order_id}_{index}", None]))
        sends += [(body_of(step), webhook_id)] * draw(st.integers(1, 3))
    return steps, draw(st.permutations(sends))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=part_traded_lifecycles())
def test_the_book_ends_at_the_last_state_when_part_traded_is_spelled_out(
    receiver_url: tuple[Receiver, str], case: tuple[list[Step], list[Delivery]]
) -> None:
    receiver, url = receiver_url
    steps, sends = case
    deliver(url, sends)
    last = steps[-1]
    row = receiver.store.order(last.order_id)
    assert row is not None
    assert (row.status, row.update_time, row.filled_qty) == (
        last.status,
        last.update_time,
        last.filled_qty,
    )
