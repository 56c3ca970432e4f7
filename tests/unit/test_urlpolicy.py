"""The URL policy as a specification: what is refused, why, and what gets through.

No test here touches DNS or the network: names are answered by injected fake resolvers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given, settings
from hypothesis import strategies as st

from dhan_postback import errors, urlpolicy
from dhan_postback.urlpolicy import (
    ADDRESS_CLASSES,
    REASONS,
    AddressRefusedError,
    GuardedResolver,
    address_class,
    check_address,
    check_url,
    check_url_resolved,
    loopback_warning,
    refusal_from,
)

# (url, reason): every spelling a URL parser, inet_aton or IDNA turns into something forbidden.
REFUSED: list[tuple[str, str]] = [
    # loopback, in every spelling
    ("http://127.0.0.1/", "loopback"),
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://127.255.255.254/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://127.0.1/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://0X7F000001/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://0x7f.0x0.0x0.0x1/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://127.0.0.1./", "loopback"),
    ("http://[::1]/", "loopback"),
    ("https://[::1]:8443/", "loopback"),
    ("http://[0:0:0:0:0:0:0:1]/", "loopback"),
    ("http://[0000:0000:0000:0000:0000:0000:0000:0001]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:7f00:1]/", "loopback"),
    ("http://[::FFFF:7F00:1]/", "loopback"),
    ("http://[::127.0.0.1]/", "loopback"),
    ("http://[64:ff9b::127.0.0.1]/", "loopback"),
    ("http://[2002:7f00:1::]/", "loopback"),
    ("http://１２７.０.０.１/", "loopback"),  # noqa: RUF001 (look-alike characters are the case)
    ("http://１２７。０。０。１/", "loopback"),  # noqa: RUF001 (look-alike characters are the case)
    ("http://%31%32%37.0.0.1/", "loopback"),
    ("http://%EF%BC%91%EF%BC%92%EF%BC%97.0.0.1/", "loopback"),
    # names for this machine
    ("http://localhost/", "localhost"),
    ("http://LocalHost/", "localhost"),
    ("http://LOCALHOST:8000/hook", "localhost"),
    ("http://localhost./", "localhost"),
    ("http://api.localhost/", "localhost"),
    ("http://localhost.localdomain/", "localhost"),
    ("http://ip6-localhost/", "localhost"),
    ("http://ⓛocalhost/", "localhost"),
    ("http://%6c%6f%63%61%6c%68%6f%73%74/", "localhost"),
    # unspecified ("this host")
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://0.1.2.3/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://[::ffff:0.0.0.0]/", "unspecified"),
    # private networks
    ("http://10.0.0.1/", "private"),
    ("http://0xa000001/", "private"),
    ("http://012.1/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.255/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://3232235777/", "private"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[::ffff:c0a8:101]/", "private"),
    ("http://[fc00::1]/", "private"),
    ("http://[fd12:3456:789a::1]/", "private"),
    ("http://[fec0::1]/", "private"),
    ("http://[64:ff9b:1::a00:1]/", "private"),
    # link-local and cloud metadata
    ("http://169.254.1.1/", "link_local"),
    ("http://[fe80::1]/", "link_local"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://2852039166/", "metadata"),
    ("http://0xa9fea9fe/", "metadata"),
    ("http://0251.0376.0251.0376/", "metadata"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://100.100.100.200/", "metadata"),
    ("http://168.63.129.16/", "metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("http://METADATA.GOOGLE.INTERNAL./", "metadata"),
    ("http://metadata/", "metadata"),
    # carrier-grade NAT, multicast, broadcast, reserved
    ("http://100.64.0.1/", "cgnat"),
    ("http://100.127.255.254/", "cgnat"),
    ("http://224.0.0.1/", "multicast"),
    ("http://239.255.255.250/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://4294967295/", "broadcast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://192.0.0.8/", "reserved"),
    ("http://[100::1]/", "reserved"),
    ("http://[::8.8.8.8]/", "reserved"),
    ("http://[2001::1]/", "reserved"),
    # documentation and benchmarking ranges
    ("http://192.0.2.1/", "documentation"),
    ("http://198.51.100.7/", "documentation"),
    ("http://203.0.113.9/", "documentation"),
    ("http://[2001:db8::1]/", "documentation"),
    ("http://198.18.0.1/", "benchmarking"),
    ("http://[2001:2::1]/", "benchmarking"),
    # IPv6 zone ids
    ("http://[fe80::1%25eth0]/", "zone_id"),
    ("http://[fe80::1%eth0]/", "zone_id"),
    ("http://[2606:4700::1%251]/", "zone_id"),
    # names only a local network resolves
    ("http://intranet/", "internal_name"),
    ("http://printer.local/", "internal_name"),
    ("http://db.internal/", "internal_name"),
    ("http://router.home.arpa/", "internal_name"),
    ("http://1.0.0.127.in-addr.arpa/", "internal_name"),
    ("http://build.corp/", "internal_name"),
    # userinfo
    ("http://user:pass@example.com/", "userinfo"),
    ("http://evil.com@127.0.0.1/", "userinfo"),
    ("http://user@example.com/", "userinfo"),
    ("http://@example.com/", "userinfo"),
    ("http://127.0.0.1%2f@example.com/", "userinfo"),
    # schemes
    ("file:///etc/passwd", "scheme"),
    ("ftp://example.com/", "scheme"),
    ("gopher://127.0.0.1:6379/_INFO", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("data:text/plain,hello", "scheme"),
    ("ws://example.com/", "scheme"),
    ("wss://example.com/", "scheme"),
    ("example.com/hook", "scheme"),
    ("//example.com/hook", "scheme"),
    # malformed
    ("http:example.com", "malformed"),
    ("http:/example.com", "malformed"),
    ("http:///path", "missing_host"),
    ("http://", "missing_host"),
    ("http://:8080/", "missing_host"),
    ("http://example.com:99999/", "bad_port"),
    ("http://example.com:0/", "bad_port"),
    ("http://example.com:abc/", "bad_port"),
    ("http://example.com:/", "bad_port"),
    ("http://example.com:８０/", "bad_port"),  # noqa: RUF001 (look-alike characters are the case)
    ("http://[2606:4700::1111]:/", "bad_port"),
    ("http://example.com:25/", "blocked_port"),
    ("http://example.com:6667/", "blocked_port"),
    ("http://exa mple.com/", "bad_character"),
    (" http://example.com/", "bad_character"),
    ("http://example.com/\r\nX-Injected: 1", "bad_character"),
    ("http://example.com\x00.evil.com/", "bad_character"),
    ("http://example.com/\x7f", "bad_character"),
    ("http://example.com/\u200bhook", "bad_character"),
    ("http://example.com\u3000/", "bad_character"),
    ("http://a\\@127.0.0.1", "bad_character"),
    ("http://example.com\\@127.0.0.1/", "bad_character"),
    ("http:\\\\127.0.0.1\\", "bad_character"),
    ("http://example.com/" + "a" * 2048, "too_long"),
    ("http://example..com/", "bad_host"),
    ("http://1.2.3.999/", "bad_host"),
    ("http://256.0.0.1/", "bad_host"),
    ("http://08.0.0.1/", "bad_host"),
    ("http://127.0.0.0.1/", "bad_host"),
    ("http://example.0x7f/", "bad_host"),
    ("http://[::1/", "bad_host"),
    ("http://[::1]x/", "bad_host"),
    ("http://[v1.fe]/", "bad_host"),
    ("http://[::ffff:127.1]/", "bad_host"),
    ("http://%zz.example.com/", "bad_host"),
    ("http://exa%2fmple.com/", "bad_host"),
    ("http://a*b.example.com/", "bad_host"),
    ("http://" + "a" * 64 + ".example.com/", "bad_host"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED, ids=[repr(url)[:60] for url, _ in REFUSED])
def test_refused_url_names_its_reason(url: str, reason: str) -> None:
    with pytest.raises(errors.URLRefused) as refused:
        check_url(url)
    assert refused.value.reason == reason
    assert f"({reason})" in refused.value.message


def test_refused_table_covers_every_url_reason() -> None:
    resolution_only = {"unresolvable"} | {f"resolves_to_{cls}" for cls in ADDRESS_CLASSES}
    assert {reason for _, reason in REFUSED} == REASONS - resolution_only


def test_every_reason_is_a_short_tag() -> None:
    assert all(reason.isidentifier() and reason.islower() for reason in REASONS)


def test_refusal_is_the_brokers_input_error_with_status_422() -> None:
    with pytest.raises(errors.URLRefused) as refused:
        check_url("http://localhost/")
    assert refused.value.http_status == 422
    assert errors.error_body(refused.value)["errorCode"] == "DH-905"


@pytest.mark.parametrize(
    "url",
    [
        "http://alice:s3cr3t-pw@example.com/",
        "http://alice:s3cr3t-pw@127.0.0.1/",
        "http://alice:s3cr3t-pw\\@127.0.0.1/",
        "http://alice:s3cr3t-pw x@example.com/",
    ],
)
def test_refusal_never_repeats_credentials(url: str) -> None:
    with pytest.raises(errors.URLRefused) as refused:
        check_url(url)
    assert "s3cr3t-pw" not in refused.value.message
    assert "alice" not in refused.value.message


# (url, normalised)
ALLOWED: list[tuple[str, str]] = [
    ("http://8.8.8.8/", "http://8.8.8.8/"),
    ("https://1.1.1.1/hook?x=1", "https://1.1.1.1/hook?x=1"),
    ("http://134744072/", "http://8.8.8.8/"),
    ("http://0x08080808/", "http://8.8.8.8/"),
    ("https://[2606:4700:4700::1111]/", "https://[2606:4700:4700::1111]/"),
    ("https://[2606:4700:4700:0:0:0:0:1111]/", "https://[2606:4700:4700::1111]/"),
    ("https://[2606:4700:4700::1111]:8443/", "https://[2606:4700:4700::1111]:8443/"),
    ("HTTPS://Hooks.Example.COM./Path?Q=1#frag", "https://hooks.example.com/Path?Q=1"),
    ("https://example.com", "https://example.com/"),
    ("https://example.com:443/", "https://example.com/"),
    ("http://example.com:80/", "http://example.com/"),
    ("http://example.com:443/", "http://example.com:443/"),
    ("https://example.com:8443/x", "https://example.com:8443/x"),
    ("https://example.com:08443/x", "https://example.com:8443/x"),
    ("https://bücher.de/hook", "https://xn--bcher-kva.de/hook"),
    ("https://ＥＸＡＭＰＬＥ.com/", "https://example.com/"),  # noqa: RUF001 (look-alike characters are the case)
    ("http://ex%61mple.com/", "http://example.com/"),
    ("http://a_b.example.com/", "http://a_b.example.com/"),
    ("https://example.com/a%20b/@c?d=e@f&g=%2F", "https://example.com/a%20b/@c?d=e@f&g=%2F"),
    ("https://example.com?", "https://example.com/?"),
    ("https://example.com#@127.0.0.1", "https://example.com/"),
    ("https://example.com?@127.0.0.1", "https://example.com/?@127.0.0.1"),
    ("https://receiver.test/postback", "https://receiver.test/postback"),
    ("http://[2002:808:808::1]/", "http://[2002:808:808::1]/"),
    ("http://[64:ff9b::8.8.8.8]/", "http://[64:ff9b::808:808]/"),
]


@pytest.mark.parametrize(("url", "normalised"), ALLOWED)
def test_public_url_is_allowed_and_normalised(url: str, normalised: str) -> None:
    assert check_url(url) == normalised


def test_ipv4_mapped_public_address_is_allowed() -> None:
    expected = f"http://[{ipaddress.IPv6Address('::ffff:8.8.8.8').compressed}]/"
    assert check_url("http://[::ffff:8.8.8.8]/") == expected


def test_normalised_url_passes_again_unchanged() -> None:
    for url, normalised in ALLOWED:
        assert check_url(normalised) == normalised, url


def test_url_of_exactly_the_maximum_length_is_allowed() -> None:
    url = "https://example.com/"
    url += "a" * (2048 - len(url))
    assert check_url(url) == url


# --- the sandbox switch -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("http://127.0.0.1:8000/hook", "http://127.0.0.1:8000/hook"),
        ("http://[::1]:8000/", "http://[::1]:8000/"),
        ("http://localhost:8000/", "http://localhost:8000/"),
        ("http://LocalHost./", "http://localhost/"),
        ("http://127.1/", "http://127.0.0.1/"),
        ("http://[::ffff:127.0.0.1]/", f"http://[{ipaddress.ip_address('::ffff:127.0.0.1')}]/"),
    ],
)
def test_allow_loopback_allows_loopback(url: str, normalised: str) -> None:
    assert check_url(url, allow_loopback=True) == normalised


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/", "private"),
        ("http://192.168.0.10:8000/", "private"),
        ("http://169.254.169.254/", "metadata"),
        ("http://metadata.google.internal/", "metadata"),
        ("http://169.254.1.1/", "link_local"),
        ("http://0.0.0.0:8000/", "unspecified"),
        ("http://[fe80::1]/", "link_local"),
        ("http://user:pw@localhost/", "userinfo"),
        ("file:///etc/passwd", "scheme"),
    ],
)
def test_allow_loopback_still_refuses_everything_else(url: str, reason: str) -> None:
    with pytest.raises(errors.URLRefused) as refused:
        check_url(url, allow_loopback=True)
    assert refused.value.reason == reason


def test_loopback_warning_is_one_line_saying_local_development_and_broker_refuses() -> None:
    warning = loopback_warning()
    assert "\n" not in warning
    assert "local development" in warning
    assert "broker refuses" in warning


# --- check_address ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        (ipaddress.ip_address("::1"), "loopback"),
        ("127.1", "loopback"),
        ("fe80::1%eth0", "link_local"),
        ("[::ffff:10.1.2.3]", "private"),
        ("169.254.169.254", "metadata"),
        ("not-an-address", "bad_host"),
    ],
)
def test_check_address_refuses_forbidden_addresses(
    address: str | ipaddress.IPv4Address | ipaddress.IPv6Address, reason: str
) -> None:
    with pytest.raises(errors.URLRefused) as refused:
        check_address(address)
    assert refused.value.reason == reason


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "::ffff:1.1.1.1"])
def test_check_address_allows_public_addresses(address: str) -> None:
    check_address(address)
    assert address_class(address) is None


def test_check_address_allow_loopback_allows_only_loopback() -> None:
    check_address("127.0.0.1", allow_loopback=True)
    check_address("::1", allow_loopback=True)
    with pytest.raises(errors.URLRefused):
        check_address("10.0.0.1", allow_loopback=True)


# --- check_url_resolved: DNS answers, injected -----------------------------------------------


def fake_resolver(
    answers: dict[str, list[str]], calls: list[str] | None = None
) -> Callable[[str], Awaitable[list[str]]]:
    """A resolver that knows only ``answers`` and fails like getaddrinfo for anything else."""

    async def resolve(host: str) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    return resolve


PUBLIC_DNS = fake_resolver(
    {
        "hooks.trader.example.com": ["93.184.216.34", "2606:2800:220:1::1"],
        "xn--bcher-kva.de": ["81.169.145.78"],
        "rebind.example.net": ["127.0.0.1"],
        "split.example.net": ["93.184.216.34", "10.1.2.3"],
        "imds.example.net": ["169.254.169.254"],
        "mapped.example.net": ["::ffff:192.168.0.1"],
        "scoped.example.net": ["fe80::1%eth0"],
        "empty.example.net": [],
        "garbage.example.net": ["not an address"],
    }
)


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://hooks.trader.example.com/postback", "https://hooks.trader.example.com/postback"),
        ("https://Bücher.de/hook", "https://xn--bcher-kva.de/hook"),
        ("http://8.8.8.8:8080/", "http://8.8.8.8:8080/"),
    ],
)
async def test_resolved_public_url_is_allowed(url: str, normalised: str) -> None:
    assert await check_url_resolved(url, resolver=PUBLIC_DNS) == normalised


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://rebind.example.net/", "resolves_to_loopback"),
        ("https://split.example.net/", "resolves_to_private"),
        ("https://imds.example.net/", "resolves_to_metadata"),
        ("https://mapped.example.net/", "resolves_to_private"),
        ("https://scoped.example.net/", "resolves_to_link_local"),
        ("https://empty.example.net/", "unresolvable"),
        ("https://garbage.example.net/", "unresolvable"),
        ("https://no-such-name.example.net/", "unresolvable"),
    ],
)
async def test_name_resolving_to_a_forbidden_address_is_refused(url: str, reason: str) -> None:
    with pytest.raises(errors.URLRefused) as refused:
        await check_url_resolved(url, resolver=PUBLIC_DNS)
    assert refused.value.reason == reason
    assert f"({reason})" in refused.value.message


async def test_dns_rebinding_name_is_refused_even_when_it_looks_public() -> None:
    resolver = fake_resolver({"totally-public.example.com": ["8.8.8.8", "127.0.0.1"]})
    with pytest.raises(errors.URLRefused) as refused:
        await check_url_resolved("https://totally-public.example.com/", resolver=resolver)
    assert refused.value.reason == "resolves_to_loopback"


async def test_allow_loopback_accepts_a_name_resolving_to_loopback() -> None:
    resolver = fake_resolver({"localhost": ["127.0.0.1", "::1"]})
    url = await check_url_resolved("http://localhost:8000/", allow_loopback=True, resolver=resolver)
    assert url == "http://localhost:8000/"


async def test_allow_loopback_still_refuses_a_name_resolving_to_private() -> None:
    resolver = fake_resolver({"localhost": ["10.0.0.1"], "app.example.com": ["169.254.169.254"]})
    with pytest.raises(errors.URLRefused) as private:
        await check_url_resolved("http://localhost/", allow_loopback=True, resolver=resolver)
    with pytest.raises(errors.URLRefused) as metadata:
        await check_url_resolved("http://app.example.com/", allow_loopback=True, resolver=resolver)
    assert (private.value.reason, metadata.value.reason) == (
        "resolves_to_private",
        "resolves_to_metadata",
    )


async def test_lookup_that_never_answers_is_unresolvable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(urlpolicy, "RESOLVE_TIMEOUT_SECONDS", 0.01)

    async def silent(host: str) -> list[str]:
        await asyncio.Event().wait()
        return []

    with pytest.raises(errors.URLRefused) as refused:
        await check_url_resolved("https://slow.example.com/", resolver=silent)
    assert refused.value.reason == "unresolvable"
    assert "timed out" in refused.value.message


async def test_ip_literal_is_not_looked_up() -> None:
    calls: list[str] = []
    assert await check_url_resolved("http://8.8.8.8/", resolver=fake_resolver({}, calls))
    assert calls == []


async def test_url_refused_before_dns_is_not_looked_up() -> None:
    calls: list[str] = []
    with pytest.raises(errors.URLRefused) as refused:
        await check_url_resolved("http://localhost/", resolver=fake_resolver({}, calls))
    assert refused.value.reason == "localhost"
    assert calls == []


async def test_resolver_is_asked_for_the_normalised_name() -> None:
    calls: list[str] = []
    resolver = fake_resolver({"xn--bcher-kva.de": ["81.169.145.78"]}, calls)
    await check_url_resolved("https://BÜCHER.de./", resolver=resolver)
    assert calls == ["xn--bcher-kva.de"]


# --- every spelling of a forbidden IPv4 address --------------------------------------------

FORBIDDEN_V4_RANGES = [
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "cgnat"),
    ("169.254.0.0/16", "link_local"),
    ("0.0.0.0/8", "unspecified"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("198.18.0.0/15", "benchmarking"),
]
EXACT_CLASS = {
    ipaddress.IPv4Address("255.255.255.255"): "broadcast",
    ipaddress.IPv4Address("169.254.169.254"): "metadata",
    ipaddress.IPv4Address("169.254.170.2"): "metadata",
    ipaddress.IPv4Address("169.254.170.23"): "metadata",
    ipaddress.IPv4Address("100.100.100.200"): "metadata",
}


@st.composite
def forbidden_ipv4(draw: st.DrawFn) -> tuple[int, str]:
    network_text, reason = draw(st.sampled_from(FORBIDDEN_V4_RANGES))
    network = ipaddress.IPv4Network(network_text)
    value = draw(st.integers(int(network.network_address), int(network.broadcast_address)))
    return value, EXACT_CLASS.get(ipaddress.IPv4Address(value), reason)


def spellings(value: int) -> list[str]:
    """Every way inet_aton, getaddrinfo or a URL parser will read as ``value``."""
    octets = value.to_bytes(4, "big")
    a, b, c, d = octets
    return [
        ".".join(str(octet) for octet in octets),
        str(value),
        hex(value),
        hex(value).upper().replace("X", "x"),
        "0" + oct(value)[2:],
        ".".join(hex(octet) for octet in octets),
        ".".join("0" + oct(octet)[2:] for octet in octets),
        f"{a}.{b}.{(c << 8) | d}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{hex(a)}.{(b << 16) | (c << 8) | d}",
        f"{a}.{b}.{c}.{d}.",
        f"[::ffff:{a}.{b}.{c}.{d}]",
        f"[::ffff:{value >> 16:x}:{value & 0xFFFF:x}]",
    ]


@settings(max_examples=150, deadline=None)
@given(forbidden_ipv4())
def test_every_spelling_of_a_forbidden_ipv4_address_is_refused(drawn: tuple[int, str]) -> None:
    value, reason = drawn
    for spelling in spellings(value):
        with pytest.raises(errors.URLRefused) as refused:
            check_url(f"http://{spelling}/hook")
        assert refused.value.reason == reason, spelling


@settings(max_examples=50, deadline=None)
@given(st.integers(127 << 24, (128 << 24) - 1))
def test_allow_loopback_normalises_every_loopback_spelling_to_dotted_quad(value: int) -> None:
    canonical = str(ipaddress.IPv4Address(value))
    for spelling in spellings(value)[:-2]:  # all but the IPv6 embeddings
        assert check_url(f"http://{spelling}/", allow_loopback=True) == f"http://{canonical}/"


# --- GuardedResolver, with an in-memory inner resolver --------------------------------------


class TableResolver(AbstractResolver):
    """An inner resolver answering from a table; remembers whether it was closed."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=address, port=port, family=0, proto=0, flags=0)
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        self.closed = True


async def test_guarded_resolver_returns_public_answers_unchanged() -> None:
    inner = TableResolver({"hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1"]})
    results = await GuardedResolver(inner=inner).resolve("hooks.example.com", 443)
    assert [result["host"] for result in results] == ["93.184.216.34", "2606:2800:220:1::1"]


async def test_guarded_resolver_refuses_when_any_answer_is_forbidden() -> None:
    inner = TableResolver({"hooks.example.com": ["93.184.216.34", "169.254.169.254"]})
    with pytest.raises(AddressRefusedError) as refused:
        await GuardedResolver(inner=inner).resolve("hooks.example.com", 443)
    assert isinstance(refused.value, OSError)
    assert refused.value.reason == "resolves_to_metadata"
    assert "resolves_to_metadata" in str(refused.value)


async def test_guarded_resolver_with_allow_loopback_refuses_private_answers() -> None:
    inner = TableResolver({"localhost": ["127.0.0.1"], "db.example.com": ["10.0.0.5"]})
    guard = GuardedResolver(allow_loopback=True, inner=inner)
    assert await guard.resolve("localhost", 80)
    with pytest.raises(AddressRefusedError) as refused:
        await guard.resolve("db.example.com", 80)
    assert refused.value.reason == "resolves_to_private"


async def test_guarded_resolver_closes_its_inner_resolver() -> None:
    inner = TableResolver({})
    await GuardedResolver(inner=inner).close()
    assert inner.closed


def test_guard_connector_kwargs_will_not_take_a_second_resolver() -> None:
    guard = GuardedResolver()
    with pytest.raises(TypeError):
        guard.guard_connector_kwargs(resolver=TableResolver({}))


def test_guard_connector_kwargs_keeps_the_callers_settings() -> None:
    guard = GuardedResolver()
    kwargs = guard.guard_connector_kwargs(limit_per_host=8)
    assert kwargs["limit_per_host"] == 8
    assert kwargs["resolver"] is guard
    assert callable(kwargs["socket_factory"])


def test_refusal_from_finds_the_refusal_behind_a_connection_error() -> None:
    refusal = errors.URLRefused("Postback URL refused (loopback): ...", reason="loopback")
    try:
        try:
            raise AddressRefusedError(refusal)
        except AddressRefusedError as inner:
            raise ConnectionError("cannot connect") from inner
    except ConnectionError as outer:
        assert refusal_from(outer) is refusal
    assert refusal_from(ConnectionError("refused by peer")) is None
