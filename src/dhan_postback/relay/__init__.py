"""The relay: a DhanHQ account's live order-update websocket, turned into postbacks.

The broker streams every order update of an account over a websocket; the relay listens,
translates each ``order_alert`` into the exact postback payload, and hands it to the postback
service, which signs, retries and orders the deliveries to the user's Postback URL.

Modules: :mod:`~.mapping` (frames and order-book rows to payloads), :mod:`~.client` (the
websocket), :mod:`~.orderbook` (the broker's REST order book), :mod:`~.reconcile` (when to
read it), :mod:`~.progress` (whether an update is newer than the order's last one),
:mod:`~.log` (de-duplication and acknowledgement, in SQLite), :mod:`~.sink` (the service's
ingest API), :mod:`~.embedded` (the service in this process), :mod:`~.pipeline` (the tasks
that tie them together).
"""

from .backoff import Backoff
from .client import DEFAULT_WS_URL, Login, OrderUpdateStream
from .embedded import EmbeddedService
from .log import DeadLetter, LogCounts, LoggedUpdate, Recorded, RelayLog, change_key
from .mapping import (
    Frame,
    MappingResult,
    UnreadableFrame,
    map_book_row,
    map_order_alert,
    parse_frame,
    repair_frame,
)
from .orderbook import DEFAULT_API_URL, OrderBook, OrderBookUnavailable, TokenRefused
from .pipeline import FrameSource, Relay, RelayStatus
from .progress import OrderState, Verdict, compare
from .reconcile import BookSource, Reconciler
from .sink import HttpIngest, Sink, SinkError, SinkUnusable, UpdateRefused

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_WS_URL",
    "Backoff",
    "BookSource",
    "DeadLetter",
    "EmbeddedService",
    "Frame",
    "FrameSource",
    "HttpIngest",
    "LogCounts",
    "LoggedUpdate",
    "Login",
    "MappingResult",
    "OrderBook",
    "OrderBookUnavailable",
    "OrderState",
    "OrderUpdateStream",
    "Reconciler",
    "Recorded",
    "Relay",
    "RelayLog",
    "RelayStatus",
    "Sink",
    "SinkError",
    "SinkUnusable",
    "TokenRefused",
    "UnreadableFrame",
    "UpdateRefused",
    "Verdict",
    "change_key",
    "compare",
    "map_book_row",
    "map_order_alert",
    "parse_frame",
    "repair_frame",
]
