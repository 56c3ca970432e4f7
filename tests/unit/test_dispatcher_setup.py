"""What the dispatcher checks and offers before it sends anything."""

from __future__ import annotations

import pytest

from dhan_postback.service.dispatcher import Dispatcher, DispatcherHook, hook
from dhan_postback.service.store.memory import MemoryStore
from dhan_postback.settings import ServiceSettings


def test_a_lease_shorter_than_an_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="lease must be longer than timeout"):
        Dispatcher(MemoryStore(), ServiceSettings(timeout=5, lease=5))


def test_wake_before_the_start_does_nothing() -> None:
    Dispatcher(MemoryStore(), ServiceSettings()).wake()


async def test_closing_a_dispatcher_that_never_started_does_nothing() -> None:
    await Dispatcher(MemoryStore(), ServiceSettings()).close()


def test_hook_makes_a_lifespan_hook_with_a_wake_callback() -> None:
    dispatch = hook(ServiceSettings())
    assert isinstance(dispatch, DispatcherHook)
    assert dispatch.dispatcher is None
    dispatch.wake()
