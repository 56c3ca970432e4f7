"""STAND-IN, branch ``dispatch`` only: the real module comes from branch ``urlpolicy``.

Just enough of its agreed surface (``GuardedResolver``, ``check_address``) for the dispatcher
to build its connector. On merge conflict, take the ``urlpolicy`` branch's file whole.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from .errors import URLRefused

__all__ = ["GuardedResolver", "check_address"]


def check_address(ip: str, *, allow_loopback: bool = False) -> None:
    """Raise :class:`URLRefused` for an address a Postback may not go to."""
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        if allow_loopback:
            return
        raise URLRefused("loopback addresses get no postbacks", reason="loopback")
    if (
        address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
    ):
        raise URLRefused("the URL resolves to a non-public address", reason="private")


class GuardedResolver(AbstractResolver):
    """Resolve with ``inner``, then refuse any address :func:`check_address` refuses."""

    def __init__(
        self, *, allow_loopback: bool = False, inner: AbstractResolver | None = None
    ) -> None:
        self._allow_loopback = allow_loopback
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            check_address(result["host"], allow_loopback=self._allow_loopback)
        return results

    async def close(self) -> None:
        await self._inner.close()
