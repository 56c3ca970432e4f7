"""What the dispatcher checks and offers before it sends anything."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dhan_postback.service.dispatcher import Dispatcher
from dhan_postback.service.node import ServiceNode
from dhan_postback.service.store.memory import MemoryStore
from dhan_postback.settings import ServiceSettings


def test_a_lease_under_a_second_is_refused() -> None:
    with pytest.raises(ValidationError, match="lease"):
        ServiceSettings(lease=0.5)


def test_a_lease_shorter_than_an_attempt_is_renewed_every_third_of_itself() -> None:
    dispatcher = Dispatcher(MemoryStore(), ServiceSettings(timeout=3600, lease=6))
    assert dispatcher.heartbeat == 2


def test_wake_before_the_start_does_nothing() -> None:
    Dispatcher(MemoryStore(), ServiceSettings()).wake()


async def test_closing_a_dispatcher_that_never_started_does_nothing() -> None:
    await Dispatcher(MemoryStore(), ServiceSettings()).close()


def test_a_node_that_is_not_running_has_no_dispatcher_and_wake_does_nothing() -> None:
    node = ServiceNode(ServiceSettings(db="memory://"))
    assert node.dispatcher is None
    assert node.endpoint_health() == []
    node.wake()
