"""Which Postback URLs the service accepts: the broker's rule, and SSRF defence.

The broker sends nothing to ``localhost`` or ``127.0.0.1``. A sender that POSTs to any URL a
user types is also a way into the network it runs in (cloud metadata, databases, admin panels),
so the service refuses every address that is not a public unicast one, in every spelling a URL
parser or ``inet_aton`` accepts, and checks again at connect time so DNS rebinding fails.

Three layers, each cheap:

1. :func:`check_url` (no DNS): shape, scheme, userinfo, port, and the host itself: a literal
   address in any spelling, a ``localhost`` name, a metadata name, an internal-only name.
   It returns the normalised URL: store and send *that* string, so what was checked is what
   is connected to.
2. :func:`check_url_resolved`: the same, then every address the name resolves to.
3. :class:`GuardedResolver`: inside aiohttp's connector, every address a connection is about
   to use, whatever DNS answered a minute ago; build the connector with
   ``aiohttp.TCPConnector(**GuardedResolver(...).guard_connector_kwargs(...))``.

Every refusal is an :class:`~dhan_postback.errors.URLRefused` whose ``reason`` is one of
:data:`REASONS` and whose message names it; no message repeats a URL's userinfo.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import unicodedata
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import idna
from aiohttp import DefaultResolver
from aiohttp.abc import AbstractResolver, ResolveResult

from .errors import URLRefused

__all__ = [
    "ADDRESS_CLASSES",
    "ALLOWED_SCHEMES",
    "MAX_URL_LENGTH",
    "REASONS",
    "RESOLVE_TIMEOUT_SECONDS",
    "AddressRefusedError",
    "GuardedResolver",
    "IPAddress",
    "IPNetwork",
    "Resolver",
    "address_class",
    "check_address",
    "check_url",
    "check_url_resolved",
    "loopback_warning",
    "refusal_from",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], Awaitable[list[str]]]

MAX_URL_LENGTH: Final = 2048
RESOLVE_TIMEOUT_SECONDS: Final = 10.0
ALLOWED_SCHEMES: Final = {"http": 80, "https": 443}

# ---------------------------------------------------------------------------------------------
# Address classes. Every class below is refused; an address in none of them is public.

_DESCRIPTIONS: Final[dict[str, str]] = {
    "loopback": "a loopback address",
    "private": "a private-network address",
    "link_local": "a link-local address",
    "metadata": "a cloud metadata endpoint",
    "cgnat": "a carrier-grade NAT (shared address space) address",
    "multicast": "a multicast address",
    "unspecified": "an unspecified ('this host') address",
    "reserved": "a reserved, deprecated or non-routable address",
    "broadcast": "the limited broadcast address",
    "documentation": "an address reserved for documentation",
    "benchmarking": "an address reserved for benchmarking",
}
ADDRESS_CLASSES: Final[frozenset[str]] = frozenset(_DESCRIPTIONS)

# Instance metadata services: exact addresses, checked before their enclosing range so the
# reason says what the target really is. (Azure's 168.63.129.16 is a public address that only
# answers from inside Azure, so no range rule would catch it.)
_METADATA_ADDRESSES: Final[frozenset[IPAddress]] = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.170.23",  # AWS EKS pod identity
        "168.63.129.16",  # Azure wire server
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
    )
)


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(network), cls) for network, cls in pairs)


# Order matters: the first match names the class.
_IPV4_CLASSES: Final = _networks(
    ("255.255.255.255/32", "broadcast"),
    ("0.0.0.0/8", "unspecified"),  # "this network": Linux connects 0.x to the local host
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "cgnat"),
    ("169.254.0.0/16", "link_local"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "documentation"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relay anycast
    ("198.18.0.0/15", "benchmarking"),  # also the "fake IP" range of many local proxies
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
_IPV6_CLASSES: Final = _networks(
    ("64:ff9b:1::/48", "private"),  # local-use NAT64 (RFC 8215)
    ("2001:2::/48", "benchmarking"),
    ("2001:db8::/32", "documentation"),
    ("2001::/23", "reserved"),  # IETF protocol assignments, Teredo included
    ("3fff::/20", "documentation"),
    ("fc00::/7", "private"),  # unique local
    ("fec0::/10", "private"),  # deprecated site-local
    ("fe80::/10", "link_local"),
    ("ff00::/8", "multicast"),
)
_GLOBAL_UNICAST_V6: Final = ipaddress.IPv6Network("2000::/3")
_NAT64_WELL_KNOWN: Final = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_TRANSLATED_PREFIX: Final = 0xFFFF0000  # ::ffff:0:a.b.c.d (SIIT), the top 96 bits >> 32


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, bool] | None:
    """The IPv4 address carried inside ``address``, and whether that embedding routes.

    IPv4-mapped, NAT64 (well-known prefix) and 6to4 addresses reach their IPv4 address, so a
    public one is allowed; IPv4-compatible, SIIT-translated and Teredo addresses are deprecated
    or tunnel-only, so they are refused even when the IPv4 address inside is public.
    """
    value = int(address)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, True
    if address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF), True
    if address.sixtofour is not None:
        return address.sixtofour, True
    if value >> 32 == 0 or value >> 32 == _IPV4_TRANSLATED_PREFIX:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF), False
    if address.teredo is not None:
        return address.teredo[1], False
    return None


def _classify(address: IPAddress) -> tuple[str, ipaddress.IPv4Address | None] | None:
    """``(class, embedded IPv4 or None)`` for a forbidden address, ``None`` for a public one."""
    if address in _METADATA_ADDRESSES:
        return "metadata", None
    if isinstance(address, ipaddress.IPv4Address):
        for network, cls in _IPV4_CLASSES:
            if address in network:
                return cls, None
        return None
    if address == ipaddress.IPv6Address("::"):
        return "unspecified", None
    if address == ipaddress.IPv6Address("::1"):
        return "loopback", None
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        inner, routes = embedded
        inner_class = _classify(inner)
        if inner_class is not None:
            return inner_class[0], inner
        if routes:
            return None
    for network, cls in _IPV6_CLASSES:
        if address in network:
            return cls, None
    if address not in _GLOBAL_UNICAST_V6:
        return "reserved", None
    return None


def address_class(address: str | IPAddress) -> str | None:
    """The refused class of ``address`` (one of :data:`ADDRESS_CLASSES`), or ``None`` if public.

    Raises ``ValueError`` when ``address`` is not an IP address.
    """
    classified = _classify(_as_address(address))
    return classified[0] if classified else None


def _as_address(address: str | IPAddress) -> IPAddress:
    """An address from an object or a string: canonical, ``inet_aton`` spellings, zone ids."""
    if not isinstance(address, str):
        return address
    text = address.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]  # a zone id selects an interface, never changes the class
    if not text.isascii():
        raise ValueError(f"not an IP address: {address!a}")
    if ":" in text:
        return ipaddress.IPv6Address(text)
    parsed = _parse_ipv4(text)
    if parsed is None:
        raise ValueError(f"not an IP address: {address!a}")
    return parsed


def check_address(address: str | IPAddress, *, allow_loopback: bool = False) -> None:
    """Raise :class:`URLRefused` when ``address`` may not be connected to.

    The reason is the address's class (``loopback``, ``private``, ``metadata``...), or
    ``bad_host`` when ``address`` is not an IP address at all.
    """
    try:
        parsed = _as_address(address)
    except ValueError:
        raise _refusal("bad_host", "the address is not an IP address") from None
    refused = _refused_class(parsed, allow_loopback=allow_loopback)
    if refused is not None:
        raise _refusal(refused[0], _describe(str(parsed), refused))


def _refused_class(
    address: IPAddress, *, allow_loopback: bool
) -> tuple[str, ipaddress.IPv4Address | None] | None:
    classified = _classify(address)
    if classified is None or (allow_loopback and classified[0] == "loopback"):
        return None
    return classified


def _describe(host: str, classified: tuple[str, ipaddress.IPv4Address | None]) -> str:
    cls, embedded = classified
    if embedded is not None:
        return f"{host} embeds {embedded}, {_DESCRIPTIONS[cls]}"
    return f"{host} is {_DESCRIPTIONS[cls]}"


# ---------------------------------------------------------------------------------------------
# IPv4 the way inet_aton (and so getaddrinfo) and the WHATWG URL parser read it:
# 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last part fills the rest.

_HEX_DIGITS: Final = frozenset("0123456789abcdef")
_OCTAL_DIGITS: Final = frozenset("01234567")
_DECIMAL_DIGITS: Final = frozenset("0123456789")


def _parse_ipv4_part(part: str) -> int | None:
    if part.startswith("0x"):
        digits = part[2:]
        if not _HEX_DIGITS.issuperset(digits):
            return None
        return int(digits, 16) if digits else 0
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8) if _OCTAL_DIGITS.issuperset(part) else None
    return int(part) if part and _DECIMAL_DIGITS.issuperset(part) else None


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``host`` as an IPv4 address in any ``inet_aton`` spelling, or ``None``."""
    parts = host.split(".")
    if len(parts) > 4:
        return None
    numbers = [_parse_ipv4_part(part) for part in parts]
    if any(number is None for number in numbers):
        return None
    values = [number for number in numbers if number is not None]
    *leading, last = values
    if any(value > 255 for value in leading) or last >= 256 ** (5 - len(values)):
        return None
    total = last
    for index, value in enumerate(leading):
        total += value << (8 * (3 - index))
    return ipaddress.IPv4Address(total)


def _ends_in_number(host: str) -> bool:
    """WHATWG's test: a host whose last label is numeric must be an IPv4 address, or nothing."""
    last = host.rsplit(".", 1)[-1]
    if last and _DECIMAL_DIGITS.issuperset(last):
        return True
    return last.startswith("0x") and _HEX_DIGITS.issuperset(last[2:])


# ---------------------------------------------------------------------------------------------
# Host names.

_LOCALHOST_NAMES: Final = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "localhost4",
        "localhost4.localdomain4",
        "localhost6",
        "localhost6.localdomain6",
        "ip6-localhost",
        "ip6-loopback",
    }
)
_METADATA_NAMES: Final = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
# Top-level names that never resolve on the public Internet: special-use (RFC 6761, 6762,
# 7686, 8375, 9476), ICANN's private-use ``internal``, and names that ICANN will not delegate
# because so many private networks use them.
_INTERNAL_SUFFIXES: Final = frozenset(
    {
        "local",
        "localdomain",
        "internal",
        "intranet",
        "lan",
        "home",
        "corp",
        "private",
        "invalid",
        "onion",
        "alt",
        "arpa",
    }
)
_HOST_NAME: Final = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_MAX_HOST_LENGTH: Final = 253
_MAX_LABEL_LENGTH: Final = 63


def _is_localhost_name(host: str) -> bool:
    return host in _LOCALHOST_NAMES or host.endswith(".localhost")


def _name_refusal(host: str, *, allow_loopback: bool) -> URLRefused | None:
    if _is_localhost_name(host):
        if allow_loopback:
            return None
        return _refusal("localhost", f"{host} is a name for this machine")
    if host in _METADATA_NAMES:
        return _refusal("metadata", f"{host} is a cloud metadata endpoint")
    if "." not in host:
        return _refusal(
            "internal_name",
            f"{host} is a single-label name, resolved only inside a local network",
        )
    if host.rsplit(".", 1)[1] in _INTERNAL_SUFFIXES:
        return _refusal("internal_name", f"{host} is under a top-level name no public DNS serves")
    return None


# ---------------------------------------------------------------------------------------------
# Ports. The Fetch standard's "bad ports": browsers refuse them because a request to them
# speaks HTTP at a mail, shell, DNS, ... server. So do we.

_BLOCKED_PORTS: Final = frozenset(
    {
        *(1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79),
        *(87, 95, 101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139),
        *(143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548),
        *(554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659),
        *(4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697),
        10080,
    }
)

# ---------------------------------------------------------------------------------------------
# Reasons.

_URL_REASONS: Final = frozenset(
    {
        "too_long",
        "bad_character",
        "scheme",
        "malformed",
        "userinfo",
        "missing_host",
        "bad_host",
        "bad_port",
        "blocked_port",
        "zone_id",
        "localhost",
        "internal_name",
        "unresolvable",
    }
)
REASONS: Final[frozenset[str]] = (
    _URL_REASONS | ADDRESS_CLASSES | frozenset(f"resolves_to_{cls}" for cls in ADDRESS_CLASSES)
)


def _refusal(reason: str, detail: str) -> URLRefused:
    assert reason in REASONS, reason
    return URLRefused(f"Postback URL refused ({reason}): {detail}", reason=reason)


def loopback_warning() -> str:
    """The line to log at start when loopback URLs are allowed."""
    return (
        "allow-loopback is on: Postback URLs on localhost, 127.0.0.0/8 and [::1] are accepted "
        "for local development only; the broker refuses them, and private and metadata "
        "addresses stay refused"
    )


# ---------------------------------------------------------------------------------------------
# check_url

_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_PERCENT_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ASCII_UNSAFE: Final = re.compile(r"[\x00-\x20\x7f\\]")
_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})


@dataclass(frozen=True, slots=True)
class _CheckedURL:
    url: str
    host: str  # normalised: a name, a dotted IPv4 address, or an IPv6 address without brackets
    port: int
    is_address: bool


def check_url(url: str, *, allow_loopback: bool = False) -> str:
    """The normalised ``url`` if the policy accepts it without DNS, else :class:`URLRefused`.

    Normalised: lower-case scheme and host, IDN host as punycode, an IP address in its
    canonical spelling, no trailing dot, no default port, the path (``/`` if empty) and query
    kept, the fragment dropped.
    """
    return _check(url, allow_loopback=allow_loopback).url


def _check(url: str, *, allow_loopback: bool) -> _CheckedURL:
    if not isinstance(url, str):
        raise _refusal("malformed", "the URL is not a string")
    if len(url) > MAX_URL_LENGTH:
        raise _refusal("too_long", f"the URL is longer than {MAX_URL_LENGTH} characters")
    _check_characters(url)

    match = _SCHEME.match(url)
    if match is None:
        raise _refusal("scheme", "the URL has no scheme; use http:// or https://")
    scheme = match.group(1).lower()
    if scheme not in ALLOWED_SCHEMES:
        raise _refusal("scheme", f"scheme {scheme!r} is not allowed; use http:// or https://")
    rest = url[match.end() :]
    if not rest.startswith("//"):
        raise _refusal("malformed", f"the URL must start with {scheme}://")
    rest = rest[2:]

    authority_end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority, rest = rest[:authority_end], rest[authority_end:]
    if "@" in authority:
        raise _refusal("userinfo", "the URL carries a user name or password (user@host)")
    rest = rest.split("#", 1)[0]
    path, question, query = rest.partition("?")

    host, is_address, port_text = _parse_authority(authority, allow_loopback=allow_loopback)
    port = _parse_port(port_text, default=ALLOWED_SCHEMES[scheme])
    netloc = f"[{host}]" if ":" in host else host
    if port != ALLOWED_SCHEMES[scheme]:
        netloc = f"{netloc}:{port}"
    normalised = f"{scheme}://{netloc}{path or '/'}{question}{query}"
    return _CheckedURL(normalised, host, port, is_address)


def _check_characters(url: str) -> None:
    unsafe = _ASCII_UNSAFE.search(url)
    if unsafe is not None:
        char = unsafe.group()
        if char == "\\":
            what = "a backslash (parsers disagree about what it means)"
        elif char == " ":
            what = "a space"
        else:
            what = f"a control character (U+{ord(char):04X})"
        raise _refusal("bad_character", f"the URL contains {what} at position {unsafe.start()}")
    if url.isascii():
        return
    for position, char in enumerate(url):
        if not char.isascii() and (
            char.isspace() or unicodedata.category(char) in _UNSAFE_CATEGORIES
        ):
            raise _refusal(
                "bad_character",
                f"the URL contains an invisible or space character (U+{ord(char):04X}) "
                f"at position {position}",
            )


def _parse_authority(authority: str, *, allow_loopback: bool) -> tuple[str, bool, str | None]:
    """``(normalised host, is an IP address, port text or None)``, checked."""
    if authority.startswith("["):
        literal, bracket, after = authority[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise _refusal(
                "bad_host", "an IPv6 address must be written [address] or [address]:port"
            )
        port_text = after[1:] if after else None
        address = _parse_ipv6_literal(literal)
        refused = _refused_class(address, allow_loopback=allow_loopback)
        if refused is not None:
            raise _refusal(refused[0], _describe(f"host [{literal}]", refused))
        return address.compressed, True, port_text

    raw_host, colon, port_text = authority.partition(":")
    if not raw_host:
        raise _refusal("missing_host", "the URL has no host")
    host = _normalise_host_name(raw_host)
    if _ends_in_number(host):
        ipv4 = _parse_ipv4(host)
        if ipv4 is None:
            raise _refusal("bad_host", "the host ends in a number but is not an IPv4 address")
        refused = _refused_class(ipv4, allow_loopback=allow_loopback)
        if refused is not None:
            raise _refusal(refused[0], _describe(f"host {ipv4}", refused))
        return str(ipv4), True, port_text if colon else None
    name_refusal = _name_refusal(host, allow_loopback=allow_loopback)
    if name_refusal is not None:
        raise name_refusal
    return host, False, port_text if colon else None


def _parse_ipv6_literal(literal: str) -> ipaddress.IPv6Address:
    if "%" in literal:
        raise _refusal("zone_id", "an IPv6 zone id (%interface) names a local network interface")
    if not literal.isascii():
        raise _refusal("bad_host", "the IPv6 address has characters outside ASCII")
    try:
        return ipaddress.IPv6Address(literal)
    except ValueError:
        raise _refusal("bad_host", "the bracketed host is not an IPv6 address") from None


def _normalise_host_name(raw: str) -> str:
    """``raw`` percent-decoded, IDNA-mapped (so full-width digits become digits), punycoded,
    lower-cased, without its trailing dot, and checked to be a plausible DNS name."""
    host = raw
    if "%" in host:
        if _PERCENT_ESCAPE.search(host):
            raise _refusal("bad_host", "the host has a malformed percent-escape")
        try:
            host = urllib.parse.unquote_to_bytes(host).decode("utf-8")
        except UnicodeDecodeError:
            raise _refusal("bad_host", "the host's percent-escapes are not UTF-8") from None
    if not host.isascii():
        try:
            mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
            host = ".".join(
                label if label.isascii() else idna.alabel(label).decode("ascii")
                for label in mapped.split(".")
            )
        except (idna.IDNAError, UnicodeError, ValueError):
            raise _refusal("bad_host", "the host is not a valid internationalised name") from None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise _refusal("missing_host", "the URL has no host")
    if (
        _HOST_NAME.fullmatch(host) is None
        or len(host) > _MAX_HOST_LENGTH
        or any(len(label) > _MAX_LABEL_LENGTH for label in host.split("."))
    ):
        raise _refusal("bad_host", "the host is not a valid DNS name or IP address")
    return host


def _parse_port(text: str | None, *, default: int) -> int:
    if text is None:
        return default
    if not text or not _DECIMAL_DIGITS.issuperset(text) or len(text) > 5:
        raise _refusal("bad_port", "the port must be a number from 1 to 65535")
    port = int(text)
    if not 0 < port <= 65535:
        raise _refusal("bad_port", "the port must be a number from 1 to 65535")
    if port in _BLOCKED_PORTS:
        raise _refusal("blocked_port", f"port {port} belongs to a non-HTTP service")
    return port


# ---------------------------------------------------------------------------------------------
# check_url_resolved


async def _system_resolver(host: str) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _resolution_refusal(host: str, address: str, *, allow_loopback: bool) -> URLRefused | None:
    """The refusal for ``host`` resolving to ``address``, or ``None`` when that is fine."""
    try:
        parsed = _as_address(address)
    except ValueError:
        return _refusal("unresolvable", f"{host} resolved to something that is not an address")
    refused = _refused_class(parsed, allow_loopback=allow_loopback)
    if refused is None:
        return None
    cls = refused[0]
    return _refusal(f"resolves_to_{cls}", f"{host} resolves to {_describe(str(parsed), refused)}")


async def check_url_resolved(
    url: str, *, allow_loopback: bool = False, resolver: Resolver | None = None
) -> str:
    """:func:`check_url`, then refuse when *any* address the host resolves to is forbidden.

    ``resolver`` maps a host name to its addresses (default: the system's ``getaddrinfo``);
    a name with no address, or whose lookup fails, is ``unresolvable``. An IP literal is not
    looked up. Resolution can change later: connect through :class:`GuardedResolver` too.
    """
    checked = _check(url, allow_loopback=allow_loopback)
    if checked.is_address:
        return checked.url
    lookup = resolver or _system_resolver
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            addresses = await lookup(checked.host)
    except (OSError, UnicodeError) as exc:
        detail = "the lookup timed out" if isinstance(exc, TimeoutError) else "no such name"
        raise _refusal("unresolvable", f"{checked.host} does not resolve ({detail})") from None
    if not addresses:
        raise _refusal("unresolvable", f"{checked.host} has no address")
    for address in addresses:
        refusal = _resolution_refusal(checked.host, address, allow_loopback=allow_loopback)
        if refusal is not None:
            raise refusal
    return checked.url


# ---------------------------------------------------------------------------------------------
# Connect-time guard


class AddressRefusedError(OSError):
    """A connection the policy stopped before it was made; ``refusal`` says why.

    An ``OSError`` so that aiohttp reports it as a ``ClientConnectorError`` (whose
    ``os_error`` is this), like any other failure to connect.
    """

    def __init__(self, refusal: URLRefused) -> None:
        super().__init__(None, refusal.message)
        self.refusal = refusal
        self.reason = refusal.reason

    def __str__(self) -> str:
        return self.refusal.message


def refusal_from(error: BaseException) -> URLRefused | None:
    """The :class:`URLRefused` behind a connection error raised through :class:`GuardedResolver`,
    or ``None`` when ``error`` is some other failure (so the caller can tell them apart)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, URLRefused):
            return current
        if isinstance(current, AddressRefusedError):
            return current.refusal
        pending.extend((getattr(current, "os_error", None), current.__cause__, current.__context__))
    return None


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses forbidden addresses at connect time.

    Every answer of the inner resolver (aiohttp's default unless given) is checked; if *any*
    address is forbidden the lookup fails with :class:`AddressRefusedError` (reason
    ``resolves_to_<class>``), which aiohttp raises as ``ClientConnectorError``. So a name that
    was public when the URL was saved and points at 127.0.0.1 now (DNS rebinding) gets no
    connection. aiohttp connects to IP literals without asking a resolver; the socket factory
    in :meth:`guard_connector_kwargs` checks those (reason: the address's class).

    Build the dispatcher's connector with both, and keep redirects off::

        guard = GuardedResolver(allow_loopback=settings.allow_loopback)
        connector = aiohttp.TCPConnector(**guard.guard_connector_kwargs(limit_per_host=8))
        session = aiohttp.ClientSession(connector=connector)  # trust_env stays False
        await session.post(url, data=body, allow_redirects=False)
    """

    def __init__(
        self, *, allow_loopback: bool = False, inner: AbstractResolver | None = None
    ) -> None:
        self.allow_loopback = allow_loopback
        self._inner = inner  # aiohttp's default needs a running loop: made on first use

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = DefaultResolver()
        results = await self._inner.resolve(host, port, family)
        for result in results:
            refusal = _resolution_refusal(host, result["host"], allow_loopback=self.allow_loopback)
            if refusal is not None:
                raise AddressRefusedError(refusal)
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()

    def guard_connector_kwargs(self, **connector_kwargs: Any) -> dict[str, Any]:
        """Keyword arguments for ``aiohttp.TCPConnector``: ``connector_kwargs`` plus this
        resolver and a socket factory that refuses forbidden literal addresses."""
        if "resolver" in connector_kwargs:
            raise TypeError("the guard is the resolver; wrap yours with GuardedResolver(inner=)")
        make_socket: Callable[[Any], socket.socket] | None = connector_kwargs.pop(
            "socket_factory", None
        )

        def guarded_socket(addr_info: Any) -> socket.socket:
            family, kind, proto, _, sockaddr = addr_info
            try:
                check_address(str(sockaddr[0]), allow_loopback=self.allow_loopback)
            except URLRefused as refusal:
                raise AddressRefusedError(refusal) from None
            if make_socket is not None:
                return make_socket(addr_info)
            return socket.socket(family=family, type=kind, proto=proto)

        return {**connector_kwargs, "resolver": self, "socket_factory": guarded_socket}
