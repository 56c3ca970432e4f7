"""Failed credential attempts per client address: a budget, then 429 with ``Retry-After``.

An admin key or access token guessed online costs the guesser one request per try; this
makes each address pay for its failures instead. Every address may fail ``failures`` times
within ``window`` seconds; after that its failures are answered 429 until the oldest of them
leaves the window. Only failures are counted and only failures are refused: a request that
presents a valid credential is checked and served as usual, whatever its address did before,
so a trader behind the same NAT as a guesser is never slowed.

The addresses are those the server sees (``request.client``): behind a reverse proxy, run
uvicorn with the proxy's address in ``--forwarded-allow-ips`` so that they are the clients'.
IPv6 addresses count by their /64, the block one host usually holds. The table holds at most
``max_addresses`` addresses (the least recently failing ones are forgotten first), so a
flood of addresses costs bounded memory. The budget is per process: with several nodes
behind one proxy, an address has one budget per node.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from ..errors import RATE_LIMIT, AuthenticationError, DhanPostbackError

__all__ = ["FailureThrottle", "TooManyFailures", "client_key"]

log = structlog.get_logger(__name__)


class TooManyFailures(DhanPostbackError, code=RATE_LIMIT, status=429):
    """429: this address sent too many wrong credentials; ``retry_after`` says for how long."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            f"too many wrong credentials from this address; try again in {self.retry_after} s"
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def client_key(host: str | None) -> str:
    """The key an address is counted under: itself, or its /64 for IPv6."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass(slots=True)
class _Record:
    times: deque[float]
    throttled: bool = False


class FailureThrottle:
    """Counts failures per address over a sliding window (see the module docstring)."""

    def __init__(
        self,
        *,
        failures: int,
        window: float,
        max_addresses: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._failures = failures
        self._window = window
        self._max_addresses = max_addresses
        self._clock = clock
        self._seen: OrderedDict[str, _Record] = OrderedDict()

    def failed(self, host: str | None, *, where: str) -> None:
        """Record one failure of ``host``; raise :class:`TooManyFailures` when over budget.

        The failure that first goes over the budget is logged (where, and the address:
        never the credential); the ones after it, while the address stays over, are not.
        Failures answered 429 still count, so an address that ignores ``Retry-After``
        stays refused.
        """
        key = client_key(host)
        now = self._clock()
        record = self._seen.pop(key, None) or _Record(deque(maxlen=self._failures))
        self._seen[key] = record
        while len(self._seen) > self._max_addresses:
            self._seen.popitem(last=False)
        times = record.times
        over = len(times) == self._failures and now - times[0] < self._window
        times.append(now)
        if not over:
            record.throttled = False
            return
        if not record.throttled:
            record.throttled = True
            log.warning(
                "credential failures throttled",
                where=where,
                client=key,
                failures=self._failures,
                window_s=self._window,
            )
        raise TooManyFailures(times[0] + self._window - now)

    def refusal(
        self, error: AuthenticationError, *, host: str | None, offered: bool, where: str
    ) -> DhanPostbackError:
        """The answer to a wrong credential: ``error`` (401), or :class:`TooManyFailures`
        (429) once ``host`` is over its budget. A request that offered no credential at all
        (no header, or an empty one) is not a guess: ``error``, and nothing counted."""
        if not offered:
            return error
        try:
            self.failed(host, where=where)
        except TooManyFailures as too_many:
            return too_many
        return error

    def __len__(self) -> int:
        return len(self._seen)
