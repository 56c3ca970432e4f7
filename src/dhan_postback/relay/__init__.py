"""The relay: a DhanHQ account's live order-update websocket, turned into postbacks.

The broker streams every order update of an account over a websocket; the relay listens,
translates each ``order_alert`` into the exact postback payload, and hands it to the postback
service, which signs, retries and orders the deliveries to the user's Postback URL.

Modules: :mod:`~.mapping` (frames to payloads), :mod:`~.client` (the websocket),
:mod:`~.log` (de-duplication and acknowledgement, in SQLite), :mod:`~.sink` (the service's
ingest API), :mod:`~.embedded` (the service in this process), :mod:`~.pipeline` (the two
tasks that tie them together).
"""

from .backoff import Backoff
from .client import DEFAULT_WS_URL, Login, OrderUpdateStream
from .embedded import EmbeddedService
from .log import DeadLetter, LogCounts, LoggedUpdate, RelayLog, change_key
from .mapping import (
    Frame,
    MappingResult,
    UnreadableFrame,
    map_order_alert,
    parse_frame,
    repair_frame,
)
from .pipeline import FrameSource, Relay, RelayStatus
from .sink import HttpIngest, Sink, SinkError, SinkUnusable, UpdateRefused

__all__ = [
    "DEFAULT_WS_URL",
    "Backoff",
    "DeadLetter",
    "EmbeddedService",
    "Frame",
    "FrameSource",
    "HttpIngest",
    "LogCounts",
    "LoggedUpdate",
    "Login",
    "MappingResult",
    "OrderUpdateStream",
    "Relay",
    "RelayLog",
    "RelayStatus",
    "Sink",
    "SinkError",
    "SinkUnusable",
    "UnreadableFrame",
    "UpdateRefused",
    "change_key",
    "map_order_alert",
    "parse_frame",
    "repair_frame",
]
