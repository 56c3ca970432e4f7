"""An in-memory :class:`~.base.Store` for unit tests: the reference semantics, no durability.

It keeps the same rules as the real backends (FIFO per ``(url, order_id)``, leases, the
``after_dead`` flag, replay rounds) in plain Python, so it is also the easiest place to read
what those rules are.

One index keeps it usable with thousands of rows: the pending rows of each queue, in ``seq``
order, so that a queue's head is its first pending row and a claim looks at heads only.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeGuard

from ...errors import Conflict, StoreUnavailable
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
    Held,
    IdempotencyRecord,
    MinuteCounts,
    NewDelivery,
    OrderQuery,
    OrderSummary,
    Outcome,
    PartnerRecord,
    PauseChange,
    PruneResult,
    SessionRecord,
    Target,
    TokenRecord,
)

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Row:
    new: NewDelivery
    seq: int
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    round_attempts: int = 0
    next_attempt_at: float = 0.0
    lease_until: float = 0.0
    delivered_at: float | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    after_dead: bool = False


class MemoryStore:
    """Everything in dicts; safe within one event loop."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenRecord] = {}
        self._partners: dict[str, PartnerRecord] = {}
        self._endpoints: dict[str, EndpointRecord] = {}
        self._endpoint_ids: dict[tuple[EndpointKind, str, str], str] = {}
        """(kind, owner_id, url) -> endpoint id: one endpoint per owner and URL."""
        self._rows: dict[str, _Row] = {}
        self._attempts: dict[str, list[Attempt]] = {}
        self._queues: dict[str, dict[str, list[_Row]]] = {}
        """url -> order_id -> that queue's pending rows in ``seq`` order; the first is the
        queue's head. By URL first, so that a claim skips a URL's queues without looking."""
        self._seq = 0
        self._keys: dict[tuple[str, str], IdempotencyRecord] = {}
        self._sessions: dict[str, SessionRecord] = {}
        """By id hash, in creation order (dicts keep it): a principal's first is its oldest."""

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    # Registry -----------------------------------------------------------------------------
    async def add_token(self, token: TokenRecord) -> None:
        if token.token_hash in self._tokens:
            raise Conflict("token already exists")
        self._tokens[token.token_hash] = token

    async def get_token(self, token_hash: str) -> TokenRecord | None:
        token = self._tokens.get(token_hash)
        return None if token is None else self._with_endpoint(token)

    def _with_endpoint(self, token: TokenRecord) -> TokenRecord:
        endpoint_id = None
        if token.postback_url is not None:
            key = (EndpointKind.CLIENT, token.dhan_client_id, token.postback_url)
            endpoint_id = self._endpoint_ids.get(key)
        return dataclasses.replace(token, endpoint_id=endpoint_id)

    async def list_tokens(self, dhan_client_id: str | None = None) -> list[TokenRecord]:
        tokens = [
            self._with_endpoint(token)
            for token in self._tokens.values()
            if dhan_client_id is None or token.dhan_client_id == dhan_client_id
        ]
        return sorted(tokens, key=lambda token: (token.created_at, token.token_hash), reverse=True)

    async def ensure_endpoint(self, endpoint: EndpointRecord) -> EndpointRecord:
        key = (endpoint.kind, endpoint.owner_id, endpoint.url)
        existing = self._endpoint_ids.get(key)
        if existing is not None:
            return self._endpoints[existing]
        if endpoint.id in self._endpoints:
            raise Conflict(f"endpoint {endpoint.id} already exists")
        self._endpoints[endpoint.id] = endpoint
        self._endpoint_ids[key] = endpoint.id
        return endpoint

    async def get_endpoint(self, endpoint_id: str) -> EndpointRecord | None:
        return self._endpoints.get(endpoint_id)

    async def list_endpoints(self) -> list[EndpointRecord]:
        return sorted(self._endpoints.values(), key=lambda e: (e.created_at, e.id))

    async def rotate_secret(
        self, endpoint_id: str, secret: str, *, now: float, keep_until: float
    ) -> EndpointRecord | None:
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            return None
        rotated = endpoint.rotated(secret, now=now, keep_until=keep_until)
        self._endpoints[endpoint_id] = rotated
        return rotated

    async def set_paused(self, endpoint_id: str, paused: bool) -> PauseChange | None:
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            return None
        if endpoint.paused == paused:
            return PauseChange(endpoint, changed=False)
        endpoint = self._endpoints[endpoint_id] = dataclasses.replace(endpoint, paused=paused)
        return PauseChange(endpoint, changed=True)

    async def endpoint_activity(self, endpoint: EndpointRecord) -> EndpointActivity:
        rows = [row for row in self._rows.values() if _endpoint_key(row.new) == _key(endpoint)]
        backlog = sum(1 for row in rows if row.status is DeliveryStatus.PENDING)
        attempted = [row for row in rows if row.attempts]
        last = max(attempted, key=lambda row: row.seq, default=None)
        return EndpointActivity(backlog, None if last is None else self._attempts[last.new.id][-1])

    async def revoke_token(self, token_hash: str, at: float) -> bool:
        token = self._tokens.get(token_hash)
        if token is None:
            return False
        if token.revoked_at is None:
            self._tokens[token_hash] = dataclasses.replace(token, revoked_at=at)
        return True

    async def revoked_since(self, since: float) -> list[str]:
        return [
            token_hash
            for token_hash, token in self._tokens.items()
            if token.revoked_at is not None and token.revoked_at >= since
        ]

    async def put_partner(self, partner: PartnerRecord) -> None:
        self._partners[partner.partner_id] = partner

    async def get_partner(self, partner_id: str) -> PartnerRecord | None:
        return self._partners.get(partner_id)

    # Dashboard sessions --------------------------------------------------------------------
    async def add_session(self, session: SessionRecord, *, keep: int, now: float) -> None:
        if session.id_hash in self._sessions:
            raise Conflict("session already exists")
        self._sessions[session.id_hash] = session
        own = [s.id_hash for s in self._sessions.values() if s.principal == session.principal]
        for id_hash in own[: max(0, len(own) - keep)]:
            del self._sessions[id_hash]
        for id_hash in [s.id_hash for s in self._sessions.values() if s.expires_at <= now]:
            del self._sessions[id_hash]

    async def get_session(self, id_hash: str, *, now: float) -> SessionRecord | None:
        session = self._sessions.get(id_hash)
        return session if session is not None and session.expires_at > now else None

    async def end_session(self, id_hash: str) -> None:
        self._sessions.pop(id_hash, None)

    async def set_session_flash(self, id_hash: str, flash: str) -> None:
        session = self._sessions.get(id_hash)
        if session is not None:
            self._sessions[id_hash] = dataclasses.replace(session, flash=flash)

    # Outbox ------------------------------------------------------------------------------
    async def enqueue(
        self, deliveries: Sequence[NewDelivery], *, hand_over: HandOver | None = None
    ) -> list[Claim] | None:
        for new in deliveries:
            if new.id in self._rows:
                raise Conflict(f"delivery {new.id} already exists")
        for new in deliveries:
            self._seq += 1
            row = _Row(new=new, seq=self._seq, next_attempt_at=new.created_at)
            self._rows[new.id] = row
            self._set_pending(row)
        if hand_over is None:
            return None
        return self._hand_over({(new.url, new.order_id) for new in deliveries}, hand_over)

    async def enqueue_once(
        self, deliveries: Sequence[NewDelivery], record: IdempotencyRecord, *, fresh_after: float
    ) -> IdempotencyRecord | None:
        scope = (record.dhan_client_id, record.key)
        earlier = self._keys.get(scope)
        if earlier is not None and earlier.created_at >= fresh_after:
            return earlier
        await self.enqueue(deliveries)
        self._keys[scope] = record
        return None

    def _set_pending(self, row: _Row) -> None:
        """Make ``row`` pending and put it in its queue, in ``seq`` order."""
        row.status = DeliveryStatus.PENDING
        queue = self._queues.setdefault(row.new.url, {}).setdefault(row.new.order_id, [])
        bisect.insort(queue, row, key=lambda queued: queued.seq)

    def _set_done(self, row: _Row, status: DeliveryStatus) -> None:
        """Move ``row`` to ``status`` (delivered or dead), out of its queue if it was in one."""
        if row.status is DeliveryStatus.PENDING:
            queues = self._queues[row.new.url]
            queue = queues[row.new.order_id]
            queue.remove(row)
            if not queue:
                del queues[row.new.order_id]
                if not queues:
                    del self._queues[row.new.url]
        row.status = status

    def _heads(self, skip_urls: Collection[str] = ()) -> list[_Row]:
        """The head of every queue (the only rows that may be sent), but ``skip_urls``'."""
        return [
            queue[0]
            for url, queues in self._queues.items()
            if url not in skip_urls
            for queue in queues.values()
        ]

    async def claim(
        self, *, limit: int, now: float, lease: float, skip_urls: Collection[str] = ()
    ) -> list[Claim]:
        return self._lease_due(self._heads(skip_urls), limit, now, lease)

    def _hand_over(self, queues: Collection[tuple[str, str]], hand_over: HandOver) -> list[Claim]:
        """Lease the heads of ``queues`` that ``claim`` on the same terms could take."""
        heads = []
        for url, order_id in queues:
            queue = self._queues.get(url, {}).get(order_id)
            if queue and url not in hand_over.skip_urls:
                heads.append(queue[0])
        return self._lease_due(heads, hand_over.limit, hand_over.now, hand_over.lease)

    def _lease_due(
        self, heads: Iterable[_Row], limit: int, now: float, lease: float
    ) -> list[Claim]:
        """Lease up to ``limit`` of ``heads`` that are due, unleased and not paused, oldest
        due first."""
        paused = {_key(endpoint) for endpoint in self._endpoints.values() if endpoint.paused}
        due = heapq.nsmallest(
            max(limit, 0),
            (
                row
                for row in heads
                if row.next_attempt_at <= now
                and row.lease_until <= now
                and not (paused and _endpoint_key(row.new) in paused)
            ),
            key=lambda row: (row.next_attempt_at, row.seq),
        )
        return [self._lease(row, now + lease, now) for row in due]

    def _lease(self, row: _Row, until: float, now: float | None = None) -> Claim:
        """Lease ``row`` until ``until`` and describe it as a claim (signed by the secrets
        valid at ``now``, by default at ``until``)."""
        row.lease_until = until
        endpoint = self._endpoint_of(row.new)
        return Claim(
            id=row.new.id,
            seq=row.seq,
            url=row.new.url,
            order_id=row.new.order_id,
            payload=row.new.payload,
            signing_secret=endpoint.signing_secret,
            attempts=row.attempts,
            round_attempts=row.round_attempts,
            lease_until=until,
            after_dead=row.after_dead,
            previous_secrets=endpoint.grace_secrets(until if now is None else now),
        )

    def _endpoint_of(self, new: NewDelivery) -> EndpointRecord:
        endpoint_id = self._endpoint_ids.get(_endpoint_key(new))
        if endpoint_id is None:
            # Endpoints are never deleted, so this means a damaged store (as on SQLite).
            raise StoreUnavailable(f"delivery {new.id} has no endpoint to sign it")
        return self._endpoints[endpoint_id]

    async def finish(
        self,
        outcomes: Sequence[Outcome],
        *,
        hand_over: HandOver | None = None,
        held: Held | None = None,
    ) -> list[Claim] | None:
        moved_on: set[tuple[str, str]] = set()
        for outcome in outcomes:
            row = self._rows.get(outcome.delivery_id)
            attempt = outcome.attempt
            if held is not None and not _held(row, held, outcome.delivery_id):
                held.lost.append(outcome.delivery_id)
                if row is not None:  # it happened: logged, the rest is the holder's
                    self._attempts.setdefault(row.new.id, []).append(attempt)
                continue
            if row is None:
                continue  # pruned since: a late report of a lease that ran out
            if outcome.result != "retry":
                moved_on.add((row.new.url, row.new.order_id))
            self._attempts.setdefault(row.new.id, []).append(attempt)
            row.attempts += 1
            row.round_attempts += 1
            row.last_status_code = attempt.status_code
            row.last_error = attempt.error
            row.lease_until = 0.0
            if outcome.result == "delivered":
                self._set_done(row, DeliveryStatus.DELIVERED)
                row.delivered_at = attempt.started_at + attempt.latency_ms / 1000
            elif outcome.result == "dead":
                self._set_done(row, DeliveryStatus.DEAD)
                self._flag_successor(row)
            else:
                row.next_attempt_at = outcome.next_attempt_at or attempt.started_at
        return None if hand_over is None else self._hand_over(moved_on, hand_over)

    def _flag_successor(self, dead: _Row) -> None:
        """The next pending delivery of the dead one's queue is sent ``after_dead``."""
        queue = self._queues.get(dead.new.url, {}).get(dead.new.order_id, [])
        after = bisect.bisect_right(queue, dead.seq, key=lambda row: row.seq)
        if after < len(queue):
            queue[after].after_dead = True

    async def release(self, delivery_ids: Sequence[str], *, held: Held | None = None) -> None:
        for delivery_id in delivery_ids:
            row = self._rows.get(delivery_id)
            if held is not None and not _held(row, held, delivery_id):
                held.lost.append(delivery_id)
            elif row is not None and row.status is DeliveryStatus.PENDING:
                row.lease_until = 0.0

    async def renew(self, leases: Sequence[tuple[str, float]], *, until: float) -> list[str]:
        renewed = []
        for delivery_id, lease_until in leases:
            row = self._rows.get(delivery_id)
            if _still_leased(row, lease_until):
                row.lease_until = until
                renewed.append(delivery_id)
        return renewed

    async def next_due(self) -> float | None:
        # Only queue heads can be claimed: a waiting successor is not due before its head
        # is done, whatever its own next_attempt_at says.
        times = [max(row.next_attempt_at, row.lease_until) for row in self._heads()]
        return min(times, default=None)

    async def replay(self, query: DeliveryQuery, *, now: float) -> list[str]:
        everything = dataclasses.replace(query, cursor=None, limit=len(self._rows) or 1)
        replayed: list[str] = []
        for delivery in await self.list_deliveries(everything):
            row = self._rows[delivery.id]
            if row.status is DeliveryStatus.PENDING and row.lease_until > now:
                continue  # in flight: it is being sent right now
            if row.status is not DeliveryStatus.PENDING:
                self._set_pending(row)
            row.round_attempts = 0
            row.next_attempt_at = now
            row.lease_until = 0.0
            replayed.append(delivery.id)
        return replayed

    # Delivery log ------------------------------------------------------------------------
    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = self._rows.get(delivery_id)
        return None if row is None else _view(row)

    async def get_attempts(self, delivery_id: str) -> list[Attempt]:
        return list(self._attempts.get(delivery_id, []))

    async def list_deliveries(self, query: DeliveryQuery) -> list[Delivery]:
        rows = sorted(self._rows.values(), key=lambda row: row.seq, reverse=query.newest_first)
        selected: list[Delivery] = []
        for row in rows:
            if len(selected) >= query.limit:
                break
            if _matches(row, query):
                selected.append(_view(row))
        return selected

    async def oldest_pending(self) -> dict[str, float]:
        return {
            url: min(queue[0].new.created_at for queue in queues.values())
            for url, queues in self._queues.items()
        }

    async def counts(self) -> dict[DeliveryStatus, int]:
        counts = dict.fromkeys(DeliveryStatus, 0)
        for row in self._rows.values():
            counts[row.status] += 1
        return counts

    # Retention ---------------------------------------------------------------------------
    async def prune(
        self, *, delivered_before: float, dead_before: float, keys_before: float, limit: int
    ) -> PruneResult:
        delivered = [
            row
            for row in self._rows.values()
            if row.status is DeliveryStatus.DELIVERED
            and row.delivered_at is not None
            and row.delivered_at < delivered_before
        ]
        delivered = heapq.nsmallest(limit, delivered, key=lambda row: row.delivered_at or 0.0)
        dead = heapq.nsmallest(
            limit - len(delivered),
            (
                row
                for row in self._rows.values()
                if row.status is DeliveryStatus.DEAD and row.next_attempt_at < dead_before
            ),
            key=lambda row: row.next_attempt_at,
        )
        attempts = 0
        for row in (*delivered, *dead):
            del self._rows[row.new.id]
            attempts += len(self._attempts.pop(row.new.id, ()))
        expired = heapq.nsmallest(
            limit,
            (scope for scope, key in self._keys.items() if key.created_at < keys_before),
            key=lambda scope: self._keys[scope].created_at,
        )
        for scope in expired:
            del self._keys[scope]
        return PruneResult(len(delivered), len(dead), attempts, len(expired))

    # The operator's view (dashboard) --------------------------------------------------------
    def _endpoint_attempts(self, endpoint: EndpointRecord, since: float) -> list[Attempt]:
        return [
            attempt
            for row in self._rows.values()
            if _endpoint_key(row.new) == _key(endpoint)
            for attempt in self._attempts.get(row.new.id, ())
            if attempt.started_at >= since
        ]

    async def endpoint_minutes(
        self, endpoint: EndpointRecord, *, since: float, until: float
    ) -> list[MinuteCounts]:
        minutes: dict[float, list[int]] = {}
        for attempt in self._endpoint_attempts(endpoint, since):
            if attempt.started_at < until:
                counts = minutes.setdefault(attempt.started_at // 60 * 60, [0, 0])
                counts[0 if _answered(attempt) else 1] += 1
        return [MinuteCounts(minute, *counts) for minute, counts in sorted(minutes.items())]

    async def endpoint_failures(
        self, endpoint: EndpointRecord, *, since: float, limit: int
    ) -> list[Attempt]:
        failed = [a for a in self._endpoint_attempts(endpoint, since) if not _answered(a)]
        return sorted(failed, key=lambda a: a.started_at, reverse=True)[:limit]

    async def recent_orders(self, query: OrderQuery) -> list[OrderSummary]:
        deliveries = DeliveryQuery(dhan_client_id=query.dhan_client_id, target=query.target)
        newest = sorted(
            (row for row in self._rows.values() if _matches(row, deliveries)),
            key=lambda row: row.seq,
            reverse=True,
        )[: query.window]
        orders: dict[tuple[str, str], list[_Row]] = {}
        for row in newest:
            orders.setdefault((row.new.order_id, row.new.dhan_client_id), []).append(row)
        return [
            OrderSummary(
                order_id=order_id,
                dhan_client_id=client,
                deliveries=len(rows),
                pending=sum(1 for row in rows if row.status is DeliveryStatus.PENDING),
                dead=sum(1 for row in rows if row.status is DeliveryStatus.DEAD),
                last_created_at=rows[0].new.created_at,
                last_payload=rows[0].new.payload,
                last_seq=rows[0].seq,
            )
            for (order_id, client), rows in list(orders.items())[: query.limit]
        ]


def _still_leased(row: _Row | None, lease_until: float | None) -> TypeGuard[_Row]:
    """Whether ``row`` is pending and leased until exactly ``lease_until`` (the lease a
    dispatcher holds): nobody has leased, released or finished it since."""
    return (
        row is not None
        and row.status is DeliveryStatus.PENDING
        and row.lease_until == lease_until
        and row.lease_until > 0
    )


def _held(row: _Row | None, held: Held, delivery_id: str) -> bool:
    """Whether the dispatcher that holds ``held`` still holds the lease of ``row``."""
    return _still_leased(row, held.leases.get(delivery_id))


def _endpoint_key(new: NewDelivery) -> tuple[EndpointKind, str, str]:
    """The (kind, owner, url) of the endpoint a delivery goes to."""
    if new.target is Target.PARTNER and new.partner_id is not None:
        return (EndpointKind.PARTNER, new.partner_id, new.url)
    return (EndpointKind.CLIENT, new.dhan_client_id, new.url)


def _key(endpoint: EndpointRecord) -> tuple[EndpointKind, str, str]:
    return (endpoint.kind, endpoint.owner_id, endpoint.url)


def _matches(row: _Row, query: DeliveryQuery) -> bool:
    new = row.new
    if query.cursor is not None:
        if query.newest_first and row.seq >= query.cursor:
            return False
        if not query.newest_first and row.seq <= query.cursor:
            return False
    checks = (
        (query.status, row.status),
        (query.order_id, new.order_id),
        (query.dhan_client_id, new.dhan_client_id),
        (query.target, new.target),
        (query.partner_id, new.partner_id),
    )
    if any(wanted is not None and wanted != actual for wanted, actual in checks):
        return False
    if query.since is not None and new.created_at < query.since:
        return False
    if query.until is not None and new.created_at >= query.until:
        return False
    return query.ids is None or new.id in query.ids


def _view(row: _Row) -> Delivery:
    return Delivery(
        **dataclasses.asdict(row.new),
        seq=row.seq,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if row.status is DeliveryStatus.PENDING else None,
        delivered_at=row.delivered_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        after_dead=row.after_dead,
    )


def _answered(attempt: Attempt) -> bool:
    """Whether an attempt got a 2xx answer."""
    return attempt.status_code is not None and 200 <= attempt.status_code < 300
