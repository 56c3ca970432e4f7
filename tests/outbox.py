"""Filling an outbox for dispatcher tests: order updates, a token, deliveries.

Two sources of updates: :func:`simulated_updates` (the simulator's realistic day, every order
kind, interleaved as a busy broker would post them) for the big runs, and
:func:`order_updates` (a fixed number of updates per order) where a test needs exact counts.
Either way the updates of one order are separated by other orders' updates in the outbox.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence

from dhan_postback import payload
from dhan_postback.payload import (
    ExchangeSegment,
    OrderStatus,
    OrderType,
    OrderUpdate,
    ProductType,
    TransactionType,
    Validity,
)
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
from dhan_postback.simulator import Simulator, interleave

__all__ = ["Outbox", "order_updates", "simulated_updates"]

CLIENT_ID = "1000000003"


def simulated_updates(orders: int, *, seed: int, client_id: str = CLIENT_ID) -> list[bytes]:
    """The payloads of ``orders`` simulated orders, in the order a broker would post them."""
    simulated = Simulator(seed, clients=(client_id,)).orders(orders)
    return [payload.dumps(update) for update in interleave(simulated, random.Random(seed))]


def order_updates(orders: int, per_order: int, *, client_id: str = CLIENT_ID) -> list[bytes]:
    """``orders * per_order`` payloads, interleaved by order, each order's in lifecycle order."""
    per_order = max(per_order, 1)
    lifecycles = []
    for number in range(orders):
        order_id = f"{112111182198 + number}"
        statuses = [OrderStatus.TRANSIT, OrderStatus.PENDING]
        statuses += [OrderStatus.PENDING] * max(per_order - 3, 0) + [OrderStatus.TRADED]
        statuses = statuses[-per_order:] if per_order < 3 else statuses
        quantity = 10 * per_order
        lifecycle = []
        for step, status in enumerate(statuses):
            filled = quantity if status is OrderStatus.TRADED else max(step - 1, 0) * 10
            second = step % 60
            lifecycle.append(
                OrderUpdate(
                    dhan_client_id=client_id,
                    order_id=order_id,
                    correlation_id=f"corr-{number}",
                    order_status=status,
                    transaction_type=TransactionType.BUY,
                    exchange_segment=ExchangeSegment.NSE_EQ,
                    product_type=ProductType.CNC,
                    order_type=OrderType.LIMIT,
                    validity=Validity.DAY,
                    trading_symbol="TCS",
                    security_id="11536",
                    quantity=quantity,
                    price=3345.8,
                    create_time="2024-11-25 09:15:00",
                    update_time=f"2024-11-25 09:16:{second:02d}",
                    exchange_time="2024-11-25 09:15:01",
                    filled_qty=filled,
                )
            )
        lifecycles.append([payload.dumps(update) for update in lifecycle])
    return [lc[step] for step in range(per_order) for lc in lifecycles if step < len(lc)]


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
