"""The real sender (aiohttp) against receivers on loopback: what it costs per POST."""

from __future__ import annotations

import pytest
from yarl._url import encode_url

from dhan_postback.service.sender import AiohttpSender, Request
from tests.helpers.dispatching import fast_settings
from tests.helpers.receivers import RecordingReceiver
from tests.helpers.servers import MultiPortServer

pytestmark = pytest.mark.timeout(60)


async def test_a_url_is_parsed_once_however_many_urls_are_sent_to_in_turn() -> None:
    receiver = RecordingReceiver()
    with MultiPortServer(receiver.app, 4) as servers:
        # more URLs than aiohttp's own cache of parsed URLs holds (128), visited in turn
        urls = [f"{base}/hook/{number}" for base in servers.urls for number in range(50)]
        sender = AiohttpSender(fast_settings())
        try:
            first = [(await sender.send(Request(url, b"{}", {}))).status for url in urls]
            parsed_before = encode_url.cache_info().misses
            again = [(await sender.send(Request(url, b"{}", {}))).status for url in urls]
            parsed = encode_url.cache_info().misses - parsed_before
        finally:
            await sender.aclose()

    assert first == again == [200] * 200
    assert parsed == 0
