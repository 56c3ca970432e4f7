"""Waiting for something that happens after the call that caused it (a delivery, a handler,
a reconnect): poll a condition until it holds, and fail the test when it does not in time.

:func:`eventually` is for async tests (it lets the event loop run between checks);
:func:`eventually_async` for a condition that must itself await (a store's answer);
:func:`wait_until` is the same for code that runs no event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["eventually", "eventually_async", "wait_until"]

_POLL = 0.01


async def eventually(check: Callable[[], bool], timeout: float = 20.0, message: str = "") -> None:
    """Wait until ``check()`` holds, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(_failure(timeout, message))
        await asyncio.sleep(_POLL)


async def eventually_async(
    check: Callable[[], Awaitable[bool]], timeout: float = 20.0, message: str = ""
) -> None:
    """:func:`eventually` for a condition that awaits, such as a question to a store."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(_failure(timeout, message))
        await asyncio.sleep(_POLL)


def wait_until(check: Callable[[], bool], timeout: float = 20.0, message: str = "") -> None:
    """:func:`eventually` for a caller without an event loop: blocks between checks."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(_failure(timeout, message))
        time.sleep(_POLL)


def _failure(timeout: float, message: str) -> str:
    return message or f"condition did not hold within {timeout}s"
