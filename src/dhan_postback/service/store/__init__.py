"""Storage backends of the postback service, chosen by the ``--db`` URL.

``memory://`` (tests), ``sqlite:///path/to/file.db`` (the embedded default) and
``postgresql://user@host/db`` (several nodes). Backends are imported only when used.
"""

from __future__ import annotations

import importlib

from .base import (
    Attempt,
    Claim,
    Delivery,
    DeliveryQuery,
    DeliveryStatus,
    EndpointActivity,
    EndpointKind,
    EndpointRecord,
    HandOver,
    IdempotencyRecord,
    MinuteCounts,
    NewDelivery,
    OrderSummary,
    Outcome,
    PartnerRecord,
    PauseChange,
    PruneResult,
    RetiredSecret,
    SessionRecord,
    Store,
    Target,
    TokenRecord,
)

__all__ = [
    "Attempt",
    "Claim",
    "Delivery",
    "DeliveryQuery",
    "DeliveryStatus",
    "EndpointActivity",
    "EndpointKind",
    "EndpointRecord",
    "HandOver",
    "IdempotencyRecord",
    "MinuteCounts",
    "NewDelivery",
    "OrderSummary",
    "Outcome",
    "PartnerRecord",
    "PauseChange",
    "PruneResult",
    "RetiredSecret",
    "SessionRecord",
    "Store",
    "Target",
    "TokenRecord",
    "create_store",
]

_BACKENDS = {
    "memory": "dhan_postback.service.store.memory:MemoryStore",
    "sqlite": "dhan_postback.service.store.sqlite:SQLiteStore",
    "postgresql": "dhan_postback.service.store.postgres:PostgresStore",
    "postgres": "dhan_postback.service.store.postgres:PostgresStore",
}


def create_store(url: str) -> Store:
    """The store for a database URL (not yet opened: ``await store.open()``)."""
    scheme = url.split(":", 1)[0].lower()
    target = _BACKENDS.get(scheme)
    if target is None:
        raise ValueError(
            f"unsupported database URL scheme {scheme!r}: use sqlite:///path, postgresql://... "
            "or memory://"
        )
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if scheme == "memory":
        store: Store = cls()
    else:
        store = cls(url)
    return store
