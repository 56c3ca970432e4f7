"""The connect-time guard with real sockets: aiohttp, GuardedResolver, a real server on loopback.

The name ``rebind.test`` is answered by an injected resolver (no DNS) with 127.0.0.1, where a
real Starlette app listens: exactly what a DNS-rebinding attacker makes a public name do.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dhan_postback.urlpolicy import (
    AddressRefusedError,
    GuardedResolver,
    check_url_resolved,
    refusal_from,
)
from tests.helpers.servers import UvicornThread

BODY = b'{"orderId":"112111182198","orderStatus":"TRADED"}'


class StaticResolver(AbstractResolver):
    """Answers from a fixed table, as a DNS server under an attacker's control would."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.answers:
            raise OSError(f"no such name: {host}")
        address = self.answers[host]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [
            ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)
        ]

    async def close(self) -> None:
        return None


class Recorder:
    """A tiny postback endpoint that remembers every body it was sent (not the product's
    :class:`dhan_postback.receiver.Receiver`)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        self.bodies.append(await request.body())
        return Response(status_code=200)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Recorder, UvicornThread]]:
    app = Recorder()
    with UvicornThread(app.app) as server:
        yield app, server


@pytest.fixture
def fresh(receiver: tuple[Recorder, UvicornThread]) -> tuple[Recorder, int]:
    app, server = receiver
    app.bodies.clear()
    return app, server.port


async def post(url: str, guard: GuardedResolver) -> int:
    connector = aiohttp.TCPConnector(**guard.guard_connector_kwargs())
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url, data=BODY, allow_redirects=False) as response,
    ):
        return response.status


async def test_name_rebound_to_loopback_is_refused_at_connect_time(
    fresh: tuple[Recorder, int],
) -> None:
    app, port = fresh
    guard = GuardedResolver(inner=StaticResolver({"rebind.test": "127.0.0.1"}))
    with pytest.raises(aiohttp.ClientConnectorError) as failed:
        await post(f"http://rebind.test:{port}/hook", guard)
    assert isinstance(failed.value.os_error, AddressRefusedError)
    refusal = refusal_from(failed.value)
    assert refusal is not None and refusal.reason == "resolves_to_loopback"
    assert app.bodies == []


async def test_allow_loopback_lets_the_same_request_through(fresh: tuple[Recorder, int]) -> None:
    app, port = fresh
    guard = GuardedResolver(allow_loopback=True, inner=StaticResolver({"rebind.test": "127.0.0.1"}))
    assert await post(f"http://rebind.test:{port}/hook", guard) == 200
    assert app.bodies == [BODY]


async def test_name_that_passed_the_check_and_then_rebinds_is_refused(
    fresh: tuple[Recorder, int],
) -> None:
    app, port = fresh

    async def public_at_save_time(host: str) -> list[str]:
        return ["93.184.216.34"]

    url = await check_url_resolved(
        f"http://hooks.trader.example.com:{port}/hook", resolver=public_at_save_time
    )
    guard = GuardedResolver(inner=StaticResolver({"hooks.trader.example.com": "127.0.0.1"}))
    with pytest.raises(aiohttp.ClientConnectorError) as failed:
        await post(url, guard)
    refusal = refusal_from(failed.value)
    assert refusal is not None and refusal.reason == "resolves_to_loopback"
    assert app.bodies == []


async def test_loopback_literal_is_refused_at_connect_time(fresh: tuple[Recorder, int]) -> None:
    app, port = fresh
    with pytest.raises(aiohttp.ClientConnectorError) as failed:
        await post(f"http://127.0.0.1:{port}/hook", GuardedResolver())
    refusal = refusal_from(failed.value)
    assert refusal is not None and refusal.reason == "loopback"
    assert app.bodies == []


async def test_loopback_literal_goes_through_when_allowed(fresh: tuple[Recorder, int]) -> None:
    app, port = fresh
    assert await post(f"http://127.0.0.1:{port}/hook", GuardedResolver(allow_loopback=True)) == 200
    assert app.bodies == [BODY]


async def test_callers_socket_factory_still_makes_the_socket(fresh: tuple[Recorder, int]) -> None:
    app, port = fresh
    made: list[object] = []

    def socket_factory(addr_info: tuple[int, int, int, str, tuple[object, ...]]) -> socket.socket:
        made.append(addr_info[4][0])
        return socket.socket(addr_info[0], addr_info[1], addr_info[2])

    guard = GuardedResolver(allow_loopback=True)
    connector = aiohttp.TCPConnector(**guard.guard_connector_kwargs(socket_factory=socket_factory))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(f"http://127.0.0.1:{port}/hook", data=BODY) as response,
    ):
        assert response.status == 200
    assert made == ["127.0.0.1"]
    assert app.bodies == [BODY]
