"""The servers' transport wrapper: what one callback writes leaves in one send."""

from __future__ import annotations

import asyncio

from dhan_postback.connections import JoinedWrites


class RecordingTransport(asyncio.Transport):
    """Records what reaches the socket, in order, and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[bytes | str] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.events.append(bytes(data))

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.events.append("abort")

    def get_write_buffer_size(self) -> int:
        return 0


async def test_a_head_and_a_body_written_in_one_callback_leave_in_one_send() -> None:
    transport = RecordingTransport()
    joined = JoinedWrites(transport, asyncio.get_running_loop())
    joined.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    joined.write(b"{}")
    assert transport.events == []
    await asyncio.sleep(0)
    assert transport.events == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


async def test_closing_sends_what_is_held_first() -> None:
    transport = RecordingTransport()
    joined = JoinedWrites(transport, asyncio.get_running_loop())
    joined.write(b"bye")
    joined.close()
    await asyncio.sleep(0)
    assert transport.events == [b"bye", "close"]


async def test_aborting_drops_what_is_held() -> None:
    transport = RecordingTransport()
    joined = JoinedWrites(transport, asyncio.get_running_loop())
    joined.write(b"never sent")
    joined.abort()
    await asyncio.sleep(0)
    assert transport.events == ["abort"]


async def test_a_large_write_is_not_held_back() -> None:
    transport = RecordingTransport()
    joined = JoinedWrites(transport, asyncio.get_running_loop())
    joined.write(b"x" * (128 * 1024))
    assert transport.events == [b"x" * (128 * 1024)]


async def test_what_is_held_when_the_connection_closes_under_it_is_dropped() -> None:
    transport = RecordingTransport()
    joined = JoinedWrites(transport, asyncio.get_running_loop())
    joined.write(b"too late")
    transport.close()  # the client went away before the callback ended
    await asyncio.sleep(0)
    assert transport.events == ["close"]
