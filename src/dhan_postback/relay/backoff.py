"""Exponential backoff with full jitter, for redialling the broker and retrying the sink.

Full jitter (a uniform delay between zero and the exponential ceiling) spreads the retries of
many relays that lost the same server at the same moment, instead of having them all come
back in lock-step.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Delays ``uniform(0, min(cap, base * 2**n))`` for the n-th consecutive failure.

    ``reset()`` after a success starts again from ``base``. ``rng`` is injectable so that
    tests can check the bounds without depending on chance.
    """

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    failures: int = 0

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("backoff base and cap cannot be negative")

    def ceiling(self) -> float:
        """The largest delay the next failure can get."""
        return min(self.cap, self.base * 2.0 ** min(self.failures, 62))

    def next_delay(self, retry_after: str | None = None, *, retry_after_cap: float = 60.0) -> float:
        """Count one more failure and return how long to wait before trying again.

        ``retry_after`` is the server's ``Retry-After`` header (seconds), if it sent one: the
        wait is at least that, up to ``retry_after_cap`` so that a server cannot park the
        relay for a day. A value that is not a number is ignored."""
        delay = self.rng.uniform(0.0, self.ceiling())
        self.failures += 1
        if retry_after is not None:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(retry_after), retry_after_cap))
        return delay

    def reset(self) -> None:
        self.failures = 0
