"""The relay's pipeline with an in-memory frame source and sink (the real ones are in
tests/integration)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from dhan_postback.payload import OrderUpdate, validate_strict
from dhan_postback.relay import (
    OrderBookUnavailable,
    Reconciler,
    Relay,
    RelayLog,
    SinkUnusable,
    TokenRefused,
    UpdateRefused,
)
from tests.helpers.broker import alert_frame, docs_style_frame, expected_postback, to_book_row
from tests.helpers.updates import simulated_updates

UPDATES = simulated_updates(12)


class ListSource:
    """Frames from a list; the stream ends when the list does."""

    def __init__(self, frames: Sequence[str | bytes]) -> None:
        self._frames = list(frames)
        self.connected = True
        self.connections = 1
        self.disconnects = 0
        self.last_error: str | None = None

    async def frames(self) -> AsyncGenerator[str | bytes, None]:
        for frame in self._frames:
            yield frame


class MemorySink:
    """Commits batches in memory; refuses batches holding given orders; or refuses all."""

    def __init__(self, refuse: set[str] = frozenset(), unusable: bool = False) -> None:
        self.batches: list[list[OrderUpdate]] = []
        self.refuse = refuse
        self.unusable = unusable
        self.last_error: str | None = None

    @property
    def received(self) -> list[OrderUpdate]:
        return [update for batch in self.batches for update in batch]

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def submit(self, bodies: Sequence[bytes]) -> list[str]:
        if self.unusable:
            raise SinkUnusable("HTTP 401: invalid token", status=401)
        updates = [validate_strict(json.loads(body)) for body in bodies]
        if any(update.order_id in self.refuse for update in updates):
            raise UpdateRefused("HTTP 400: refused", status=400)
        self.batches.append(updates)
        return [f"msg_{n}" for n in range(len(updates))]


async def _relay(frames: Sequence[str | bytes], sink: MemorySink, path: Path) -> Relay:
    async with RelayLog(path / "relay.db") as log:
        relay = Relay(ListSource(frames), sink, log, batch_size=4)
        await relay.run()
        return relay


async def test_every_update_reaches_the_sink_once_in_order(tmp_path: Path) -> None:
    sink = MemorySink()
    relay = await _relay([alert_frame(u) for u in UPDATES], sink, tmp_path)
    assert sink.received == [expected_postback(u) for u in UPDATES]
    assert relay.status().relayed == len(UPDATES)
    assert relay.status().last_update_time == UPDATES[-1].update_time


async def test_a_repeated_frame_is_skipped_as_a_duplicate(tmp_path: Path) -> None:
    frames = [alert_frame(u) for u in UPDATES[:5]]
    sink = MemorySink()
    relay = await _relay([*frames, frames[1], alert_frame(UPDATES[2], camel=True)], sink, tmp_path)
    assert sink.received == [expected_postback(u) for u in UPDATES[:5]]
    assert relay.status().duplicates == 2


async def test_broken_json_like_the_documentation_is_repaired_and_relayed(tmp_path: Path) -> None:
    sink = MemorySink()
    relay = await _relay([docs_style_frame(UPDATES[0])], sink, tmp_path)
    assert sink.received == [expected_postback(UPDATES[0])]
    assert relay.status().repaired_frames == 1


async def test_unreadable_and_unmappable_frames_become_dead_letters_and_the_stream_goes_on(
    tmp_path: Path,
) -> None:
    unmappable = alert_frame(UPDATES[1]).replace('"Status": "', '"Status": "X')
    frames = [alert_frame(UPDATES[0]), "garbage\nover lines", unmappable, alert_frame(UPDATES[2])]
    sink = MemorySink()
    relay = await _relay(frames, sink, tmp_path)
    assert sink.received == [expected_postback(UPDATES[0]), expected_postback(UPDATES[2])]
    assert relay.status().dead_letters == 2
    async with RelayLog(tmp_path / "relay.db") as log:
        reasons = [letter.reason for letter in await log.dead_letters()]
    assert "cannot map the order_alert" in reasons[0] and "not JSON" in reasons[1]


async def test_frames_that_are_not_order_alerts_are_counted_and_ignored(tmp_path: Path) -> None:
    frames = ['{"Type":"LoginRsp","MsgCode":43}', '{"Type":"heartbeat"}', alert_frame(UPDATES[0])]
    sink = MemorySink()
    relay = await _relay(frames, sink, tmp_path)
    assert sink.received == [expected_postback(UPDATES[0])]
    assert relay.status().other_frames == 2


async def test_an_update_the_service_refuses_is_isolated_and_dead_lettered(tmp_path: Path) -> None:
    bad = UPDATES[3].order_id
    sink = MemorySink(refuse={bad})
    relay = await _relay([alert_frame(u) for u in UPDATES], sink, tmp_path)
    assert sink.received == [expected_postback(u) for u in UPDATES if u.order_id != bad]
    refused = sum(1 for u in UPDATES if u.order_id == bad)
    assert relay.status().refused == refused
    assert relay.status().pending == 0


async def test_an_unusable_sink_stops_the_relay_and_keeps_what_it_had_read(
    tmp_path: Path,
) -> None:
    with pytest.raises(SinkUnusable):
        await _relay([alert_frame(u) for u in UPDATES[:3]], MemorySink(unusable=True), tmp_path)
    sink = MemorySink()
    await _relay([], sink, tmp_path)
    assert sink.received
    assert sink.received == [expected_postback(u) for u in UPDATES[: len(sink.received)]]


async def test_a_restart_does_not_send_again_what_the_sink_already_took(tmp_path: Path) -> None:
    frames = [alert_frame(u) for u in UPDATES[:6]]
    first, second = MemorySink(), MemorySink()
    await _relay(frames[:4], first, tmp_path)
    await _relay(frames, second, tmp_path)
    assert first.received + second.received == [expected_postback(u) for u in UPDATES[:6]]


async def test_a_repeated_mapping_warning_is_counted_every_time_but_logged_once(
    tmp_path: Path,
) -> None:
    frames = [
        re.sub(r'"OffMktFlag": "."', '"OffMktFlag": "?"', alert_frame(u)) for u in UPDATES[:4]
    ]
    with structlog.testing.capture_logs() as events:
        relay = await _relay(frames, MemorySink(), tmp_path)
    assert relay.status().warnings == 4
    assert [e["event"] for e in events].count("relay.mapping.warnings") == 1


class MemoryBook:
    """An order book in memory: each read answers the next of ``reads`` (rows, or an error
    to raise); after the last one it keeps answering the last rows."""

    def __init__(self, *reads: list[dict[str, Any]] | Exception) -> None:
        self.reads = list(reads)
        self.calls = 0
        self.last_error: str | None = None

    async def orders(self) -> list[dict[str, Any]]:
        self.calls += 1
        read = self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]
        if isinstance(read, Exception):
            raise read
        return read

    async def close(self) -> None: ...


class LoginThenQuiet(ListSource):
    """Sends its frames, logs in (as a reconnect would), then stays quiet until stopped."""

    def __init__(self, frames: Sequence[str | bytes], reconciler: Reconciler) -> None:
        super().__init__(frames)
        self.reconciler = reconciler

    async def frames(self) -> AsyncGenerator[str | bytes, None]:
        for frame in self._frames:
            yield frame
        self.reconciler.logged_in()
        await asyncio.Event().wait()


async def _relay_with_book(
    frames: Sequence[str], book: MemoryBook, sink: MemorySink, path: Path, reads: int
) -> Relay:
    reconciler = Reconciler(book, interval=3600)
    async with RelayLog(path / "relay.db") as log:
        relay = Relay(LoginThenQuiet(frames, reconciler), sink, log, reconciler=reconciler)
        task = asyncio.create_task(relay.run())
        while (reconciler.reconciles < reads or relay.status().pending) and not task.done():
            await asyncio.sleep(0.01)
        relay.stop()
        await task
        return relay


async def test_book_rows_newer_than_the_frames_are_relayed_and_the_rest_are_not(
    tmp_path: Path,
) -> None:
    order = [u for u in UPDATES if u.order_id == UPDATES[0].order_id]
    frames = [alert_frame(u) for u in order[:2]]
    rows = [to_book_row(order[0]), to_book_row(order[1]), to_book_row(UPDATES[-1])]
    sink = MemorySink()
    relay = await _relay_with_book(frames, MemoryBook(rows), sink, tmp_path, reads=1)
    assert sink.received == [*(expected_postback(u) for u in order[:2]), UPDATES[-1]]
    assert (relay.status().reconciled, relay.status().reconciles) == (1, 1)


async def test_a_refused_token_hands_on_what_was_received_then_stops_the_relay(
    tmp_path: Path,
) -> None:
    sink = MemorySink()
    book = MemoryBook(TokenRefused("the order book answered HTTP 401 DH-901"))
    with pytest.raises(TokenRefused):
        await _relay_with_book([alert_frame(u) for u in UPDATES[:5]], book, sink, tmp_path, 1)
    assert sink.received == [expected_postback(u) for u in UPDATES[:5]]


async def test_an_order_book_that_is_unavailable_is_tried_again_next_time(
    tmp_path: Path,
) -> None:
    sink = MemorySink()
    book = MemoryBook(OrderBookUnavailable("HTTP 403: DH-902"), [to_book_row(UPDATES[0])])
    reconciler = Reconciler(book, interval=0.01)
    async with RelayLog(tmp_path / "relay.db") as log:
        relay = Relay(LoginThenQuiet([], reconciler), sink, log, reconciler=reconciler)
        task = asyncio.create_task(relay.run())
        while not sink.received and not task.done():
            await asyncio.sleep(0.01)
        relay.stop()
        await task
    assert sink.received == [UPDATES[0]] and book.calls >= 2
