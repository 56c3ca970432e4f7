"""One postback service node: the store, the registry, the metrics and (optionally) the
dispatcher and the retention pruner, opened and closed together.

``serve`` runs a node with its HTTP API, ``worker`` one without an API, the relay one embedded
in its process, the demo one per run, and the tests whichever they need; all of them build the
node from :class:`~dhan_postback.settings.ServiceSettings` and hand it to what needs its parts
(:func:`~dhan_postback.service.app.create_app`, the dashboard). One object, so that nothing
wires a dispatcher to an app by hand, and nothing writes to the store behind the registry's
back.

::

    node = ServiceNode(settings)            # store made from settings.db, not yet opened
    async with node:                        # opens (and migrates) the store, starts sending
        app = create_app(node)              # the API and dashboard on the same parts
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, Unpack
from urllib.parse import urlsplit

import structlog

from ..errors import AuthenticationError, DhanPostbackError, NotFound, StoreUnavailable
from ..settings import ServiceSettings
from .dashboard.health import EndpointHealth
from .dashboard.sessions import Sessions
from .dispatcher import Dispatcher
from .events import OPERATOR, EventType, OperatorEvents, watching
from .metrics import BREAKER_VALUES, ServiceMetrics, endpoint_label
from .operations import MetricsAccess
from .principal import Principal
from .registry import AdminKey, Adoption, Registry
from .retention import pruning
from .store import EndpointKind, EndpointRecord, NewDelivery, Store, create_store
from .throttle import FailureThrottle

__all__ = ["ServiceNode"]

log = structlog.get_logger(__name__)


class ServiceNode:
    """A service node built from ``settings``.

    ``store`` defaults to one made from ``settings.db``, which the node then also closes; a
    store handed in is opened by the node and left open for its owner. ``dispatch`` runs a
    dispatcher, and beside it the retention pruner (:mod:`.retention`), while the node runs
    (off for an API-only node, or a test that wants the outbox to stay put).
    """

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        store: Store | None = None,
        dispatch: bool = True,
        metrics: ServiceMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or ServiceMetrics()
        self._owns_store = store is None
        self._store = store if store is not None else create_store(settings.db)
        self._dispatch = dispatch
        self._clock = clock
        key = settings.admin_key.get_secret_value() if settings.admin_key else None
        self.admin_key = AdminKey(key)
        self._registry = Registry(
            self._store,
            token_ttl=settings.token_ttl,
            secret_rotation_grace=settings.secret_rotation_grace,
            allow_loopback=settings.allow_loopback,
            clock=clock,
        )
        self._sessions = Sessions(self._store, clock=clock)
        self.throttle = FailureThrottle(
            failures=settings.auth_failures, window=settings.auth_failure_window
        )
        """Wrong credentials per address: one budget for the API and the dashboard."""
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        self.metrics_access = MetricsAccess.for_bind(settings.host, token)
        """Who may read ``/metrics`` of an app on this node bound to ``settings.host``."""
        self.events = OperatorEvents(self._store, settings, wake=self.wake, clock=clock)
        """Operator events to ``settings.operator_url`` (nothing without one)."""
        self.dispatcher: Dispatcher | None = None
        self._pruner = contextlib.AsyncExitStack()
        self._running = False
        self._on_commit: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        backend = self.settings.db.split(":", 1)[0]
        return f"ServiceNode({backend}, dispatch={self._dispatch}, running={self._running})"

    # Parts ----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    @property
    def store(self) -> Store:
        """The open store; StoreUnavailable (503) while the node is not running."""
        if not self._running:
            raise StoreUnavailable("the service is not running")
        return self._store

    @property
    def registry(self) -> Registry:
        """Tokens and partners: the only way in to the store's registry tables."""
        if not self._running:
            raise StoreUnavailable("the service is not running")
        return self._registry

    @property
    def sessions(self) -> Sessions:
        """The dashboard's sessions, kept in the store (so every node behind one balancer,
        and a restarted one, knows them)."""
        if not self._running:
            raise StoreUnavailable("the service is not running")
        return self._sessions

    @property
    def dispatches(self) -> bool:
        """Whether this node runs a dispatcher (and so has live endpoint health)."""
        return self._dispatch

    # Lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open (and migrate) the store, then start the dispatcher. Idempotent."""
        if self._running:
            return
        try:
            await self._store.open()
        except Exception as exc:
            raise StoreUnavailable(_cannot_open(self.settings.db, exc)) from None
        try:
            await self.events.open()
            if self._dispatch:
                dispatcher = Dispatcher(
                    self._store, self.settings, metrics=self.metrics, clock=self._clock
                )
                dispatcher.watch.report = self.events.report
                await dispatcher.start()
                self.dispatcher = dispatcher
                await self._pruner.enter_async_context(
                    pruning(self._store, self.settings, metrics=self.metrics)
                )
                await self._pruner.enter_async_context(watching(dispatcher.watch, self._clock))
        except BaseException:
            if self.dispatcher is not None:
                await self.dispatcher.close()
                self.dispatcher = None
            if self._owns_store:
                await self._store.close()
            raise
        self._running = True

    async def stop(self) -> None:
        """Stop claiming, give POSTs under way the shutdown grace, close what the node made."""
        if not self._running:
            return
        self._running = False
        try:
            await self._pruner.aclose()
            if self.dispatcher is not None:
                await self.dispatcher.close()
            await self.events.close()
        finally:
            self.dispatcher = None
            if self._owns_store:
                await self._store.close()

    async def __aenter__(self) -> ServiceNode:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """An ASGI lifespan: runs the node for the app's life, unless it already runs (then
        whoever started it stops it)."""
        if self._running:
            yield
            return
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    # Wake-ups -------------------------------------------------------------------------------
    def on_commit(self, callback: Callable[[], None]) -> None:
        """Also call ``callback`` after each commit of new or replayed deliveries."""
        self._on_commit.append(callback)

    def wake(self) -> None:
        """New deliveries were committed: claim now. Never raises into the request."""
        try:
            if self.dispatcher is not None:
                self.dispatcher.wake()
        finally:
            self._committed()

    def _committed(self) -> None:
        """Call the ``on_commit`` hooks. Never raises into the request."""
        try:
            for callback in self._on_commit:
                callback()
        except Exception as exc:
            log.error("on_commit hook failed", error_type=type(exc).__name__)

    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> None:
        """Commit new deliveries (the API's ingest): this node's dispatcher gets the heads it
        has room for from the commit itself, without a claim (:meth:`Dispatcher.enqueue`),
        and is woken for the rest."""
        if self.dispatcher is None:
            await self.store.enqueue(deliveries)
        else:
            await self.dispatcher.enqueue(deliveries)
        self._committed()

    # Endpoint health ------------------------------------------------------------------------
    def endpoint_health(self) -> list[EndpointHealth]:
        """The dispatcher's live view of each URL it is busy with or whose breaker is not
        closed; empty on a node without a dispatcher."""
        dispatcher = self.dispatcher
        if dispatcher is None:
            return []
        return [
            EndpointHealth(url=url, breaker=state.value, in_flight=in_flight)
            for url, state, in_flight in dispatcher.endpoint_states()
        ]

    async def refresh_gauges(self) -> None:
        """Read what ``/metrics`` shows from the store and this node's dispatcher: deliveries
        by status, and per endpoint label its breaker, how long it has been down and the age
        of its oldest pending delivery (the worst of its URLs for each)."""
        now = self._clock()
        for status, count in (await self.store.counts()).items():
            self.metrics.deliveries.labels(status=status.value).set(count)
        oldest: dict[str, float] = {}
        for url, created_at in (await self.store.oldest_pending()).items():
            label = endpoint_label(url)
            oldest[label] = max(oldest.get(label, 0.0), max(now - created_at, 0.0))
        breakers: dict[str, str] = {}
        down_for: dict[str, float] = {}
        if self.dispatcher is not None:
            for url, state, _ in self.dispatcher.endpoint_states():
                label = endpoint_label(url)
                before = breakers.get(label, "closed")
                worse = BREAKER_VALUES[state.value] > BREAKER_VALUES[before]
                breakers[label] = state.value if worse else before
            for url, since in self.dispatcher.watch.down_since().items():
                label = endpoint_label(url)
                down_for[label] = max(down_for.get(label, 0.0), now - since)
        self.metrics.set_endpoint_health(
            breakers=breakers, down_for=down_for, oldest_pending=oldest
        )

    def breaker_state(self, url: str) -> str | None:
        """This node's circuit breaker state for ``url`` (``closed``, ``open``,
        ``half_open``); None on a node without a running dispatcher."""
        dispatcher = self.dispatcher
        if dispatcher is None:
            return None
        return dispatcher.breakers.state(url, self._clock()).value

    # Pause ----------------------------------------------------------------------------------
    async def pause_endpoint(self, endpoint_id: str) -> EndpointRecord:
        """Stop sending to an endpoint until :meth:`resume_endpoint`; NotFound (404) for an
        unknown id. Idempotent: pausing a paused endpoint changes nothing and says nothing.

        Its deliveries stay pending, in order; a POST already under way finishes. Claims
        waiting in this node's lane go back to the store (other nodes read the flag at their
        next claim, so at most the claims already in their lanes still go).
        """
        change = await self.store.set_paused(endpoint_id, True)
        if change is None:
            raise NotFound("no such endpoint")
        if change.changed:
            if self.dispatcher is not None:
                self.dispatcher.give_back_waiting(change.endpoint.url)
            log.info("endpoint paused", endpoint_id=endpoint_id, endpoint=_shown(change.endpoint))
            await self._pause_event(EventType.PAUSED, change.endpoint)
        return change.endpoint

    async def resume_endpoint(self, endpoint_id: str) -> EndpointRecord:
        """Send to a paused endpoint again: its pending deliveries go out, in order, at once
        (this node is woken; other nodes by the store's wake-up, or their next poll).
        NotFound (404) for an unknown id; resuming one not paused changes nothing."""
        change = await self.store.set_paused(endpoint_id, False)
        if change is None:
            raise NotFound("no such endpoint")
        if change.changed:
            log.info("endpoint resumed", endpoint_id=endpoint_id, endpoint=_shown(change.endpoint))
            self.wake()
            await self._pause_event(EventType.RESUMED, change.endpoint)
        return change.endpoint

    async def _pause_event(self, event: EventType, endpoint: EndpointRecord) -> None:
        """Tell the operator (unless the endpoint is where operator events go)."""
        if endpoint.owner_id == OPERATOR:
            return
        client = endpoint.owner_id if endpoint.kind is EndpointKind.CLIENT else None
        partner = endpoint.owner_id if endpoint.kind is EndpointKind.PARTNER else None
        data = {
            "endpointId": endpoint.id,
            "postbackUrl": endpoint.url,
            "dhanClientId": client,
            "partnerId": partner,
        }
        await self.events.send(event, endpoint.url, data)

    # Who is asking --------------------------------------------------------------------------
    async def authenticate(self, *, admin_key: str | None, access_token: str | None) -> Principal:
        """The API's question: an ``admin-key`` header, when sent, must be the admin key;
        otherwise the ``access-token`` must be active. AuthenticationError (401) if not."""
        if admin_key is not None:
            self.admin_key.check(admin_key)
            return Principal.admin()
        return Principal.of_token(await self.registry.authenticate(access_token))

    async def principal_for(self, credential: str) -> Principal | None:
        """The dashboard's question: the admin for the admin key, a client for an active
        access token, else None."""
        try:
            self.admin_key.check(credential)
        except AuthenticationError:
            pass
        else:
            return Principal.admin()
        try:
            return Principal.of_token(await self.registry.authenticate(credential))
        except AuthenticationError:
            return None

    async def still_valid(self, principal: Principal) -> bool:
        """Whether a principal from earlier (a dashboard session) may still act: its token
        has not been revoked or expired since."""
        if principal.is_admin:
            return True
        token = await self.store.get_token(principal.token_hash or "")
        return token is not None and token.is_active(self._clock())

    # Tokens ---------------------------------------------------------------------------------
    async def ensure_token(self, access_token: str, **adoption: Unpack[Adoption]) -> bool:
        """Register a token made elsewhere (the relay derives its own) unless it exists;
        True when it is active. Goes through the registry, like every token."""
        record = await self.registry.adopt_token(access_token, **adoption)
        return record.is_active(self._clock())


def _shown(endpoint: EndpointRecord) -> str:
    """An endpoint as a log line shows it: scheme, host and port, never a path (which may
    hold a secret segment)."""
    return endpoint_label(endpoint.url)


def _cannot_open(url: str, exc: Exception) -> str:
    """One line saying which database could not be opened, why, and what to check."""
    parts = urlsplit(url)
    shown = url
    if parts.password:
        shown = url.replace(f":{parts.password}@", ":***@", 1)
    if isinstance(exc, DhanPostbackError):
        reason = exc.message
    elif isinstance(exc, OSError) and exc.errno and exc.filename:
        reason = f"{os.strerror(exc.errno).lower()}: {exc.filename}"
    else:
        reason = f"{exc}" or type(exc).__name__
    reason = " ".join(reason.split())
    if parts.scheme == "sqlite":
        advice = "check that the file's folder exists and is writable"
    else:
        advice = "check the URL and that the database server is up"
    return f"cannot open the database {shown}: {reason}; {advice} (--db, DHAN_POSTBACK_DB)"
