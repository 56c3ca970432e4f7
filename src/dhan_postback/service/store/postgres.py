"""The PostgreSQL :class:`~.base.Store`: one outbox shared by several service nodes.

Every node (``dhan-postback serve`` or ``worker``) opens the same database. What keeps them
from stepping on each other:

* **Claims** lease due queue heads with ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED
  LIMIT n) RETURNING``: two nodes claiming at once get disjoint batches and never wait on
  each other. A lease that runs out (the node died) makes the delivery claimable again.
* **FIFO per (url, order_id) across nodes**: each queue's lowest pending ``seq`` carries
  ``is_head``; only heads are claimed, so a queue has at most one delivery in flight. Every
  transaction that changes which delivery is a head (enqueue, a finish that delivers or kills
  one, replay) first takes ``pg_advisory_xact_lock`` on a hash of each queue it touches, in
  key order, then recomputes the heads in a new statement (a fresh snapshot, after the lock).
  So a concurrent enqueue and a finish of the same queue are serialised: neither can miss the
  other's row (which would leave a queue headless, or give it two heads), and within a queue
  ``seq`` order is commit order.
* **Hand-overs**: an enqueue or a finish given a ``HandOver`` leases the heads it made to its
  own node in the same transaction, with the claim's statement (``hand_over_picks`` instead
  of the claim's picks): under the queues' locks, the same lease columns, so no other node's
  claim can take them, and they come back when the lease runs out like any claim's.
* **Wake-ups**: a commit that makes a delivery claimable sends ``NOTIFY dhan_postback_outbox``;
  :meth:`PostgresStore.listen_wakeups` lets a dispatcher on any node wait for them. A commit
  whose hand-over leased every head it made sends none: no claim could take them, and every
  node (its own too) would run a claim for nothing.
* **Migrations** run on :meth:`~PostgresStore.open` inside one transaction holding an advisory
  lock, so nodes starting together migrate once.

The database URL may carry pool settings, removed before connecting: ``pool_min_size``
(default 2), ``pool_max_size`` (default 10) and ``pool_timeout`` (seconds to wait for a free
connection, default 10), e.g. ``postgresql://app@db/postback?pool_max_size=20``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg.errors
import structlog
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ...errors import Conflict, StoreUnavailable
from . import base
from .queries import load_queries, migrations

__all__ = ["CHANNEL", "PoolSettings", "PostgresStore", "split_pool_settings"]

CHANNEL: Final = "dhan_postback_outbox"
"""The LISTEN/NOTIFY channel a commit that makes deliveries claimable notifies."""

_Q: Final = load_queries("postgres")
_MIGRATIONS: Final = migrations(_Q)
_CLAIM: Final = _Q["claim"].format(picks=_Q["claim_picks"])
_CLAIM_SKIPPING: Final = _Q["claim"].format(picks=_Q["claim_picks_skipping"])
"""A claim that skips URLs reads the others' heads URL by URL (see the SQL), so that its
cost does not grow with the skipped URLs' backlog; without skips, the global due index."""
_HAND_OVER: Final = _Q["claim"].format(
    picks=_Q["hand_over_picks"].format(queue_heads=_Q["queue_heads"])
)
"""A commit's hand-over leases as a claim does: the same columns, in its own transaction."""
_REFRESH_HEADS: Final = _Q["refresh_queue_heads"].format(
    queue_heads=_Q["queue_heads"], then=_Q["notify_if_promoted"]
)
_PROMOTE_HEADS: Final = _Q["refresh_queue_heads"].format(
    queue_heads=_Q["queue_heads"], then=_Q["promoted_seqs"]
)
"""The heads refreshed without a NOTIFY: the new heads, for a hand-over to leave out."""
_LAST_ATTEMPT: Final = {
    kind: _Q["last_attempt"].format(owner=column) for kind, column in base.OWNER_COLUMNS.items()
}
_RETRIED_ERRORS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
_TRANSACTION_TRIES: Final = 5
_T = TypeVar("_T")

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class PoolSettings:
    """How many connections a node keeps to the database."""

    min_size: int = 2
    max_size: int = 10
    timeout: float = 10.0


def split_pool_settings(url: str) -> tuple[str, PoolSettings]:
    """The URL without its ``pool_*`` query parameters (libpq refuses them), and those settings."""
    parts = urlsplit(url)
    kept: list[tuple[str, str]] = []
    found: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ("pool_min_size", "pool_max_size", "pool_timeout"):
            found[key.removeprefix("pool_")] = value
        else:
            kept.append((key, value))
    defaults = PoolSettings()
    try:
        settings = PoolSettings(
            min_size=int(found.get("min_size", defaults.min_size)),
            max_size=int(found.get("max_size", defaults.max_size)),
            timeout=float(found.get("timeout", defaults.timeout)),
        )
    except ValueError as exc:
        raise ValueError(f"bad pool setting in the database URL: {exc}") from None
    if settings.min_size < 0 or settings.max_size < max(1, settings.min_size):
        raise ValueError("the database URL needs 0 <= pool_min_size <= pool_max_size, max >= 1")
    if not any(key == "application_name" for key, _ in kept):
        kept.append(("application_name", "dhan-postback"))
    return urlunsplit(parts._replace(query=urlencode(kept))), settings


class PostgresStore:
    """The outbox, registry and delivery log in PostgreSQL, through a connection pool."""

    def __init__(self, url: str) -> None:
        self._conninfo, self.pool_settings = split_pool_settings(url)
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] | None = None

    # Lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            return
        settings = self.pool_settings
        async with asyncio.timeout(settings.timeout):
            await self._first_connection()
        pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] = AsyncConnectionPool(
            self._conninfo,
            min_size=settings.min_size,
            max_size=settings.max_size,
            timeout=settings.timeout,
            kwargs={"autocommit": True},
            name="dhan-postback",
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=settings.timeout)
        except PoolTimeout:
            await pool.close()
            raise StoreUnavailable("cannot connect to the PostgreSQL database") from None
        self._pool = pool
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def _first_connection(self) -> None:
        """Connect once before the pool does, so that a wrong URL or a server that is down is
        one clear StoreUnavailable with the server's reason, at once, rather than the pool's
        retries and a bare timeout."""
        try:
            conn = await psycopg.AsyncConnection.connect(self._conninfo)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {reason}") from None
        await conn.close()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def ping(self) -> None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(_Q["ping"], prepare=True)

        await self._run(run)

    async def _migrate(self) -> None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> None:
            async with conn.transaction():
                await conn.execute(_Q["lock_migrations"])
                await conn.execute(_Q["create_schema_version"])
                current = await _scalar(conn, _Q["schema_version"])
                newest = _MIGRATIONS[-1][0]
                if current > newest:
                    raise StoreUnavailable(
                        f"the database schema is at version {current}, newer than this "
                        f"dhan-postback knows ({newest}): upgrade dhan-postback"
                    )
                for version, migration in _MIGRATIONS:
                    if version > current:
                        await conn.execute(migration)
                        await conn.execute(_Q["record_schema_version"], {"version": version})
                        log.info("schema migrated", backend="postgres", version=version)

        await self._run(run)

    async def schema_version(self) -> int:
        """The schema version the database is at (for operators and tests)."""

        async def run(conn: psycopg.AsyncConnection[Any]) -> int:
            return await _scalar(conn, _Q["schema_version"])

        return await self._run(run)

    # Running queries ----------------------------------------------------------------------
    async def _run(
        self,
        work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[_T]],
        *,
        retry_conflicts: bool = False,
    ) -> _T:
        """Run ``work`` on a pooled connection; map lost databases to StoreUnavailable.

        With ``retry_conflicts``, ``work`` (a whole transaction) is run again when the
        database aborted it for a deadlock or a serialisation failure.
        """
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        tries = _TRANSACTION_TRIES if retry_conflicts else 1
        for attempt in range(1, tries + 1):
            try:
                async with self._pool.connection() as conn:
                    return await work(conn)
            except _RETRIED_ERRORS:
                if attempt == tries:
                    raise
                await asyncio.sleep(0.005 * attempt)
            except PoolTimeout:
                raise StoreUnavailable("no database connection free in time") from None
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(
                    f"the PostgreSQL database is unavailable ({type(exc).__name__})"
                ) from None
        raise AssertionError("unreachable")

    # Registry -----------------------------------------------------------------------------
    async def add_token(self, token: base.TokenRecord) -> None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(_Q["insert_token"], dataclasses.asdict(token))

        try:
            await self._run(run)
        except psycopg.errors.UniqueViolation:
            raise Conflict("token already exists") from None

    async def get_token(self, token_hash: str) -> base.TokenRecord | None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> base.TokenRecord | None:
            cur = await conn.execute(_Q["get_token"], {"token_hash": token_hash}, prepare=True)
            row = await cur.fetchone()
            return None if row is None else base.TokenRecord(*row)

        return await self._run(run)

    async def revoke_token(self, token_hash: str, at: float) -> bool:
        async def run(conn: psycopg.AsyncConnection[Any]) -> bool:
            cur = await conn.execute(_Q["revoke_token"], {"token_hash": token_hash, "at": at})
            return await cur.fetchone() is not None

        return await self._run(run)

    async def revoked_since(self, since: float) -> list[str]:
        async def run(conn: psycopg.AsyncConnection[Any]) -> list[str]:
            cur = await conn.execute(_Q["revoked_since"], {"since": since}, prepare=True)
            return [row[0] for row in await cur.fetchall()]

        return await self._run(run)

    async def list_tokens(self, dhan_client_id: str | None = None) -> list[base.TokenRecord]:
        async def run(conn: psycopg.AsyncConnection[Any]) -> list[base.TokenRecord]:
            cur = await conn.execute(_Q["list_tokens"], {"dhan_client_id": dhan_client_id})
            return [base.TokenRecord(*row) for row in await cur.fetchall()]

        return await self._run(run)

    async def ensure_endpoint(self, endpoint: base.EndpointRecord) -> base.EndpointRecord:
        params = endpoint.params()

        async def run(conn: psycopg.AsyncConnection[Any]) -> base.EndpointRecord:
            await conn.execute(_Q["insert_endpoint"], params)
            cur = await conn.execute(_Q["get_endpoint_of"], params)
            row = await cur.fetchone()
            assert row is not None, "an endpoint just inserted or found"
            return base.EndpointRecord.from_row(row)

        return await self._run(run)

    async def get_endpoint(self, endpoint_id: str) -> base.EndpointRecord | None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> base.EndpointRecord | None:
            cur = await conn.execute(_Q["get_endpoint"], {"id": endpoint_id})
            row = await cur.fetchone()
            return None if row is None else base.EndpointRecord.from_row(row)

        return await self._run(run)

    async def list_endpoints(self) -> list[base.EndpointRecord]:
        async def run(conn: psycopg.AsyncConnection[Any]) -> list[base.EndpointRecord]:
            cur = await conn.execute(_Q["list_endpoints"])
            return [base.EndpointRecord.from_row(row) for row in await cur.fetchall()]

        return await self._run(run)

    async def set_paused(self, endpoint_id: str, paused: bool) -> base.PauseChange | None:
        params = {"id": endpoint_id, "paused": paused}

        async def run(conn: psycopg.AsyncConnection[Any]) -> base.PauseChange | None:
            async with conn.transaction():
                cur = await conn.execute(_Q["set_paused"], params)
                changed = await cur.fetchone() is not None
                if changed and not paused:
                    await conn.execute(_Q["notify_outbox"], {"channel": CHANNEL})
                cur = await conn.execute(_Q["get_endpoint"], {"id": endpoint_id})
                row = await cur.fetchone()
            if row is None:
                return None
            return base.PauseChange(base.EndpointRecord.from_row(row), changed)

        return await self._run(run, retry_conflicts=True)

    async def rotate_secret(
        self, endpoint_id: str, secret: str, *, now: float, keep_until: float
    ) -> base.EndpointRecord | None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> base.EndpointRecord | None:
            async with conn.transaction():
                cur = await conn.execute(_Q["lock_endpoint"], {"id": endpoint_id})
                row = await cur.fetchone()
                if row is None:
                    return None
                rotated = base.EndpointRecord.from_row(row).rotated(
                    secret, now=now, keep_until=keep_until
                )
                await conn.execute(_Q["rotate_secret"], rotated.params())
                return rotated

        return await self._run(run, retry_conflicts=True)

    async def endpoint_activity(self, endpoint: base.EndpointRecord) -> base.EndpointActivity:
        params = endpoint.params()

        async def run(conn: psycopg.AsyncConnection[Any]) -> base.EndpointActivity:
            cur = await conn.execute(_Q["endpoint_backlog"], params)
            row = await cur.fetchone()
            backlog = 0 if row is None else int(row[0])
            cur = await conn.execute(_LAST_ATTEMPT[endpoint.kind], params)
            last = await cur.fetchone()
            return base.EndpointActivity(backlog, None if last is None else base.Attempt(*last))

        return await self._run(run)

    async def put_partner(self, partner: base.PartnerRecord) -> None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(_Q["put_partner"], dataclasses.asdict(partner))

        await self._run(run)

    async def get_partner(self, partner_id: str) -> base.PartnerRecord | None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> base.PartnerRecord | None:
            cur = await conn.execute(_Q["get_partner"], {"partner_id": partner_id}, prepare=True)
            row = await cur.fetchone()
            return None if row is None else base.PartnerRecord(*row)

        return await self._run(run)

    # Dashboard sessions ------------------------------------------------------------------
    async def add_session(self, session: base.SessionRecord, *, keep: int, now: float) -> None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> None:
            async with conn.transaction():
                await conn.execute(_Q["insert_session"], dataclasses.asdict(session))
                await conn.execute(
                    _Q["evict_sessions"], {"principal": session.principal, "keep": keep}
                )
                await conn.execute(_Q["expire_sessions"], {"now": now})

        await self._run(run, retry_conflicts=True)

    async def get_session(self, id_hash: str, *, now: float) -> base.SessionRecord | None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> base.SessionRecord | None:
            params = {"id_hash": id_hash, "now": now}
            cur = await conn.execute(_Q["get_session"], params, prepare=True)
            row = await cur.fetchone()
            return None if row is None else base.SessionRecord(*row)

        return await self._run(run)

    async def end_session(self, id_hash: str) -> None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(_Q["end_session"], {"id_hash": id_hash})

        await self._run(run)

    async def set_session_flash(self, id_hash: str, flash: str) -> None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(_Q["set_session_flash"], {"id_hash": id_hash, "flash": flash})

        await self._run(run)

    # Outbox ------------------------------------------------------------------------------
    async def enqueue(
        self, deliveries: Sequence[base.NewDelivery], *, hand_over: base.HandOver | None = None
    ) -> list[base.Claim] | None:
        if not deliveries:
            return None if hand_over is None else []
        insert = _enqueue_statements(deliveries)
        ids = [delivery.id for delivery in deliveries]

        async def run(conn: psycopg.AsyncConnection[Any]) -> list[base.Claim] | None:
            async with conn.transaction(), conn.pipeline():
                await insert(conn)
                return await _refresh_heads(conn, ids, hand_over)

        return await self._insert(run)

    async def enqueue_once(
        self,
        deliveries: Sequence[base.NewDelivery],
        record: base.IdempotencyRecord,
        *,
        fresh_after: float,
    ) -> base.IdempotencyRecord | None:
        insert = _enqueue_statements(deliveries) if deliveries else None
        ids = [delivery.id for delivery in deliveries]
        lookup = {
            "dhan_client_id": record.dhan_client_id,
            "key": record.key,
            "fresh_after": fresh_after,
        }

        async def run(conn: psycopg.AsyncConnection[Any]) -> base.IdempotencyRecord | None:
            async with conn.transaction():
                await conn.execute(_Q["lock_idempotency_key"], lookup, prepare=True)
                cur = await conn.execute(_Q["get_idempotency_key"], lookup, prepare=True)
                found = await cur.fetchone()
                if found is not None:
                    return base.IdempotencyRecord.from_row(found)
                async with conn.pipeline():
                    if insert is not None:
                        await insert(conn)
                        await _refresh_heads(conn, ids, None)
                    await conn.execute(
                        _Q["put_idempotency_key"], dataclasses.asdict(record), prepare=True
                    )
                return None

        return await self._insert(run)

    async def _insert(self, run: Callable[[psycopg.AsyncConnection[Any]], Awaitable[_T]]) -> _T:
        try:
            return await self._run(run, retry_conflicts=True)
        except psycopg.errors.UniqueViolation as exc:
            detail = exc.diag.message_detail or "a delivery with one of these ids exists"
            raise Conflict(f"delivery already exists: {detail}") from None

    async def claim(
        self, *, limit: int, now: float, lease: float, skip_urls: Collection[str] = ()
    ) -> list[base.Claim]:
        params: dict[str, Any] = {"limit": limit, "now": now, "lease_until": now + lease}

        async def run(conn: psycopg.AsyncConnection[Any]) -> list[base.Claim]:
            # Paused endpoints are read first (an empty partial index when none is): a pause
            # that commits between the two statements is like one just after the claim.
            cur = await conn.execute(_Q["paused_urls"], prepare=True)
            paused = await cur.fetchall()
            skip = {*skip_urls, *(url for url, every in paused if every)}
            mixed = [url for url, every in paused if not every]
            if skip or mixed:
                sql = _CLAIM_SKIPPING
                args = {**params, "skip_urls": list(skip), "mixed_urls": mixed}
            else:
                sql, args = _CLAIM, params
            cur = await conn.execute(sql, args, prepare=True)
            return [base.Claim.from_row(row, now=now) for row in await cur.fetchall()]

        return await self._run(run, retry_conflicts=True)

    async def finish(
        self,
        outcomes: Sequence[base.Outcome],
        *,
        hand_over: base.HandOver | None = None,
        held: base.Held | None = None,
    ) -> list[base.Claim] | None:
        if not outcomes:
            return None if hand_over is None else []
        attempts = [outcome.attempt for outcome in outcomes]
        ids = [outcome.delivery_id for outcome in outcomes]
        recorded = {
            "delivery_ids": ids,
            "numbers": [a.number for a in attempts],
            "started_ats": [a.started_at for a in attempts],
            "latencies": [a.latency_ms for a in attempts],
            "status_codes": [a.status_code for a in attempts],
            "errors": [a.error for a in attempts],
            "prefixes": [a.response_prefix for a in attempts],
        }
        moved = {
            "ids": ids,
            "results": [o.result for o in outcomes],
            "status_codes": recorded["status_codes"],
            "errors": recorded["errors"],
            "delivered_ats": [a.started_at + a.latency_ms / 1000 for a in attempts],
            "next_attempt_ats": [
                o.next_attempt_at if o.next_attempt_at is not None else o.attempt.started_at
                for o in outcomes
            ],
            # -1: a lease nobody holds (a dispatcher that holds none finishes nothing)
            "helds": [None if held is None else held.leases.get(i, -1.0) for i in ids],
        }
        dead = [o.delivery_id for o in outcomes if o.result == "dead"]
        left_queue = [o.delivery_id for o in outcomes if o.result != "retry"]
        applied: set[str] = set()

        async def run(conn: psycopg.AsyncConnection[Any]) -> list[base.Claim] | None:
            applied.clear()
            async with conn.transaction(), conn.pipeline():
                await conn.execute(_Q["lock_queues"], {"ids": ids}, prepare=True)
                await conn.execute(_Q["insert_attempts"], recorded, prepare=True)
                finished = await conn.execute(_Q["finish"], moved, prepare=True)
                flagged = dead
                if dead and held is not None:  # only a death that applied (rare: a wait)
                    applied.update(i for (i,) in await finished.fetchall())
                    flagged = [i for i in dead if i in applied]
                if flagged:
                    await conn.execute(_Q["flag_after_dead"], {"ids": flagged}, prepare=True)
                # A lost outcome's queue is refreshed too: harmless, its lowest pending row
                # is its head either way, and a hand-over takes only an unleased head.
                handed: list[base.Claim] | None = None if hand_over is None else []
                if left_queue:
                    handed = await _refresh_heads(conn, left_queue, hand_over)
                if held is not None and not applied:  # read once the pipeline is synced
                    applied.update(i for (i,) in await finished.fetchall())
            return handed

        handed = await self._run(run, retry_conflicts=True)
        if held is not None:
            held.applied(ids, applied)
        return handed

    async def release(self, delivery_ids: Sequence[str], *, held: base.Held | None = None) -> None:
        if not delivery_ids:
            return
        if held is not None:
            await self._release_held(delivery_ids, held)
            return

        async def run(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(_Q["release"], {"ids": list(delivery_ids), "channel": CHANNEL})

        await self._run(run)

    async def _release_held(self, delivery_ids: Sequence[str], held: base.Held) -> None:
        released = await self.renew(held.of(delivery_ids), until=0.0)  # ended now: released
        held.applied(delivery_ids, set(released))
        if released:  # committed: the nodes may claim them now

            async def run(conn: psycopg.AsyncConnection[Any]) -> None:
                await conn.execute(_Q["notify_outbox"], {"channel": CHANNEL}, prepare=True)

            await self._run(run)

    async def renew(self, leases: Sequence[tuple[str, float]], *, until: float) -> list[str]:
        if not leases:
            return []
        ordered = sorted(leases)  # rows locked in one order by every renewal: no deadlock
        params = {
            "ids": [delivery_id for delivery_id, _ in ordered],
            "held": [lease_until for _, lease_until in ordered],
            "until": until,
        }

        async def run(conn: psycopg.AsyncConnection[Any]) -> list[str]:
            cur = await conn.execute(_Q["renew_leases"], params, prepare=True)
            return [delivery_id for (delivery_id,) in await cur.fetchall()]

        return await self._run(run, retry_conflicts=True)

    async def next_due(self) -> float | None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> float | None:
            cur = await conn.execute(_Q["next_due"], prepare=True)
            row = await cur.fetchone()
            return None if row is None else row[0]

        return await self._run(run)

    async def replay(self, query: base.DeliveryQuery, *, now: float) -> list[str]:
        everything = dataclasses.replace(query, cursor=None)
        order = [delivery.id for delivery in await self._list(everything, with_limit=False)]
        if not order:
            return []

        async def run(conn: psycopg.AsyncConnection[Any]) -> set[str]:
            async with conn.transaction():
                await conn.execute(_Q["lock_queues"], {"ids": order})
                cur = await conn.execute(_Q["replay"], {"ids": order, "now": now})
                replayed = {row[0] for row in await cur.fetchall()}
                if replayed:
                    await conn.execute(_Q["unset_queue_heads"], {"ids": list(replayed)})
                    await _refresh_heads(conn, list(replayed), None)
                return replayed

        replayed = await self._run(run, retry_conflicts=True)
        return [delivery_id for delivery_id in order if delivery_id in replayed]

    # Delivery log ------------------------------------------------------------------------
    async def get_delivery(self, delivery_id: str) -> base.Delivery | None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> base.Delivery | None:
            cur = await conn.execute(_Q["get_delivery"], {"id": delivery_id}, prepare=True)
            row = await cur.fetchone()
            return None if row is None else base.Delivery.from_row(row)

        return await self._run(run)

    async def get_attempts(self, delivery_id: str) -> list[base.Attempt]:
        async def run(conn: psycopg.AsyncConnection[Any]) -> list[base.Attempt]:
            cur = await conn.execute(_Q["get_attempts"], {"delivery_id": delivery_id}, prepare=True)
            return [base.Attempt(*row) for row in await cur.fetchall()]

        return await self._run(run)

    async def list_deliveries(self, query: base.DeliveryQuery) -> list[base.Delivery]:
        return await self._list(query, with_limit=True)

    async def _list(self, query: base.DeliveryQuery, *, with_limit: bool) -> list[base.Delivery]:
        statement = _LIST_NEWEST_FIRST if query.newest_first else _LIST_OLDEST_FIRST
        params = {
            "status": None if query.status is None else query.status.value,
            "order_id": query.order_id,
            "dhan_client_id": query.dhan_client_id,
            "target": None if query.target is None else query.target.value,
            "partner_id": query.partner_id,
            "since": query.since,
            "until": query.until,
            "ids": None if query.ids is None else list(query.ids),
            "cursor": query.cursor,
            "limit": query.limit if with_limit else None,
        }

        async def run(conn: psycopg.AsyncConnection[Any]) -> list[base.Delivery]:
            # Unprepared on purpose: planned with the actual values, unset filters vanish.
            cur = await conn.execute(statement, params, prepare=False)
            return [base.Delivery.from_row(row) for row in await cur.fetchall()]

        return await self._run(run)

    async def oldest_pending(self) -> dict[str, float]:
        async def run(conn: psycopg.AsyncConnection[Any]) -> dict[str, float]:
            cur = await conn.execute(_Q["oldest_pending"])
            return {url: created_at for url, created_at in await cur.fetchall()}

        return await self._run(run)

    async def counts(self) -> dict[base.DeliveryStatus, int]:
        async def run(conn: psycopg.AsyncConnection[Any]) -> dict[base.DeliveryStatus, int]:
            cur = await conn.execute(_Q["counts"], prepare=True)
            counts = dict.fromkeys(base.DeliveryStatus, 0)
            for status, count in await cur.fetchall():
                counts[base.DeliveryStatus(status)] = count
            return counts

        return await self._run(run)

    # Retention ----------------------------------------------------------------------------
    async def prune(
        self, *, delivered_before: float, dead_before: float, keys_before: float, limit: int
    ) -> base.PruneResult:
        params = {
            "delivered_before": delivered_before,
            "dead_before": dead_before,
            "limit": limit,
        }
        keys = {"before": keys_before, "limit": limit}

        async def run(conn: psycopg.AsyncConnection[Any]) -> base.PruneResult:
            async with conn.transaction():
                if not await _scalar(conn, _Q["try_lock_pruning"]):
                    return base.PruneResult()  # another node is pruning
                cur = await conn.execute(_Q["prune_finished"], params, prepare=True)
                row = await cur.fetchone()
                assert row is not None
                cur = await conn.execute(_Q["prune_idempotency_keys"], keys, prepare=True)
                gone = await cur.fetchone()
                assert gone is not None
                return base.PruneResult(row[0], row[1], row[2], gone[0])

        return await self._run(run, retry_conflicts=True)

    # The operator's view (dashboard) --------------------------------------------------------
    async def endpoint_minutes(
        self, endpoint: base.EndpointRecord, *, since: float, until: float
    ) -> list[base.MinuteCounts]:
        params = {**endpoint.params(), "since": since, "until": until}

        async def run(conn: psycopg.AsyncConnection[Any]) -> list[base.MinuteCounts]:
            cur = await conn.execute(_Q["endpoint_minutes"], params)
            return [base.MinuteCounts(float(m), int(d), int(f)) for m, d, f in await cur.fetchall()]

        return await self._run(run)

    async def endpoint_failures(
        self, endpoint: base.EndpointRecord, *, since: float, limit: int
    ) -> list[base.Attempt]:
        params = {**endpoint.params(), "since": since, "limit": limit}

        async def run(conn: psycopg.AsyncConnection[Any]) -> list[base.Attempt]:
            cur = await conn.execute(_Q["endpoint_failures"], params)
            return [base.Attempt(*row) for row in await cur.fetchall()]

        return await self._run(run)

    async def recent_orders(self, query: base.OrderQuery) -> list[base.OrderSummary]:
        params = query.params()

        async def run(conn: psycopg.AsyncConnection[Any]) -> list[base.OrderSummary]:
            cur = await conn.execute(_Q["recent_orders"], params)
            return [base.OrderSummary.from_row(row) for row in await cur.fetchall()]

        return await self._run(run)

    # Wake-ups across nodes ----------------------------------------------------------------
    def listen_wakeups(self, callback: Callable[[], None]) -> AbstractAsyncContextManager[None]:
        """Call ``callback`` whenever any node commits deliveries that became claimable.

        Use as ``async with store.listen_wakeups(event.set): ...``. Entering returns once
        the listening connection (one of its own, outside the pool) is up, so every commit
        after that wakes it. If that connection drops, it reconnects in the background and
        calls ``callback`` once on reconnecting, since notifications may have been missed
        meanwhile. ``callback`` runs on the event loop: it should be quick (set an event).
        """
        return _Listener(self._conninfo, callback)


class _Listener:
    """A dedicated connection that LISTENs on :data:`CHANNEL` and calls back on each NOTIFY."""

    _RECONNECT_DELAYS: Final = (0.1, 0.5, 1.0, 2.0, 5.0)

    def __init__(self, conninfo: str, callback: Callable[[], None]) -> None:
        self._conninfo = conninfo
        self._callback = callback
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> None:
        try:
            conn = await self._connect()
        except psycopg.OperationalError:
            raise StoreUnavailable("cannot LISTEN on the PostgreSQL database") from None
        self._task = asyncio.create_task(self._listen(conn), name="dhan-postback-listen")

    async def __aexit__(self, *exc_info: object) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        return conn

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            try:
                async with conn:
                    async for _ in conn.notifies():
                        self._wake()
            except psycopg.Error as exc:
                log.warning("listen connection lost", backend="postgres", error=type(exc).__name__)
            conn = await self._reconnect()
            self._wake()  # whatever was committed while we were away

    def _wake(self) -> None:
        try:
            self._callback()
        except Exception:
            log.exception("wake-up callback failed")

    async def _reconnect(self) -> psycopg.AsyncConnection[Any]:
        failures = 0
        while True:
            delays = self._RECONNECT_DELAYS
            await asyncio.sleep(delays[min(failures, len(delays) - 1)])
            try:
                return await self._connect()
            except psycopg.Error:
                failures += 1


def _enqueue_statements(
    deliveries: Sequence[base.NewDelivery],
) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]:
    """The statements that add ``deliveries`` to their queues, for the caller's transaction:
    lock the queues they join, insert them (:func:`_refresh_heads` then makes the heads)."""
    columns = {
        "ids": [d.id for d in deliveries],
        "dhan_client_ids": [d.dhan_client_id for d in deliveries],
        "token_hashes": [d.token_hash for d in deliveries],
        "targets": [d.target.value for d in deliveries],
        "partner_ids": [d.partner_id for d in deliveries],
        "urls": [d.url for d in deliveries],
        "order_ids": [d.order_id for d in deliveries],
        "payloads": [d.payload for d in deliveries],
        "created_ats": [d.created_at for d in deliveries],
    }
    queues = {"urls": columns["urls"], "order_ids": columns["order_ids"]}

    async def run(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(_Q["lock_new_queues"], queues, prepare=True)
        await conn.execute(_Q["insert_deliveries"], columns, prepare=True)

    return run


async def _refresh_heads(
    conn: psycopg.AsyncConnection[Any], ids: Sequence[str], hand_over: base.HandOver | None
) -> list[base.Claim] | None:
    """In the caller's transaction, which holds the locks of the queues of ``ids``: make
    their heads, lease to this node those that ``hand_over`` allows (None without one), and
    wake every node (NOTIFY at commit) if a new head is left for a claim."""
    if hand_over is None or hand_over.limit <= 0:
        await conn.execute(_REFRESH_HEADS, {"ids": ids, "channel": CHANNEL}, prepare=True)
        return None if hand_over is None else []
    promoted = await conn.execute(_PROMOTE_HEADS, {"ids": ids}, prepare=True)
    handed = await _hand_over(conn, ids, hand_over)
    left = {seq for (seq,) in await promoted.fetchall()}.difference(c.seq for c in handed)
    if left:
        await conn.execute(_Q["notify_outbox"], {"channel": CHANNEL}, prepare=True)
    return handed


async def _hand_over(
    conn: psycopg.AsyncConnection[Any], ids: Sequence[str], hand_over: base.HandOver
) -> list[base.Claim]:
    """Lease to this node the due heads of the queues of ``ids`` that ``hand_over`` allows."""
    now = hand_over.now
    params = {
        "ids": ids,
        "limit": hand_over.limit,
        "now": now,
        "lease_until": now + hand_over.lease,
        "skip_urls": list(hand_over.skip_urls),
    }
    cur = await conn.execute(_HAND_OVER, params, prepare=True)
    return [base.Claim.from_row(row, now=now) for row in await cur.fetchall()]


async def _scalar(conn: psycopg.AsyncConnection[Any], query: str) -> int:
    cur = await conn.execute(query)
    row = await cur.fetchone()
    assert row is not None
    value: int = row[0]
    return value


def _list_statement(newest_first: bool) -> sql.Composed:
    return sql.SQL(_Q["list_deliveries"]).format(
        order=sql.SQL("DESC" if newest_first else "ASC"),
        after=sql.SQL("<" if newest_first else ">"),
    )


_LIST_NEWEST_FIRST: Final = _list_statement(True)
_LIST_OLDEST_FIRST: Final = _list_statement(False)
