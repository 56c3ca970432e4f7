"""Builders for store tests: tokens, partners, deliveries and outcomes with readable defaults."""

from __future__ import annotations

import itertools

from dhan_postback.service.store import (
    Attempt,
    Claim,
    NewDelivery,
    Outcome,
    PartnerRecord,
    Store,
    Target,
    TokenRecord,
)

__all__ = [
    "CLIENT",
    "NOW",
    "PARTNER",
    "PARTNER_SECRET",
    "TOKEN_HASH",
    "TOKEN_SECRET",
    "URL",
    "dead",
    "delivered",
    "delivery",
    "retry",
    "seed_registry",
]

NOW = 1_700_000_000.0
CLIENT = "1000000001"
TOKEN_HASH = "a" * 64
TOKEN_SECRET = "whsec_dG9rZW4tc2VjcmV0LXRva2VuLXNlY3JldA=="
PARTNER = "partner-1"
PARTNER_SECRET = "whsec_cGFydG5lci1zZWNyZXQtcGFydG5lci1zZWM="
URL = "https://trader.example/postback"
PARTNER_URL = "https://partner.example/hook"

_ids = itertools.count(1)


async def seed_registry(store: Store) -> None:
    """The token (and partner) that every :func:`delivery` refers to."""
    await store.add_token(
        TokenRecord(
            token_hash=TOKEN_HASH,
            dhan_client_id=CLIENT,
            postback_url=URL,
            partner_id=PARTNER,
            signing_secret=TOKEN_SECRET,
            created_at=NOW - 100,
            expires_at=NOW + 86_400,
        )
    )
    await store.put_partner(
        PartnerRecord(
            partner_id=PARTNER,
            postback_url=PARTNER_URL,
            signing_secret=PARTNER_SECRET,
            created_at=NOW - 100,
        )
    )


def delivery(
    order_id: str = "O1",
    *,
    url: str = URL,
    created_at: float = NOW,
    target: Target = Target.TOKEN,
    client: str = CLIENT,
    body: bytes | None = None,
) -> NewDelivery:
    """A new delivery with a fresh ``msg_`` id."""
    number = next(_ids)
    return NewDelivery(
        id=f"msg_test{number:08d}",
        dhan_client_id=client,
        token_hash=TOKEN_HASH,
        target=target,
        partner_id=PARTNER if target is Target.PARTNER else None,
        url=url,
        order_id=order_id,
        payload=body if body is not None else b'{"orderNo":"%d"}' % number,
        created_at=created_at,
    )


def _attempt(claim: Claim, at: float, status_code: int | None, error: str | None) -> Attempt:
    return Attempt(
        delivery_id=claim.id,
        number=claim.attempts + 1,
        started_at=at,
        latency_ms=12.5,
        status_code=status_code,
        error=error,
        response_prefix=None if status_code is None else "ok",
    )


def delivered(claim: Claim, at: float = NOW) -> Outcome:
    return Outcome(_attempt(claim, at, 200, None), "delivered")


def retry(claim: Claim, at: float = NOW, *, next_at: float) -> Outcome:
    return Outcome(_attempt(claim, at, 503, "HTTP 503"), "retry", next_attempt_at=next_at)


def dead(claim: Claim, at: float = NOW) -> Outcome:
    return Outcome(_attempt(claim, at, None, "connection refused"), "dead")
