"""A POST slower than its lease, over real HTTP, while another node keeps claiming: the
heartbeat keeps the lease, so the other node never gets the delivery and the receiver gets
it once (the duplicate send of svix-webhooks PR #2181 cannot happen).

Two stores open the same database, as two nodes would; the receiver answers after 5 s,
under a lease of 2 s renewed by the dispatcher's own heartbeat task.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from dhan_postback.service.dispatcher import Dispatcher
from dhan_postback.service.store import Claim, create_store
from tests.helpers.dispatching import fast_settings
from tests.helpers.outbox import Outbox
from tests.helpers.receivers import RecordingReceiver, Reply, always
from tests.helpers.servers import UvicornThread
from tests.helpers.updates import order_updates
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.timeout(60)

LEASE = 2.0
ANSWER_AFTER = 5.0


async def test_a_post_slower_than_its_lease_is_sent_once_while_another_node_claims(
    service_db: str,
) -> None:
    receiver = RecordingReceiver(always(Reply(delay=ANSWER_AFTER)))
    ours, theirs = create_store(service_db), create_store(service_db)
    await ours.open()
    await theirs.open()
    taken: list[Claim] = []
    try:
        with UvicornThread(receiver.app) as server:
            outbox = await Outbox(ours).open(server.url)
            [delivery] = await outbox.add(server.url + "/hook", order_updates(1, 1))
            settings = fast_settings(lease=LEASE, timeout=10)
            async with Dispatcher(ours, settings):
                await eventually(lambda: len(receiver.snapshot()) == 1)
                while (found := await ours.get_delivery(delivery.id)) and not found.attempts:
                    taken += await theirs.claim(limit=10, now=time.time(), lease=LEASE)
                    await asyncio.sleep(0.05)
    finally:
        await ours.close()
        await theirs.close()

    assert taken == []
    assert len(receiver.snapshot()) == 1
