"""Which Postback URLs are allowed. STAND-IN: literal checks only, until the real module lands.

The real policy (another branch) also reads every spelling of an address (``127.1``,
``2130706433``, ``0x7f.1``), and re-checks at connect time. This stand-in keeps the same
signatures and refuses: schemes other than http and https, userinfo, a missing host,
``localhost``, and IP literals that are loopback (unless ``allow_loopback``), private,
link-local, multicast, unspecified or reserved.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

from .errors import URLRefused

__all__ = ["Resolver", "check_url", "check_url_resolved"]

Resolver = Callable[[str], Awaitable[Iterable[str]]]
"""Host name to the addresses it resolves to."""


def _check_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow: bool) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        if allow:
            return
        raise URLRefused("loopback addresses get no postbacks", reason="loopback")
    if address.is_unspecified:
        raise URLRefused("the unspecified address is not a destination", reason="unspecified")
    if address.is_link_local:
        raise URLRefused("link-local addresses are refused", reason="link_local")
    if address.is_multicast:
        raise URLRefused("multicast addresses are refused", reason="multicast")
    if address.is_private:
        raise URLRefused("private addresses are refused", reason="private")
    if address.is_reserved:
        raise URLRefused("reserved addresses are refused", reason="reserved")


def check_url(url: str, *, allow_loopback: bool = False) -> str:
    """The normalised URL, or :class:`~dhan_postback.errors.URLRefused` saying why not."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise URLRefused("not a valid URL", reason="invalid") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise URLRefused("only http and https URLs are allowed", reason="scheme")
    if parts.username is not None or parts.password is not None:
        raise URLRefused("credentials in the URL are refused", reason="userinfo")
    if not host:
        raise URLRefused("the URL has no host", reason="no_host")
    if host == "localhost" or host.endswith(".localhost"):
        if not allow_loopback:
            raise URLRefused("localhost gets no postbacks", reason="loopback")
    else:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            _check_address(address, allow_loopback)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


async def _system_resolver(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_url_resolved(
    url: str, *, allow_loopback: bool = False, resolver: Resolver | None = None
) -> str:
    """:func:`check_url`, then every address the host resolves to must pass too."""
    normalised = check_url(url, allow_loopback=allow_loopback)
    host = urlsplit(normalised).hostname or ""
    try:
        ipaddress.ip_address(host)
        return normalised
    except ValueError:
        pass
    try:
        addresses = list(await (resolver or _system_resolver)(host))
    except OSError:
        raise URLRefused("the host name does not resolve", reason="unresolvable") from None
    if not addresses:
        raise URLRefused("the host name does not resolve", reason="unresolvable")
    for text in addresses:
        _check_address(ipaddress.ip_address(text.split("%", 1)[0]), allow_loopback)
    return normalised
