"""The receiver: what a trader runs at their Postback URL.

* :class:`Receiver`, an ASGI app (standalone under uvicorn, or mounted in Starlette/FastAPI) that
  verifies, de-duplicates, stores durably, keeps a forward-only order book and calls handlers;
* :func:`parse_and_verify`, the same checks for any other framework;
* :class:`ReceiverStore`, the SQLite file behind both, for queries.
"""

from .app import Receiver, ReceiverStats
from .book import Progress, supersedes
from .handlers import DEFAULT_RETRY_DELAYS, Handler
from .store import (
    HandlerFailure,
    OrderRow,
    QuarantineEntry,
    ReceiverStore,
    StoreCounts,
    StoredUpdate,
)
from .verify import Postback, parse_and_verify

__all__ = [
    "DEFAULT_RETRY_DELAYS",
    "Handler",
    "HandlerFailure",
    "OrderRow",
    "Postback",
    "Progress",
    "QuarantineEntry",
    "Receiver",
    "ReceiverStats",
    "ReceiverStore",
    "StoreCounts",
    "StoredUpdate",
    "parse_and_verify",
    "supersedes",
]
