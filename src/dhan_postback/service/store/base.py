"""The storage contract of the postback service: one Protocol, one implementation per backend.

The service keeps three things: the **registry** (access tokens with their Postback URLs,
partners with theirs, and the *endpoints* those URLs are, each with its signing secret), the
**outbox** (one *delivery* per update and target URL) and the
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
* ``enqueue`` and ``finish`` may also lease, in their own transaction, the heads they make
  (a new queue's first delivery; a finished delivery's successor) to the dispatcher of the
  node that commits them, when given a :class:`HandOver`: that node then sends them without
  waiting for a claim. The lease is the claim's (same columns, same rules), so other nodes
  cannot take them, and a node that dies with them lets them go when the lease runs out.
  What a claim would skip (``skip_urls``, a paused endpoint, not due, beyond ``limit``) stays
  unleased and claimable.
* ``renew`` extends the leases a dispatcher still holds (its heartbeat), so that a lease can
  be short without running out under a slow receiver. A lease is named by its delivery and
  its end as last handed out (``lease_until``): every claim, release, finish or replay writes
  another end, so a renewal can never take back a delivery that another node claimed after
  the lease ran out (whoever claims it writes ``now + lease``, later than the old end).
* ``finish`` and ``release`` given the leases the dispatcher holds (:class:`Held`) apply by
  the same rule: only to deliveries whose lease is still as held. A node that stalled for
  longer than its lease (a stopped process, a long pause, a partition from the database) may
  finish a delivery that another node has claimed since and is sending: its attempt is
  logged (it happened: the receiver may have it), but the delivery's status, schedule and
  lease stay the new holder's, and no successor is handed over, so one queue never has two
  deliveries in flight. The ids not applied are listed in ``Held.lost``.
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

The registry rules:

* An **endpoint** is one owner's URL: a client's Postback URL (``kind`` client, ``owner_id``
  the ``dhanClientId``) or a partner's URL. It owns the signing secret, so that tokens can be
  renewed every day without the receiver noticing. ``ensure_endpoint`` creates one only if
  the owner has none at that URL, and returns the stored one either way.
* A delivery is signed with its endpoint's secrets at claim time: to a ``partner`` target the
  partner's endpoint at the delivery's URL, otherwise its client's. After a rotation the old
  secret keeps signing (second) until its ``until``; a claim carries it in
  ``previous_secrets``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Awaitable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

from ...errors import StoreUnavailable

__all__ = [
    "OWNER_COLUMNS",
    "Attempt",
    "Claim",
    "Delivery",
    "DeliveryQuery",
    "DeliveryStatus",
    "EndpointActivity",
    "EndpointKind",
    "EndpointRecord",
    "HandOver",
    "Held",
    "IdempotencyRecord",
    "MinuteCounts",
    "NewDelivery",
    "OrderQuery",
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
    "grace_secrets",
]


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class Target(enum.StrEnum):
    """Whose URL a delivery goes to: the token's, or the token's partner's."""

    TOKEN = "token"
    PARTNER = "partner"


class EndpointKind(enum.StrEnum):
    """Who owns an endpoint: a client (its tokens' Postback URL) or a partner."""

    CLIENT = "client"
    PARTNER = "partner"


@dataclass(frozen=True, slots=True)
class RetiredSecret:
    """A secret replaced by a rotation, still signing (second) until ``until``."""

    secret: str
    until: float


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """Where postbacks go, and the secret that signs them: one per owner and URL.

    ``signing_secret`` is kept as is: it is the HMAC key the dispatcher signs with, so it
    cannot be hashed. It leaves the service only in the answers that create, renew or rotate
    it, and when an admin asks for it. A ``paused`` endpoint gets no attempts: claims leave
    its deliveries pending, in order, until it is resumed (:meth:`Store.set_paused`).
    """

    id: str
    kind: EndpointKind
    owner_id: str
    url: str
    signing_secret: str
    created_at: float
    previous_secrets: tuple[RetiredSecret, ...] = ()
    secret_rotated_at: float | None = None
    paused: bool = False

    @property
    def target(self) -> Target:
        """The target of the deliveries that go to this endpoint."""
        return Target.PARTNER if self.kind is EndpointKind.PARTNER else Target.TOKEN

    def grace_secrets(self, now: float) -> tuple[str, ...]:
        """The retired secrets that still sign at ``now``, newest first."""
        return tuple(old.secret for old in self.previous_secrets if old.until > now)

    def grace_until(self, now: float) -> float | None:
        """When the last retired secret stops signing; None when none signs at ``now``."""
        return max((old.until for old in self.previous_secrets if old.until > now), default=None)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> EndpointRecord:
        """From ``id, kind, owner_id, url, signing_secret, created_at, previous_secrets,
        secret_rotated_at, paused``; ``previous_secrets`` is ``[[secret, until], ...]``, as a
        JSON value or its text."""
        (endpoint_id, kind, owner_id, url, secret, created_at, previous, rotated_at, paused) = row
        if isinstance(previous, str | bytes):
            previous = json.loads(previous)
        return cls(
            id=endpoint_id,
            kind=EndpointKind(kind),
            owner_id=owner_id,
            url=url,
            signing_secret=secret,
            created_at=created_at,
            previous_secrets=tuple(RetiredSecret(old, float(until)) for old, until in previous),
            secret_rotated_at=rotated_at,
            paused=bool(paused),
        )

    def previous_json(self) -> str:
        """``previous_secrets`` as the JSON text the SQL backends store."""
        return json.dumps([[old.secret, old.until] for old in self.previous_secrets])

    def params(self) -> dict[str, Any]:
        """The named parameters of the SQL backends' endpoint statements (its deliveries'
        ``target`` too, for the delivery-log queries about it)."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "owner_id": self.owner_id,
            "url": self.url,
            "signing_secret": self.signing_secret,
            "previous_secrets": self.previous_json(),
            "secret_rotated_at": self.secret_rotated_at,
            "created_at": self.created_at,
            "paused": self.paused,
            "target": self.target.value,
        }

    def rotated(self, secret: str, *, now: float, keep_until: float) -> EndpointRecord:
        """This endpoint after a rotation to ``secret`` at ``now``: the current secret keeps
        signing until ``keep_until``, then the earlier ones still signing (every backend keeps
        this rule by calling this)."""
        still = tuple(old for old in self.previous_secrets if old.until > now)
        return dataclasses.replace(
            self,
            signing_secret=secret,
            previous_secrets=(RetiredSecret(self.signing_secret, keep_until), *still),
            secret_rotated_at=now,
        )


def grace_secrets(previous: Any, now: float) -> tuple[str, ...]:
    """The still-signing secrets of a stored ``previous_secrets`` value (JSON or its text)."""
    if not previous or previous == "[]":
        return ()
    if isinstance(previous, str | bytes):
        previous = json.loads(previous)
    return tuple(old for old, until in previous if until > now)


OWNER_COLUMNS: Final = {EndpointKind.CLIENT: "dhan_client_id", EndpointKind.PARTNER: "partner_id"}
"""The delivery-log column that names an endpoint's owner, by its kind."""


@dataclass(frozen=True, slots=True)
class PauseChange:
    """An endpoint after a pause or resume. ``changed`` is False when it already was so:
    pausing twice is not an error, and only a change is worth a log line or an event."""

    endpoint: EndpointRecord
    changed: bool


@dataclass(frozen=True, slots=True)
class EndpointActivity:
    """What the delivery log says about an endpoint: its backlog and its last answer."""

    backlog: int
    last_attempt: Attempt | None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An access token as stored: only its SHA-256 hash, never the token itself.

    It signs nothing: its client's endpoint at ``postback_url`` does. ``endpoint_id`` names
    that endpoint when the token is read back (None without a URL); on ``add_token`` it is
    ignored, since the endpoint follows from client and URL.
    """

    token_hash: str
    dhan_client_id: str
    postback_url: str | None
    partner_id: str | None
    created_at: float
    expires_at: float
    revoked_at: float | None = None
    endpoint_id: str | None = None

    def is_active(self, now: float) -> bool:
        return self.revoked_at is None and now < self.expires_at

    @property
    def token_id(self) -> str:
        """A non-secret name for the token: the start of its hash, which cannot be used to
        authenticate (the service hashes what it is offered)."""
        return "tok_" + self.token_hash[:16]


@dataclass(frozen=True, slots=True)
class PartnerRecord:
    """A partner and its current URL; the partner's endpoint at that URL signs."""

    partner_id: str
    postback_url: str
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
    ``signing_secret`` is its endpoint's current secret.
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
    previous_secrets: tuple[str, ...] = ()
    """Secrets retired by a rotation that still sign, after ``signing_secret``."""

    @classmethod
    def from_row(cls, row: Sequence[Any], *, now: float) -> Claim:
        """From ``id, seq, url, order_id, payload, signing_secret, attempts, round_attempts,
        lease_until, after_dead, previous_secrets`` (as :func:`grace_secrets` reads it)."""
        delivery_id, seq, url, order_id, payload, secret, *rest = row
        attempts, round_attempts, lease_until, after_dead, previous = rest
        if secret is None:
            # Endpoints are never deleted, so this means a damaged database.
            raise StoreUnavailable(f"delivery {delivery_id} has no signing secret")
        head = (delivery_id, seq, url, order_id, bytes(payload), secret, attempts)
        grace = grace_secrets(previous, now)
        return cls(*head, round_attempts, lease_until, bool(after_dead), grace)


@dataclass(frozen=True, slots=True)
class HandOver:
    """What a commit may lease to the dispatcher of the node that makes it (see the module
    docstring): at most ``limit`` due heads, none of ``skip_urls`` nor of a paused endpoint,
    leased until ``now + lease``, exactly as ``claim(limit=..., now=..., lease=...,
    skip_urls=...)`` would lease them."""

    limit: int
    now: float
    lease: float
    skip_urls: Collection[str] = ()


@dataclass(slots=True)
class Held:
    """The leases a dispatcher finishes or gives back deliveries under: ``leases`` maps each
    delivery id to its lease end as last handed out or renewed (as :meth:`Store.renew` is
    asked). ``finish`` and ``release`` apply to a delivery only while its lease is still that
    one (renew's rule); they add every id they did not apply (lost to another node, finished,
    pruned, or not in ``leases``) to ``lost``, which the caller reads afterwards."""

    leases: Mapping[str, float]
    lost: list[str] = field(default_factory=list)

    def of(self, ids: Iterable[str]) -> list[tuple[str, float]]:
        """The leases held of ``ids``, as :meth:`Store.renew` takes them."""
        leases = self.leases
        return [(i, leases[i]) for i in ids if i in leases]

    def applied(self, ids: Iterable[str], done: Collection[str]) -> None:
        """The store applied ``done`` of ``ids``: the others were lost."""
        self.lost.extend(i for i in ids if i not in done)


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
class Delivery(NewDelivery):
    """A delivery as the log shows it: the :class:`NewDelivery` it was enqueued as, and where
    it stands (its place ``seq`` in the outbox, its status and attempts).

    SQL backends select its columns in the order of :meth:`from_row`.
    """

    seq: int
    status: DeliveryStatus
    attempts: int
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


@dataclass(frozen=True, slots=True)
class MinuteCounts:
    """Attempts to one endpoint started in one minute (``minute``: its first second, epoch):
    answered 2xx (``delivered``) and not (``failed``: another status, or no answer)."""

    minute: float
    delivered: int
    failed: int


@dataclass(frozen=True, slots=True)
class OrderSummary:
    """One order as the newest deliveries show it: how many of them are its, how many of
    those are pending or dead, and its newest delivery's time, payload and ``seq``."""

    order_id: str
    dhan_client_id: str
    deliveries: int
    pending: int
    dead: int
    last_created_at: float
    last_payload: bytes
    last_seq: int

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> OrderSummary:
        """From ``order_id, dhan_client_id, deliveries, pending, dead, last_created_at,
        last_payload, last_seq``."""
        order_id, client, deliveries, pending, dead, created_at, payload, seq = row
        return cls(
            order_id, client, int(deliveries), int(pending or 0), int(dead or 0),
            created_at, bytes(payload), seq,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class OrderQuery:
    """Which orders :meth:`Store.recent_orders` summarises: those of the newest ``window``
    deliveries (of one client, one target, when given), at most ``limit`` of them.

    ``window`` bounds the read, so that a month of log costs what an hour does.
    """

    dhan_client_id: str | None = None
    target: Target | None = None
    window: int = 1000
    limit: int = 50

    def params(self) -> dict[str, Any]:
        """The named parameters of the SQL backends' ``recent_orders`` statement."""
        return {
            "dhan_client_id": self.dhan_client_id,
            "target": None if self.target is None else self.target.value,
            "window": self.window,
            "limit": self.limit,
        }


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

    async def revoked_since(self, since: float) -> list[str]:
        """The hashes of the tokens revoked at ``since`` or later: what every node drops from
        its token cache (see :class:`~dhan_postback.service.registry.Registry`)."""

    async def put_partner(self, partner: PartnerRecord) -> None:
        """Create or replace a partner (its URL and signing secret)."""

    async def get_partner(self, partner_id: str) -> PartnerRecord | None: ...

    async def list_tokens(self, dhan_client_id: str | None = None) -> list[TokenRecord]:
        """Every token (of one client, if given), newest first, with ``endpoint_id``."""

    async def ensure_endpoint(self, endpoint: EndpointRecord) -> EndpointRecord:
        """Store ``endpoint`` unless its owner already has one at its URL; return the stored
        one (so a second token for the same client and URL gets the first one's secret)."""

    async def get_endpoint(self, endpoint_id: str) -> EndpointRecord | None: ...

    async def list_endpoints(self) -> list[EndpointRecord]:
        """Every endpoint, oldest first."""

    async def rotate_secret(
        self, endpoint_id: str, secret: str, *, now: float, keep_until: float
    ) -> EndpointRecord | None:
        """Make ``secret`` the endpoint's secret; the one it replaces keeps signing until
        ``keep_until`` (older retired ones keep theirs, if still running). None if unknown."""

    async def set_paused(self, endpoint_id: str, paused: bool) -> PauseChange | None:
        """Pause or resume an endpoint; None if unknown. While paused, ``claim`` hands out
        none of its deliveries (on every node: the flag is read at claim time); a claim made
        before the pause committed still goes. Of several nodes pausing at once, exactly one
        sees ``changed``."""

    async def endpoint_activity(self, endpoint: EndpointRecord) -> EndpointActivity:
        """Pending deliveries to the endpoint, and the last attempt of the newest delivery
        to it that has been attempted."""

    # Dashboard sessions ------------------------------------------------------------------
    async def add_session(self, session: SessionRecord, *, keep: int, now: float) -> None:
        """Store ``session``; then keep only the ``keep`` newest sessions of its principal,
        and forget every session expired at ``now``."""

    async def get_session(self, id_hash: str, *, now: float) -> SessionRecord | None:
        """The session, unless it has expired at ``now`` (or never existed, or ended)."""

    async def end_session(self, id_hash: str) -> None: ...

    async def set_session_flash(self, id_hash: str, flash: str) -> None: ...

    # Outbox ------------------------------------------------------------------------------
    def enqueue(
        self, deliveries: Sequence[NewDelivery], *, hand_over: HandOver | None = None
    ) -> Awaitable[list[Claim] | None]:
        """Commit new deliveries durably, in the given order; resolve only after the commit.

        With ``hand_over``, the same transaction leases the due heads of the deliveries'
        queues as it allows, and returns them (oldest due first); without, None.

        An awaitable, not necessarily a coroutine: a store may return the future its commit
        resolves (SQLite's writer does), which the dispatcher watches with a callback rather
        than a task of its own. Awaiting it at once is always right."""

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
        """Lease up to ``limit`` due queue heads, oldest due first, none of ``skip_urls``
        and none whose endpoint is paused (a paused head holds its queue back: order kept).

        Its cost must not grow with the skipped URLs' heads: the dispatcher skips a URL whose
        lane is full or whose breaker is open, which is when its backlog is largest."""

    async def finish(
        self,
        outcomes: Sequence[Outcome],
        *,
        hand_over: HandOver | None = None,
        held: Held | None = None,
    ) -> list[Claim] | None:
        """Record attempts and move each claimed delivery on (see the module docstring).

        With ``hand_over``, the same transaction leases the new heads of the queues whose
        delivery was delivered or died (their successors) as it allows, and returns them
        (oldest due first); without, None. A retried delivery stays for ``claim``.

        With ``held``, an outcome moves its delivery on only while the delivery's lease is
        still as held; the attempt of one that does not is logged all the same (if the
        delivery still exists), its id added to ``held.lost``, its queue left as it is."""

    async def release(self, delivery_ids: Sequence[str], *, held: Held | None = None) -> None:
        """Give claimed deliveries back unattempted (due now), e.g. on graceful shutdown.

        With ``held``, only those whose lease is still as held; the others are left alone and
        their ids added to ``held.lost``."""

    async def renew(self, leases: Sequence[tuple[str, float]], *, until: float) -> list[str]:
        """Extend to ``until`` each lease ``(delivery id, lease_until)`` that is still as
        given: the delivery is pending and nothing has leased, released or finished it since
        it was leased (or renewed) until exactly ``lease_until``. Return the ids renewed; the
        others are lost to their holder, who must neither send nor finish them.

        A lease that ran out but that nobody has taken since is renewed: no other node can
        have sent it. Its cost follows ``leases``, by the deliveries' ids."""

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

    async def oldest_pending(self) -> dict[str, float]:
        """For each URL with pending deliveries, when the oldest of them was created (read
        from the queues' heads, so its cost grows with the queues, not their backlog)."""

    # Retention ---------------------------------------------------------------------------
    async def prune(
        self, *, delivered_before: float, dead_before: float, keys_before: float, limit: int
    ) -> PruneResult:
        """Delete, in one short transaction, up to ``limit`` finished deliveries with their
        attempts (delivered ones delivered before ``delivered_before``, dead ones whose last
        attempt was due before ``dead_before``; never a pending one) and up to ``limit``
        idempotency records created before ``keys_before``. Where several nodes share the
        store, one prunes at a time: the others' batches delete nothing meanwhile."""

    # The operator's view (dashboard) -----------------------------------------------------
    async def endpoint_minutes(
        self, endpoint: EndpointRecord, *, since: float, until: float
    ) -> list[MinuteCounts]:
        """Attempts to ``endpoint`` started in ``[since, until)``, counted per minute of
        ``started_at`` (UTC minutes), oldest first; minutes without an attempt are left out.
        Its cost follows the attempts in the range (an index on ``started_at``), not the log."""

    async def endpoint_failures(
        self, endpoint: EndpointRecord, *, since: float, limit: int
    ) -> list[Attempt]:
        """Up to ``limit`` attempts to ``endpoint`` started at or after ``since`` that got no
        2xx answer, newest first (with what the receiver answered)."""

    async def recent_orders(self, query: OrderQuery) -> list[OrderSummary]:
        """The orders of the query's newest ``window`` deliveries, the most recently updated
        first, at most ``limit``; counts are over that window."""
