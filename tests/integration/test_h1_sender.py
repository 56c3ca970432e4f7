"""The dispatcher's own HTTP/1.1 client against real servers on loopback.

The dispatcher's integration tests (tests/integration/test_dispatcher.py) already run through
it: statuses, redirects, ``Retry-After``, the answer's prefix, timeouts, resets, refused
connections and addresses. These are the rules of the client itself: connections kept and
let go, and the shapes of answer a Starlette receiver does not make.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme
import uvloop

from dhan_postback.service.h1 import H1Sender
from dhan_postback.service.sender import Request, SendError
from tests.helpers.dispatching import fast_settings
from tests.helpers.receivers import RecordingReceiver, Reply, always
from tests.helpers.servers import UvicornThread

pytestmark = pytest.mark.timeout(60)

HEADERS = {"Content-Type": "application/json", "webhook-id": "msg_1"}


@pytest.fixture
async def sender() -> AsyncIterator[H1Sender]:
    sender = H1Sender(fast_settings())
    yield sender
    await sender.aclose()


async def test_posts_to_one_endpoint_share_one_kept_alive_connection(sender: H1Sender) -> None:
    receiver = RecordingReceiver()
    with UvicornThread(receiver.app) as server:
        answers = [
            await sender.send(Request(server.url + "/hook", b'{"n": %d}' % n, HEADERS))
            for n in range(5)
        ]

    received = receiver.snapshot()
    assert [(a.status, a.body) for a in answers] == [(200, b"ok")] * 5
    assert [r.body for r in received] == [b'{"n": %d}' % n for n in range(5)]
    assert len({r.client_port for r in received}) == 1
    assert all(r.headers["webhook-id"] == "msg_1" for r in received)
    assert all("accept-encoding" not in r.headers for r in received)


async def test_retry_after_is_kept_for_429_and_503_only(sender: H1Sender) -> None:
    answers = []
    for status in (429, 503, 500):
        receiver = RecordingReceiver(always(Reply(status, headers={"Retry-After": "7"})))
        with UvicornThread(receiver.app) as server:
            answers.append(await sender.send(Request(server.url + "/hook", b"{}", HEADERS)))

    assert [(a.status, a.retry_after) for a in answers] == [(429, "7"), (503, "7"), (500, None)]


async def test_a_large_answer_gives_its_start_and_closes_its_connection(sender: H1Sender) -> None:
    receiver = RecordingReceiver(always(Reply(body=b"x" * 100_000)))
    with UvicornThread(receiver.app) as server:
        first = await sender.send(Request(server.url + "/hook", b"{}", HEADERS))
        second = await sender.send(Request(server.url + "/hook", b"{}", HEADERS))

    assert (first.status, first.body) == (second.status, second.body) == (200, b"x" * 512)
    assert len({r.client_port for r in receiver.snapshot()}) == 2


async def _exchanges(
    answer: bytes, *, close: bool, times: int, reset: bool = False
) -> tuple[list[tuple[int, bytes]], int]:
    """POST ``times`` times to a server that answers every request with ``answer`` (closing
    the connection after it if ``close``, resetting it if ``reset``): for shapes of answer a
    Starlette app does not make.
    The status and body of each answer, and how many connections the server accepted; a
    failure raises."""
    handlers: list[asyncio.Task[None] | None] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):  # the requests here have no body
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        if reset:  # linger 0: the close sends a reset, not an end of stream
            linger = struct.pack("ii", 1, 0)
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    sender = H1Sender(fast_settings())
    try:
        answers = [await sender.send(Request(url, b"", HEADERS)) for _ in range(times)]
    finally:
        await sender.aclose()  # first: the server's handlers see the end of their connections
        await asyncio.gather(*(task for task in handlers if task is not None))
        server.close()
        await server.wait_closed()
    return [(answer.status, answer.body) for answer in answers], len(handlers)


@pytest.mark.parametrize(
    ("answer", "close"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\n\r\nok", True),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    ],
    ids=["chunked", "until-close", "after-100-continue"],
)
async def test_an_answer_is_read_whatever_its_framing(answer: bytes, close: bool) -> None:
    answers, _ = await _exchanges(answer, close=close, times=2)

    assert answers == [(200, b"ok")] * 2


async def test_an_answer_cut_short_is_an_error_that_keeps_its_status() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok"
    with pytest.raises(SendError) as failed:
        await _exchanges(cut, close=True, times=1)

    assert failed.value.status == 200


async def test_an_answer_running_until_close_that_ends_in_a_reset_is_an_error() -> None:
    with pytest.raises(SendError) as failed:
        await _exchanges(b"HTTP/1.1 200 OK\r\n\r\nok", close=True, times=1, reset=True)

    assert failed.value.status == 200


async def test_an_answer_that_is_not_http_is_an_error() -> None:
    with pytest.raises(SendError) as failed:
        await _exchanges(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", close=True, times=1)

    assert failed.value.status is None


@pytest.mark.parametrize(("connection", "connections"), [("keep-alive", 1), ("close", 3)])
async def test_an_answer_saying_connection_close_closes_it(
    connection: str, connections: int
) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: %s\r\n\r\nok"
    answers, accepted = await _exchanges(answer % connection.encode(), close=False, times=3)

    assert (answers, accepted) == ([(200, b"ok")] * 3, connections)


async def test_a_header_holding_a_line_break_is_refused_and_nothing_is_sent(
    sender: H1Sender,
) -> None:
    receiver = RecordingReceiver()
    with UvicornThread(receiver.app) as server:
        smuggled = {"webhook-id": "msg_1\r\nX-Evil: 1"}
        with pytest.raises(ValueError, match="line break"):
            await sender.send(Request(server.url + "/hook", b"{}", smuggled))

    assert receiver.snapshot() == []


def test_it_runs_on_uvloop_as_the_service_does() -> None:
    receiver = RecordingReceiver()

    async def send_twice(url: str) -> list[int]:
        sender = H1Sender(fast_settings())
        try:
            return [(await sender.send(Request(url, b"{}", HEADERS))).status for _ in range(2)]
        finally:
            await sender.aclose()

    with (
        UvicornThread(receiver.app) as server,
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        statuses = runner.run(send_twice(server.url + "/hook"))

    assert statuses == [200, 200]
    assert len({r.client_port for r in receiver.snapshot()}) == 1


@pytest.fixture
def authority() -> trustme.CA:
    return trustme.CA()


@contextlib.contextmanager
def _tls_receiver(
    authority: trustme.CA, receiver: RecordingReceiver, tmp_path: Path
) -> Iterator[str]:
    """``receiver`` served over TLS with a certificate for 127.0.0.1 that ``authority``
    signed; the https URL of its hook."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued = authority.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    with UvicornThread(receiver.app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as server:
        yield f"https://127.0.0.1:{server.port}/hook"


async def test_https_posts_over_a_verified_connection_kept_alive(
    authority: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(bundle)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # the system's trust, as a user sets it
    receiver = RecordingReceiver()
    sender = H1Sender(fast_settings())
    try:
        with _tls_receiver(authority, receiver, tmp_path) as url:
            answers = [await sender.send(Request(url, b'{"n": %d}' % n, HEADERS)) for n in range(3)]
    finally:
        await sender.aclose()

    assert [(a.status, a.body) for a in answers] == [(200, b"ok")] * 3
    assert [r.body for r in receiver.snapshot()] == [b'{"n": %d}' % n for n in range(3)]
    assert len({r.client_port for r in receiver.snapshot()}) == 1


async def test_https_to_a_certificate_the_system_does_not_trust_fails_unsent(
    authority: trustme.CA, tmp_path: Path, sender: H1Sender
) -> None:
    receiver = RecordingReceiver()
    refused = r"Cannot connect to host 127\.0\.0\.1.*CERTIFICATE_VERIFY_FAILED"
    with (
        _tls_receiver(authority, receiver, tmp_path) as url,
        pytest.raises(SendError, match=refused),
    ):
        await sender.send(Request(url, b"{}", HEADERS))

    assert receiver.snapshot() == []
