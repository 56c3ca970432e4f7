"""Replay by filter, one bounded page at a time.

A filter such as "every dead delivery" can match millions of rows after an outage. Replaying
them in one call would be one huge transaction holding the writer (SQLite) or row locks
(PostgreSQL) for as long as it takes, and one huge answer. So one call replays at most
``--max-replay`` (:data:`MAX_REPLAY` by default) matches, oldest first, and says where to continue.
"""

from __future__ import annotations

import dataclasses

from .store import DeliveryQuery, Store

__all__ = ["MAX_REPLAY", "capped_page"]

MAX_REPLAY = 10_000
"""Most deliveries one replay-by-filter call queues again; the answer pages the rest."""


async def capped_page(
    store: Store, query: DeliveryQuery, *, cursor: int | None, limit: int = MAX_REPLAY
) -> tuple[DeliveryQuery, str | None]:
    """``query`` narrowed to its next ``limit`` matches, oldest first, after
    ``cursor``; and the cursor that continues after them (None when nothing is left).

    One call then costs a bounded transaction, however many deliveries a filter matches.
    """
    listing = dataclasses.replace(query, cursor=cursor, limit=limit + 1, newest_first=False)
    found = await store.list_deliveries(listing)
    page = found[:limit]
    more = len(found) > limit
    return (
        dataclasses.replace(query, ids=[delivery.id for delivery in page]),
        str(page[-1].seq) if more else None,
    )
