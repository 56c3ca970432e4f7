"""A postback service inside the relay's process: one command from websocket to Postback URL.

:class:`EmbeddedService` runs the real service app (``create_app``) with its dispatcher and
its retention pruner on a SQLite outbox, served on a loopback port of this process, and hands
the relay's batches to its ingest API exactly as :class:`~.sink.HttpIngest` does with a
remote service. So the updates get the service's guarantees unchanged: committed before
acknowledged, signed, retried, delivered in order per order, and pruned after retention.

The service needs an access token per client, with the Postback URL saved on it. Instead of
keeping tokens somewhere, the embedded service derives each one from the signing secret, the
client id and the URL (an HMAC), and registers it in its store the first time it is needed.
The same secret therefore gives the same tokens after a restart (pending deliveries keep going
out, signed with the same secret), a new URL gives a new token (as at the broker, a new token is
how a URL changes), and one signing secret covers every client of a partner login.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator, Sequence
from typing import Final

import msgspec
import structlog
from pydantic import SecretStr

from ..service.app import create_app
from ..service.dispatcher import hook
from ..service.ids import new_endpoint_id
from ..service.metrics import ServiceMetrics
from ..service.registry import hash_secret
from ..service.retention import prune_hook
from ..service.store import EndpointKind, EndpointRecord, Store, TokenRecord, create_store
from ..serving import BackgroundServer
from ..settings import ServiceSettings
from ..signing import Signer, generate_secret
from ..urlpolicy import check_url
from .backoff import Backoff
from .sink import HttpIngest, SinkUnusable

__all__ = ["TOKEN_LIFETIME", "EmbeddedService"]

log = structlog.get_logger(__name__)

TOKEN_LIFETIME: Final = 10 * 365 * 86400.0
"""Embedded tokens never leave this process, so they need not expire in practice."""


class _Client(msgspec.Struct):
    dhanClientId: str


_client_of = msgspec.json.Decoder(_Client)


class EmbeddedService:
    """The postback service (API, outbox, dispatcher) as the relay's sink.

    ``settings`` are the service's (``DHAN_POSTBACK_*``: database, retry schedule, timeouts,
    ``allow_loopback``); its API listens on ``127.0.0.1:port`` (0: any free port).
    ``signing_secret`` (``whsec_...``) signs every postback (Standard Webhooks); give the
    receiver the same one.
    """

    def __init__(
        self,
        postback_url: str,
        signing_secret: str,
        *,
        settings: ServiceSettings,
        port: int = 0,
        backoff: Backoff | None = None,
    ) -> None:
        base = settings
        self.postback_url = check_url(postback_url, allow_loopback=base.allow_loopback)
        Signer(signing_secret)  # refuses a malformed secret now rather than at the first POST
        self._secret = signing_secret
        admin_key = base.admin_key or SecretStr(generate_secret())
        self.settings = base.model_copy(
            update={
                "host": "127.0.0.1",
                "port": port,
                "admin_key": admin_key,
                "token_ttl": TOKEN_LIFETIME,
            }
        )
        self._backoff = backoff
        self.url: str | None = None
        self._server: BackgroundServer | None = None
        self._store: Store | None = None
        self._ingests: dict[str, HttpIngest] = {}

    def __repr__(self) -> str:
        return f"EmbeddedService({self.postback_url!r})"

    @property
    def last_error(self) -> str | None:
        return next((i.last_error for i in self._ingests.values() if i.last_error), None)

    async def start(self) -> None:
        """Open the outbox, start the dispatcher and the API (idempotent)."""
        if self._server is not None:
            return
        metrics = ServiceMetrics()
        dispatch = hook(self.settings, metrics=metrics)
        store = create_store(self.settings.db)
        app = create_app(
            self.settings,
            store,
            on_commit=dispatch.wake,
            lifespan_hooks=[dispatch, prune_hook(self.settings, metrics=metrics)],
            metrics=metrics,
        )
        self._store = store
        server = BackgroundServer(
            app,
            host="127.0.0.1",
            port=self.settings.port,
            **self.settings.connection_limits.uvicorn_options(),
        )
        await server.start()
        self._server = server
        self.url = f"http://127.0.0.1:{server.port}"
        log.info("relay.embedded.started", api=self.url, postback_url=self.postback_url)

    async def close(self) -> None:
        """Stop taking updates; the dispatcher gets the service's shutdown grace to finish."""
        for ingest in self._ingests.values():
            await ingest.close()
        self._ingests.clear()
        if self._server is not None:
            await self._server.stop()
        if self._store is not None:
            await self._store.close()
        self._server = self._store = None

    async def submit(self, bodies: Sequence[bytes]) -> list[str]:
        """Ingest ``bodies`` in order, one request per run of updates of the same client."""
        ids: list[str] = []
        for client_id, run in _runs_by_client(bodies):
            ingest = await self._ingest_for(client_id)
            ids.extend(await ingest.submit(run))
        return ids

    async def _ingest_for(self, client_id: str) -> HttpIngest:
        ingest = self._ingests.get(client_id)
        if ingest is not None:
            return ingest
        if self.url is None or self._store is None:
            raise RuntimeError("the embedded postback service is not running")
        token = self.token_for(client_id)
        record = await self._store.get_token(hash_secret(token))
        now = time.time()
        if record is None:
            await self._ensure_endpoint(client_id, now)
            await self._store.add_token(
                TokenRecord(
                    token_hash=hash_secret(token),
                    dhan_client_id=client_id,
                    postback_url=self.postback_url,
                    partner_id=None,
                    created_at=now,
                    expires_at=now + TOKEN_LIFETIME,
                )
            )
            log.info("relay.embedded.token_registered", client_id=client_id)
        elif not record.is_active(now):
            raise SinkUnusable(f"the embedded token of client {client_id} is revoked or expired")
        ingest = HttpIngest(self.url, token, backoff=self._backoff)
        self._ingests[client_id] = ingest
        return ingest

    async def _ensure_endpoint(self, client_id: str, now: float) -> None:
        """The client's endpoint at the relay's URL, signing with the relay's secret.

        An endpoint left by an earlier run with another secret is rotated to this one: the
        old secret keeps signing beside it for the service's grace period."""
        assert self._store is not None
        endpoint = await self._store.ensure_endpoint(
            EndpointRecord(
                id=new_endpoint_id(),
                kind=EndpointKind.CLIENT,
                owner_id=client_id,
                url=self.postback_url,
                signing_secret=self._secret,
                created_at=now,
            )
        )
        if endpoint.signing_secret != self._secret:
            grace = self.settings.secret_rotation_grace
            await self._store.rotate_secret(
                endpoint.id, self._secret, now=now, keep_until=now + grace
            )

    def token_for(self, client_id: str) -> str:
        """The access token of ``client_id`` at this URL: derived, never stored."""
        message = f"{client_id}\x1f{self.postback_url}".encode()
        digest = hmac.new(self._secret.encode(), message, hashlib.sha256).hexdigest()
        return f"relay_{digest}"


def _runs_by_client(bodies: Sequence[bytes]) -> Iterator[tuple[str, list[bytes]]]:
    """Consecutive bodies of the same client, in order (each run is one ingest request)."""
    current: str | None = None
    run: list[bytes] = []
    for body in bodies:
        client_id = _client_of.decode(body).dhanClientId
        if client_id != current and run:
            yield current or "", run
            run = []
        current = client_id
        run.append(body)
    if run:
        yield current or "", run
