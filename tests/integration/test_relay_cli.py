"""`dhan-postback relay` as a real process: local broker websocket in, local ingest out."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from tests.helpers.broker import (
    DhanWsServer,
    IngestRecorder,
    alert_frame,
    expected_postback,
    individual_login,
)
from tests.helpers.processes import ServerProcess
from tests.helpers.relay import CLIENT_ID, TOKEN, stop_process, wait_for_exit
from tests.helpers.servers import UvicornThread
from tests.helpers.updates import simulated_updates
from tests.helpers.waiting import eventually

UPDATES = simulated_updates(8)


def _json_lines(text: str) -> list[dict[str, Any]]:
    """The log lines (JSON when standard error is not a terminal), whatever else is there."""
    lines = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return [line for line in lines if isinstance(line, dict) and "event" in line]


async def test_the_relay_command_delivers_updates_and_never_prints_a_secret(
    tmp_path: Path,
) -> None:
    ingest = IngestRecorder()
    output = tmp_path / "relay.log"
    broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN))
    broker.feed(alert_frame(u) for u in UPDATES)
    with UvicornThread(ingest.app) as service:
        async with broker:
            process = ServerProcess(
                [
                    "relay",
                    "--client-id",
                    CLIENT_ID,
                    "--ws-url",
                    broker.url,
                    "--service-url",
                    service.url,
                    "--db",
                    str(tmp_path / "relay.db"),
                    "--reconcile-interval",
                    "0",
                ],
                env={
                    "DHAN_POSTBACK_RELAY_ACCESS_TOKEN": TOKEN,
                    "DHAN_POSTBACK_RELAY_SERVICE_TOKEN": ingest.token,
                },
                log_path=output,
            ).start()
            try:
                await eventually(lambda: len(ingest.received) == len(UPDATES), timeout=30)
            finally:
                code = await stop_process(process)
    assert code == 0
    assert ingest.received == [expected_postback(u) for u in UPDATES]
    text = output.read_text()
    events = {line["event"]: line for line in _json_lines(text)}
    assert "relay.ws.connected" in events
    assert events["relay.summary"]["relayed"] == len(UPDATES)
    assert TOKEN not in text and ingest.token not in text


async def test_the_relay_command_exits_1_when_the_service_refuses_its_token(
    tmp_path: Path,
) -> None:
    ingest = IngestRecorder()
    output = tmp_path / "relay.log"
    broker = DhanWsServer(individual_login(CLIENT_ID, TOKEN))
    broker.feed(alert_frame(u) for u in UPDATES[:1])
    with UvicornThread(ingest.app) as service:
        async with broker:
            process = ServerProcess(
                ["relay", "--ws-url", broker.url, "--service-url", service.url],
                env={
                    "DHAN_POSTBACK_RELAY_CLIENT_ID": CLIENT_ID,
                    "DHAN_POSTBACK_RELAY_ACCESS_TOKEN": TOKEN,
                    "DHAN_POSTBACK_RELAY_SERVICE_TOKEN": "wrong-service-token",
                    "DHAN_POSTBACK_RELAY_DB": str(tmp_path / "relay.db"),
                    "DHAN_POSTBACK_RELAY_RECONCILE_INTERVAL": "0",
                },
                log_path=output,
            ).start()
            code = await wait_for_exit(process)
    assert code == 1
    text = output.read_text()
    assert "HTTP 401" in text and "wrong-service-token" not in text and TOKEN not in text
