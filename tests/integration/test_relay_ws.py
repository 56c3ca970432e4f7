"""The relay against a local websocket that speaks the broker's protocol, feeding a local
HTTP server that answers like the service's ingest API. Loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest
import structlog.testing
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from dhan_postback.relay import (
    Backoff,
    HttpIngest,
    Login,
    OrderUpdateStream,
    Relay,
    RelayLog,
    SinkUnusable,
    TokenRefused,
)
from tests.helpers.broker import (
    DhanWsServer,
    IngestRecorder,
    alert_frame,
    docs_style_frame,
    expected_postback,
    individual_login,
    partner_login,
)
from tests.helpers.relay import CLIENT_ID, TOKEN, running_relay
from tests.helpers.servers import UvicornThread
from tests.helpers.updates import simulated_updates
from tests.helpers.waiting import eventually

UPDATES = simulated_updates(30)
EXPECTED = [expected_postback(u) for u in UPDATES]


def _mixed_frames() -> list[str]:
    """The lifecycle as the broker might send it: PascalCase, camelCase, Title-case statuses,
    the documentation's broken JSON."""
    frames = []
    for index, update in enumerate(UPDATES):
        style = index % 4
        if style == 3:
            frames.append(docs_style_frame(update))
        else:
            frames.append(alert_frame(update, camel=style == 1, title_status=style == 2))
    return frames


@pytest.fixture
def recorder() -> Iterator[tuple[IngestRecorder, str]]:
    ingest = IngestRecorder()
    with UvicornThread(ingest.app) as server:
        yield ingest, server.url


async def test_a_lifecycle_reaches_the_service_once_each_in_order_with_the_exact_payload(
    recorder: tuple[IngestRecorder, str], tmp_path: Path
) -> None:
    ingest, url = recorder
    frames = _mixed_frames()
    noisy = [
        '{"Type":"LoginRsp","MsgCode":43}',
        *frames[:10],
        "not json {",
        *frames[5:8],  # duplicates
        *frames[10:],
        '{"Type":"order_alert","Data":{"OrderNo":"1","Status":"Unheard"}}',
    ]
    async with DhanWsServer(individual_login(CLIENT_ID, TOKEN)) as broker:
        broker.feed(noisy)
        async with running_relay(
            broker.url, HttpIngest(url, ingest.token), tmp_path / "relay.db"
        ) as relay:
            await eventually(lambda: relay.status().dead_letters == 2)
            await eventually(lambda: len(ingest.received) >= len(EXPECTED))
    assert ingest.received == EXPECTED
    status = relay.status()
    assert (status.relayed, status.duplicates, status.other_frames) == (len(EXPECTED), 3, 1)


async def test_the_relay_logs_in_as_an_individual_as_documented(
    recorder: tuple[IngestRecorder, str], tmp_path: Path
) -> None:
    ingest, url = recorder
    broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN))
    sink = HttpIngest(url, ingest.token)
    async with broker, running_relay(broker.url, sink, tmp_path / "relay.db") as relay:
        await eventually(lambda: relay.status().connected)
    assert broker.logins == [individual_login(CLIENT_ID, TOKEN)]
    assert broker.bad_logins == []


async def test_the_relay_logs_in_as_a_partner_as_documented(
    recorder: tuple[IngestRecorder, str], tmp_path: Path
) -> None:
    ingest, url = recorder
    login = Login.partner("partner-9", "partner-secret-9")
    broker = DhanWsServer(partner_login("partner-9", "partner-secret-9"))
    broker.feed(alert_frame(u) for u in UPDATES[:3])
    sink = HttpIngest(url, ingest.token)
    async with broker, running_relay(broker.url, sink, tmp_path / "r.db", login=login):
        await eventually(lambda: len(ingest.received) == 3)
    assert broker.logins == [partner_login("partner-9", "partner-secret-9")]
    assert ingest.received == EXPECTED[:3]


async def test_after_abrupt_drops_the_relay_logs_in_again_and_skips_the_resent_frames(
    recorder: tuple[IngestRecorder, str], tmp_path: Path
) -> None:
    ingest, url = recorder
    broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN), resend=4, drop_after={5, 20, 40})
    broker.feed(_mixed_frames())
    sink = HttpIngest(url, ingest.token)
    async with broker, running_relay(broker.url, sink, tmp_path / "relay.db") as relay:
        await eventually(lambda: len(ingest.received) >= len(EXPECTED))
        await eventually(lambda: relay.status().duplicates == 12)
    assert ingest.received == EXPECTED
    assert broker.drops == 3 and len(broker.logins) == 4
    assert relay.status().disconnects == 3


async def test_a_silent_connection_is_redialled_after_the_idle_timeout(
    recorder: tuple[IngestRecorder, str], tmp_path: Path
) -> None:
    ingest, url = recorder
    broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN), silent_connections=1)
    broker.feed(alert_frame(u) for u in UPDATES[:2])
    sink = HttpIngest(url, ingest.token)
    async with (
        broker,
        running_relay(broker.url, sink, tmp_path / "relay.db", idle_timeout=0.3) as relay,
    ):
        await eventually(lambda: len(ingest.received) == 2)
    assert len(broker.logins) == 2
    assert "no frame for 0.3s" in (relay.source.last_disconnect or "")


async def test_a_connection_that_stops_answering_pings_is_redialled(
    recorder: tuple[IngestRecorder, str], tmp_path: Path
) -> None:
    ingest, url = recorder
    broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN), frozen_connections=1)
    broker.feed(alert_frame(u) for u in UPDATES[:2])
    sink = HttpIngest(url, ingest.token)
    pings = {"ping_interval": 0.1, "ping_timeout": 0.2, "close_timeout": 0.2}
    async with broker, running_relay(broker.url, sink, tmp_path / "relay.db", **pings) as relay:
        await eventually(lambda: len(ingest.received) == 2)
    assert len(broker.logins) == 2
    assert "keepalive ping timeout" in (relay.source.last_disconnect or "")


async def test_a_refused_login_stops_the_relay_instead_of_redialling(
    recorder: tuple[IngestRecorder, str], tmp_path: Path
) -> None:
    ingest, url = recorder
    broker = DhanWsServer(individual_login(CLIENT_ID, "another-token"))
    async with broker, RelayLog(tmp_path / "relay.db") as relay_log:
        stream = OrderUpdateStream(Login.individual(CLIENT_ID, TOKEN), url=broker.url)
        relay = Relay(stream, HttpIngest(url, ingest.token), relay_log)
        with pytest.raises(TokenRefused) as raised:
            await asyncio.wait_for(relay.run(), 15)
    assert len(broker.bad_logins) == 1
    assert "code 4001: login failed" in raised.value.message
    assert TOKEN not in raised.value.message


async def test_a_handshake_answered_401_is_a_refused_login(tmp_path: Path) -> None:
    async def refuse(connection: ServerConnection, request: WsRequest) -> WsResponse:
        return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid token\n")

    async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=refuse) as ws:
        port = ws.sockets[0].getsockname()[1]
        stream = OrderUpdateStream(Login.individual(CLIENT_ID, TOKEN), url=f"ws://127.0.0.1:{port}")
        with pytest.raises(TokenRefused) as raised:
            async with contextlib.aclosing(stream.frames()) as frames:
                await asyncio.wait_for(anext(frames), 15)
    assert "HTTP 401" in raised.value.message


async def test_a_connection_closed_by_the_broker_after_frames_is_redialled(
    recorder: tuple[IngestRecorder, str], tmp_path: Path
) -> None:
    """A close with an application code mid-session is not a refused login by itself."""
    ingest, url = recorder
    broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN))
    broker.feed(alert_frame(u) for u in UPDATES[:2])
    sink = HttpIngest(url, ingest.token)
    async with broker, running_relay(broker.url, sink, tmp_path / "relay.db") as relay:
        await eventually(lambda: len(ingest.received) == 2)
        assert broker._current is not None
        await broker._current.close(4002, "maintenance")
        await eventually(lambda: len(broker.logins) == 2)
        broker.feed(alert_frame(u) for u in UPDATES[2:4])
        await eventually(lambda: len(ingest.received) == 4)
    assert relay.status().disconnects == 1


async def test_stopping_the_relay_closes_the_websocket_normally(
    recorder: tuple[IngestRecorder, str], tmp_path: Path
) -> None:
    ingest, url = recorder
    broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN))
    broker.feed(alert_frame(u) for u in UPDATES[:2])
    sink = HttpIngest(url, ingest.token)
    async with broker:
        async with running_relay(broker.url, sink, tmp_path / "relay.db"):
            await eventually(lambda: len(ingest.received) == 2)
        await eventually(lambda: len(broker.close_codes) == 1)
    assert broker.close_codes == [1000]


async def test_the_relay_waits_out_an_unavailable_service(tmp_path: Path) -> None:
    ingest = IngestRecorder(unavailable=3)
    with UvicornThread(ingest.app) as server:
        async with DhanWsServer(individual_login(CLIENT_ID, TOKEN)) as broker:
            broker.feed(alert_frame(u) for u in UPDATES[:5])
            sink = HttpIngest(server.url, ingest.token, backoff=Backoff(base=0.01, cap=0.05))
            async with running_relay(broker.url, sink, tmp_path / "relay.db"):
                await eventually(lambda: len(ingest.received) == 5)
    assert ingest.received == EXPECTED[:5]
    assert ingest.requests >= 4


async def test_a_wrong_service_token_stops_the_relay_with_a_clear_error(tmp_path: Path) -> None:
    ingest = IngestRecorder()
    with UvicornThread(ingest.app) as server:
        async with DhanWsServer(individual_login(CLIENT_ID, TOKEN)) as broker:
            broker.feed(alert_frame(u) for u in UPDATES[:2])
            stream = OrderUpdateStream(Login.individual(CLIENT_ID, TOKEN), url=broker.url)
            sink = HttpIngest(server.url, "not-the-token")
            async with RelayLog(tmp_path / "relay.db") as relay_log:
                with pytest.raises(SinkUnusable) as raised:
                    await asyncio.wait_for(Relay(stream, sink, relay_log).run(), 15)
    assert raised.value.status == 401
    assert "DH-901" in raised.value.message and "not-the-token" not in raised.value.message
    assert ingest.received == []


async def test_an_update_the_service_refuses_is_dead_lettered_and_the_rest_go_on(
    tmp_path: Path,
) -> None:
    refused = UPDATES[4].order_id
    ingest = IngestRecorder(refuse_order_ids={refused})
    with UvicornThread(ingest.app) as server:
        async with DhanWsServer(individual_login(CLIENT_ID, TOKEN)) as broker:
            broker.feed(alert_frame(u) for u in UPDATES)
            async with running_relay(
                broker.url, HttpIngest(server.url, ingest.token), tmp_path / "relay.db"
            ) as relay:
                expected = [e for e in EXPECTED if e.order_id != refused]
                await eventually(lambda: len(ingest.received) >= len(expected))
                await eventually(lambda: relay.status().pending == 0)
    assert ingest.received == expected
    assert relay.status().refused == len(EXPECTED) - len(expected)


async def test_a_restarted_relay_sends_nothing_twice(
    recorder: tuple[IngestRecorder, str], tmp_path: Path
) -> None:
    ingest, url = recorder
    frames = [alert_frame(u) for u in UPDATES]
    for run, count in ((1, 10), (2, len(frames))):
        async with DhanWsServer(individual_login(CLIENT_ID, TOKEN)) as broker:
            broker.feed(frames[:count])  # the second broker sends everything from the start
            async with running_relay(
                broker.url, HttpIngest(url, ingest.token), tmp_path / "relay.db"
            ) as relay:
                await eventually(lambda: len(ingest.received) >= count)  # noqa: B023
                await eventually(lambda: relay.status().frames >= count)  # noqa: B023
        assert ingest.received == EXPECTED[:count], f"run {run}"
    assert relay.status().duplicates == 10


async def test_no_log_line_shows_a_secret_even_at_debug_level(
    recorder: tuple[IngestRecorder, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The websockets library logs frames at DEBUG, the login included, and a partner's secret
    sits at the end of it, where the library's shortened frame text still shows it."""
    ingest, url = recorder
    caplog.set_level(logging.DEBUG)
    broker = DhanWsServer(partner_login("p-1", "s3cret-7"))
    broker.feed(alert_frame(u) for u in UPDATES[:2])
    sink = HttpIngest(url, ingest.token)
    login = Login.partner("p-1", "s3cret-7")
    with structlog.testing.capture_logs() as events:
        async with broker, running_relay(broker.url, sink, tmp_path / "r.db", login=login):
            await eventually(lambda: len(ingest.received) == 2)
    assert broker.logins == [partner_login("p-1", "s3cret-7")]
    assert any(event["event"] == "relay.ws.connected" for event in events)
    relay_lines = [r.getMessage() for r in caplog.records if r.name.startswith("dhan_postback")]
    everything = "\n".join(relay_lines) + repr(events)
    assert "s3cret-7" not in everything and ingest.token not in everything
