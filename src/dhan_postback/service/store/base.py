"""The storage contract of the postback service: one Protocol, one implementation per backend.

The service keeps three things: the **registry** (access tokens with their Postback URLs, and
partners with theirs), the **outbox** (one *delivery* per update and target URL) and the
**delivery log** (every attempt of every delivery). Backends: ``memory`` (unit tests),
``sqlite`` (the embedded default) and ``postgres`` (several nodes on one outbox). All of them
answer the same contract tests.

The outbox rules every backend keeps:

* ``enqueue`` returns only after the deliveries are durably committed: the API acknowledges
  an update only then.
* Deliveries to one URL for one order form a FIFO queue ordered by ``seq`` (the store's
  monotonic sequence number). Only the *head* of a queue (no earlier pending delivery for the
  same ``(url, order_id)``) can be claimed, so update n+1 is never sent before update n has
  been delivered or has died.
* ``claim`` hands out due, unleased heads with a lease. A lease that runs out (the node died)
  makes the delivery claimable again, with the same ``id``, which is its ``webhook-id``.
* ``finish`` records the attempt and moves the delivery on: delivered, retry at a time, or
  dead. When a delivery dies, the next one of its queue is released and flagged
  ``after_dead`` so that receivers and operators can see the gap.
* ``enqueue_once`` is ``enqueue`` under an ``Idempotency-Key``: the key's first answer is
  committed in the same transaction as the deliveries, so a retry after a crash (before or
  after the commit) finds either nothing or both.
* ``prune`` deletes finished deliveries (delivered or dead, never pending) and their attempts
  once past their retention. Pruning cannot change what is sent next: a queue's head is its
  lowest *pending* ``seq``, and a dead delivery flags its successor ``after_dead`` when it
  dies, so neither ever needs a finished row again.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "Attempt",
    "Claim",
    "Delivery",
    "DeliveryQuery",
    "DeliveryStatus",
    "IdempotencyRecord",
    "NewDelivery",
    "Outcome",
    "PartnerRecord",
    "PruneResult",
    "SessionRecord",
    "Store",
    "Target",
    "TokenRecord",
]


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class Target(enum.StrEnum):
    """Whose URL a delivery goes to: the token's, or the token's partner's."""

    TOKEN = "token"
    PARTNER = "partner"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An access token as stored: only its SHA-256 hash, never the token itself.

    ``signing_secret`` is kept as is: it is the HMAC key the dispatcher signs with, so it
    cannot be hashed. It never leaves the service except in the response that creates it.
    """

    token_hash: str
    dhan_client_id: str
    postback_url: str | None
    partner_id: str | None
    signing_secret: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None

    def is_active(self, now: float) -> bool:
        return self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True)
class PartnerRecord:
    partner_id: str
    postback_url: str
    signing_secret: str
    created_at: float


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A dashboard session as stored: the SHA-256 of its id (the cookie), never the id.

    ``principal`` names whom it belongs to (``admin``, or ``token:<token hash>``): the number
    of sessions is capped per principal, so nobody can push another principal's sessions
    out. ``flash`` holds the messages for the next page, one per line.
    """

    id_hash: str
    principal: str
    dhan_client_id: str | None
    token_hash: str | None
    created_at: float
    expires_at: float
    flash: str = ""


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """One update to one URL, as the ingest API hands it to the outbox.

    ``id`` (``msg_...``) is made by the caller, so that it is known before the commit; it is
    the ``webhook-id`` of every attempt. ``token_hash`` names the token that placed the
    order (whose client owns the delivery); ``partner_id`` is set when ``target`` is
    ``PARTNER``, and the partner's secret signs it.
    """

    id: str
    dhan_client_id: str
    token_hash: str
    target: Target
    partner_id: str | None
    url: str
    order_id: str
    payload: bytes
    created_at: float


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery leased to one dispatcher until ``lease_until``.

    ``round_attempts`` counts attempts since the delivery was created or last replayed: it
    picks the next delay of the retry schedule. ``attempts`` counts all of them, for the log.
    """

    id: str
    seq: int
    url: str
    order_id: str
    payload: bytes
    signing_secret: str
    attempts: int
    round_attempts: int
    lease_until: float
    after_dead: bool = False


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP attempt. ``status_code`` is None when no response came (error says why)."""

    delivery_id: str
    number: int
    started_at: float
    latency_ms: float
    status_code: int | None
    error: str | None = None
    response_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``finish`` should do with a claimed delivery after an attempt."""

    attempt: Attempt
    result: Literal["delivered", "retry", "dead"]
    next_attempt_at: float | None = None

    @property
    def delivery_id(self) -> str:
        return self.attempt.delivery_id


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery as the log shows it.

    SQL backends select its columns in the order of :meth:`from_row`.
    """

    id: str
    seq: int
    dhan_client_id: str
    token_hash: str
    target: Target
    partner_id: str | None
    url: str
    order_id: str
    payload: bytes
    status: DeliveryStatus
    attempts: int
    created_at: float
    next_attempt_at: float | None
    delivered_at: float | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    after_dead: bool = False

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Delivery:
        """From ``id, seq, dhan_client_id, token_hash, target, partner_id, url, order_id,
        payload, status, attempts, created_at, next_attempt_at, delivered_at,
        last_status_code, last_error, after_dead`` (SQL backends select them in this order)."""
        (
            delivery_id,
            seq,
            dhan_client_id,
            token_hash,
            target,
            partner_id,
            url,
            order_id,
            payload,
            status,
            attempts,
            created_at,
            next_attempt_at,
            delivered_at,
            last_status_code,
            last_error,
            after_dead,
        ) = row
        status = DeliveryStatus(status)
        return cls(
            id=delivery_id,
            seq=seq,
            dhan_client_id=dhan_client_id,
            token_hash=token_hash,
            target=Target(target),
            partner_id=partner_id,
            url=url,
            order_id=order_id,
            payload=bytes(payload),
            status=status,
            attempts=attempts,
            created_at=created_at,
            next_attempt_at=next_attempt_at if status is DeliveryStatus.PENDING else None,
            delivered_at=delivered_at,
            last_status_code=last_status_code,
            last_error=last_error,
            after_dead=bool(after_dead),
        )


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The first answer to an ingest request sent with an ``Idempotency-Key``.

    Scoped to the client (two clients may use the same key). ``request_hash`` (SHA-256 hex of
    the body) tells a retry of the same request from a different request under a reused key;
    ``response`` is the answer's exact bytes, so a retry gets the same ``deliveryIds``.
    """

    dhan_client_id: str
    key: str
    request_hash: str
    status: int
    response: bytes
    created_at: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> IdempotencyRecord:
        """From ``dhan_client_id, key, request_hash, status, response, created_at``."""
        client, key, request_hash, status, response, created_at = row
        return cls(client, key, request_hash, status, bytes(response), created_at)


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What one :meth:`Store.prune` batch deleted."""

    delivered: int = 0
    dead: int = 0
    attempts: int = 0
    idempotency_keys: int = 0

    @property
    def rows(self) -> int:
        """Deliveries and idempotency records deleted: a batch below its limit is the last."""
        return max(self.delivered + self.dead, self.idempotency_keys)

    def __add__(self, other: PruneResult) -> PruneResult:
        return PruneResult(
            self.delivered + other.delivered,
            self.dead + other.dead,
            self.attempts + other.attempts,
            self.idempotency_keys + other.idempotency_keys,
        )


@dataclass(frozen=True, slots=True)
class DeliveryQuery:
    """A filter over the delivery log, with cursor paging on ``seq``.

    Newest first by default; ``cursor`` is the ``seq`` of the last row of the previous page.
    ``dhan_client_id`` restricts to one client's deliveries (what a token may see);
    ``target`` to the token's own URL or to partner URLs.
    """

    status: DeliveryStatus | None = None
    order_id: str | None = None
    dhan_client_id: str | None = None
    target: Target | None = None
    partner_id: str | None = None
    since: float | None = None
    until: float | None = None
    cursor: int | None = None
    limit: int = 100
    newest_first: bool = True
    ids: Sequence[str] | None = field(default=None)


@runtime_checkable
class Store(Protocol):
    """What the service needs from storage. Every method is a coroutine."""

    async def open(self) -> None:
        """Connect and migrate the schema to the current version."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise :class:`~dhan_postback.errors.StoreUnavailable` when the store cannot serve."""

    # Registry -----------------------------------------------------------------------------
    async def add_token(self, token: TokenRecord) -> None: ...

    async def get_token(self, token_hash: str) -> TokenRecord | None: ...

    async def revoke_token(self, token_hash: str, at: float) -> bool:
        """Mark revoked; False when no such token. Its deliveries are kept and still sent."""

    async def put_partner(self, partner: PartnerRecord) -> None:
        """Create or replace a partner (its URL and signing secret)."""

    async def get_partner(self, partner_id: str) -> PartnerRecord | None: ...

    # Dashboard sessions ------------------------------------------------------------------
    async def add_session(self, session: SessionRecord, *, keep: int, now: float) -> None:
        """Store ``session``; then keep only the ``keep`` newest sessions of its principal,
        and forget every session expired at ``now``."""

    async def get_session(self, id_hash: str, *, now: float) -> SessionRecord | None:
        """The session, unless it has expired at ``now`` (or never existed, or ended)."""

    async def end_session(self, id_hash: str) -> None: ...

    async def set_session_flash(self, id_hash: str, flash: str) -> None: ...

    # Outbox ------------------------------------------------------------------------------
    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> None:
        """Commit new deliveries durably, in the given order; return only after the commit."""

    async def enqueue_once(
        self, deliveries: Sequence[NewDelivery], record: IdempotencyRecord, *, fresh_after: float
    ) -> IdempotencyRecord | None:
        """``enqueue`` and keep ``record``, in one transaction; None once committed.

        When the client already has a record under ``record.key`` created at or after
        ``fresh_after``, nothing is stored and that earlier record is returned instead (an
        older one is replaced). Two such calls at once, on any nodes, commit one of them."""

    async def claim(
        self, *, limit: int, now: float, lease: float, skip_urls: Collection[str] = ()
    ) -> list[Claim]:
        """Lease up to ``limit`` due queue heads, oldest due first, none of ``skip_urls``.

        Its cost must not grow with the skipped URLs' heads: the dispatcher skips a URL whose
        lane is full or whose breaker is open, which is when its backlog is largest."""

    async def finish(self, outcomes: Sequence[Outcome]) -> None:
        """Record attempts and move each claimed delivery on (see the module docstring)."""

    async def release(self, delivery_ids: Sequence[str]) -> None:
        """Give claimed deliveries back unattempted (due now), e.g. on graceful shutdown."""

    async def next_due(self) -> float | None:
        """When the next queue head becomes claimable: its ``next_attempt_at``, or its lease
        end if it is leased. Deliveries waiting behind a head do not count. None if idle."""

    async def replay(self, query: DeliveryQuery, *, now: float) -> list[str]:
        """Queue matching deliveries again (a fresh retry round); return their ids."""

    # Delivery log ------------------------------------------------------------------------
    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def get_attempts(self, delivery_id: str) -> list[Attempt]: ...

    async def list_deliveries(self, query: DeliveryQuery) -> list[Delivery]: ...

    async def counts(self) -> dict[DeliveryStatus, int]:
        """How many deliveries are in each status."""

    # Retention ---------------------------------------------------------------------------
    async def prune(
        self, *, delivered_before: float, dead_before: float, keys_before: float, limit: int
    ) -> PruneResult:
        """Delete, in one short transaction, up to ``limit`` finished deliveries with their
        attempts (delivered ones delivered before ``delivered_before``, dead ones whose last
        attempt was due before ``dead_before``; never a pending one) and up to ``limit``
        idempotency records created before ``keys_before``. Where several nodes share the
        store, one prunes at a time: the others' batches delete nothing meanwhile."""
