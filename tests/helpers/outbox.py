"""Filling an outbox for dispatcher tests: a token, an endpoint, and deliveries in order.

The bodies come from :mod:`tests.helpers.updates` (``simulated_bodies`` or ``order_updates``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from dhan_postback import payload
from dhan_postback.service.ids import new_endpoint_id
from dhan_postback.service.registry import register_token
from dhan_postback.service.store.base import (
    EndpointKind,
    EndpointRecord,
    NewDelivery,
    Store,
    Target,
    TokenRecord,
)
from dhan_postback.signing import generate_secret

from .updates import CLIENT_ID

__all__ = ["Outbox"]


class Outbox:
    """Deliveries for one token's URL, committed to ``store``, remembered in order."""

    def __init__(self, store: Store, *, client_id: str = CLIENT_ID) -> None:
        self.store = store
        self.client_id = client_id
        self.secret = generate_secret()
        self.token_hash = f"hash-{uuid.uuid4().hex}"
        self.deliveries: list[NewDelivery] = []

    async def open(self, url: str) -> Outbox:
        now = time.time()
        token = TokenRecord(
            token_hash=self.token_hash,
            dhan_client_id=self.client_id,
            postback_url=url,
            partner_id=None,
            created_at=now,
            expires_at=now + 86400,
        )
        endpoint = await register_token(self.store, token, self.secret)
        assert endpoint is not None
        self.secret = endpoint.signing_secret  # an earlier outbox's, for the same client and URL
        return self

    async def add(self, url: str, bodies: Sequence[bytes]) -> list[NewDelivery]:
        """Commit one delivery per body to ``url``, in the given order.

        ``url`` need not be the token's: the client gets an endpoint there too (with this
        outbox's secret, unless it had one), as if it had had a token for it."""
        now = time.time()
        await self.store.ensure_endpoint(
            EndpointRecord(
                id=new_endpoint_id(),
                kind=EndpointKind.CLIENT,
                owner_id=self.client_id,
                url=url,
                signing_secret=self.secret,
                created_at=now,
            )
        )
        batch = [
            NewDelivery(
                id=f"msg_{uuid.uuid4().hex}",
                dhan_client_id=self.client_id,
                token_hash=self.token_hash,
                target=Target.TOKEN,
                partner_id=None,
                url=url,
                order_id=payload.parse(body).order_id or "",
                payload=body,
                created_at=now,
            )
            for body in bodies
        ]
        await self.store.enqueue(batch)
        self.deliveries.extend(batch)
        return batch
