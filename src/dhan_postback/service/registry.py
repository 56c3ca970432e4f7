"""Who may hand the service updates, and where their postbacks go: tokens, partners, endpoints.

As at the broker, a Postback URL is saved with the access token generated for it: one URL per
token, and a new token is how a URL changes. A token may belong to a partner; the updates of
orders placed with it then also go to the partner's URL.

The broker's tokens last a day, so the signing secret cannot belong to the token: it belongs
to the **endpoint**, a client's URL or a partner's. The first token for a client and URL
creates the endpoint and its secret; every later one reuses both, so that the receiver keeps
its configuration across renewals. A rotation makes a new secret, and the old one keeps
signing beside it for ``secret_rotation_grace`` seconds.

Only SHA-256 hashes of access tokens and of the admin key are kept or compared; the token
itself exists only in the response that creates it and in its holder's requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Final, TypedDict, TypeVar

from .. import urlpolicy
from ..errors import AuthenticationError, NotFound, PayloadError, URLRefused
from ..signing import generate_secret
from .ids import new_endpoint_id
from .store import EndpointKind, EndpointRecord, PartnerRecord, Store, Target, TokenRecord

__all__ = [
    "CLOCK_SLACK",
    "AdminKey",
    "Adoption",
    "Destination",
    "IssuedToken",
    "Registry",
    "ensure_endpoint",
    "hash_secret",
    "new_access_token",
    "register_partner",
    "register_token",
]


V = TypeVar("V")

CLOCK_SLACK: Final = 60.0
"""Seconds by which the nodes' clocks may disagree (as for leases) and a revocation written
by another node still reaches this node's cached copy of the token."""


def hash_secret(value: str) -> str:
    """SHA-256 hex of a token or key: what is stored and compared instead of the secret."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_access_token() -> str:
    """A new access token: 32 random bytes, URL-safe base64 (43 characters).

    Never one that starts with ``-``: one in 64 would, and a command line reads it as an option
    (``dhan-postback tokens revoke -x...`` is "No such option").
    """
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


async def ensure_endpoint(
    store: Store, kind: EndpointKind, owner_id: str, url: str, secret: str, *, now: float
) -> EndpointRecord:
    """The owner's endpoint at ``url``: the one it has, else a new one signing with ``secret``
    (one endpoint per owner and URL, however many tokens or partners point there)."""
    candidate = EndpointRecord(
        id=new_endpoint_id(),
        kind=kind,
        owner_id=owner_id,
        url=url,
        signing_secret=secret,
        created_at=now,
    )
    return await store.ensure_endpoint(candidate)


async def register_token(store: Store, token: TokenRecord, secret: str) -> EndpointRecord | None:
    """Store a token made outside the API (benchmarks, tests, tools) with its client's
    endpoint at its URL: created with ``secret`` when new, else the existing one (returned,
    with the secret that really signs)."""
    endpoint = None
    if token.postback_url is not None:
        kind, owner, url = EndpointKind.CLIENT, token.dhan_client_id, token.postback_url
        endpoint = await ensure_endpoint(store, kind, owner, url, secret, now=token.created_at)
    await store.add_token(token)
    return endpoint


async def register_partner(store: Store, partner: PartnerRecord, secret: str) -> EndpointRecord:
    """Store a partner made outside the API with its endpoint at its URL (see
    :func:`register_token`)."""
    kind, owner, url = EndpointKind.PARTNER, partner.partner_id, partner.postback_url
    endpoint = await ensure_endpoint(store, kind, owner, url, secret, now=partner.created_at)
    await store.put_partner(partner)
    return endpoint


class AdminKey:
    """The admin key, kept as a hash and checked in constant time."""

    __slots__ = ("_digest",)

    def __init__(self, key: str | None) -> None:
        self._digest = hashlib.sha256(key.encode()).digest() if key else None

    def check(self, offered: str | None) -> None:
        """Return if ``offered`` is the admin key, else raise AuthenticationError."""
        if self._digest is None:
            raise AuthenticationError("the admin API is disabled: no admin key is configured")
        if not offered:
            raise AuthenticationError("missing admin-key header")
        if not hmac.compare_digest(hashlib.sha256(offered.encode()).digest(), self._digest):
            raise AuthenticationError("invalid admin key")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token as its holder sees it once: the token itself, what was stored, and the
    endpoint its postbacks go to (None without a Postback URL)."""

    access_token: str
    record: TokenRecord
    endpoint: EndpointRecord | None


class Adoption(TypedDict):
    """A token made outside the registry, besides the token itself (see
    :meth:`Registry.adopt_token`)."""

    dhan_client_id: str
    postback_url: str
    signing_secret: str
    lifetime: float


@dataclass(frozen=True, slots=True)
class Destination:
    """One URL an update of a token goes to."""

    target: Target
    url: str
    partner_id: str | None = None


@dataclass(eq=False)
class Registry:
    """Issues, authenticates and revokes tokens; keeps partners; tells where updates go.

    Every ingest request needs its token, so tokens are cached, and for long: a token read
    from the store is kept for ``token_cache_ttl`` seconds, the least recently used going
    first once ``cache_size`` are cached (a platform with 10,000 live tokens must not read
    one from the store per request). A token changes only by being revoked (expiry is
    checked on every request), so that is what the cache must hear of: a revocation made here
    drops the cache entry at once, and at most every ``cache_ttl`` seconds, on the next
    request, one small query asks the store which tokens were revoked lately (by any node)
    and drops those. So a revocation made by another node sharing the store still takes
    effect here within ``cache_ttl``, as with the short cache this replaces.

    Partners are cached for ``cache_ttl`` seconds.
    """

    store: Store
    _: KW_ONLY
    token_ttl: float
    secret_rotation_grace: float = 86400.0
    allow_loopback: bool = False
    clock: Callable[[], float] = time.time
    cache_ttl: float = 1.0
    token_cache_ttl: float = 3600.0
    cache_size: int = 100_000
    _tokens: OrderedDict[str, tuple[float, TokenRecord]] = field(
        default_factory=OrderedDict, init=False
    )
    _partners: dict[str, tuple[float, PartnerRecord]] = field(default_factory=dict, init=False)
    _revocations_read_at: float = field(default=float("-inf"), init=False)
    _revocations_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    # Tokens ----------------------------------------------------------------------------------
    async def issue_token(
        self,
        dhan_client_id: str,
        *,
        postback_url: str | None = None,
        partner_id: str | None = None,
    ) -> IssuedToken:
        """A new token for a client, with its Postback URL (checked) and partner (must exist).

        Its postbacks are signed by the client's endpoint at that URL: the one an earlier
        token made, or a new one with a new secret."""
        url = await self._check_url(postback_url) if postback_url is not None else None
        if partner_id is not None and await self.partner(partner_id) is None:
            raise PayloadError(f"`partnerId`: no partner {partner_id!r}")
        access_token = new_access_token()
        now = self.clock()
        endpoint = None
        if url is not None:
            endpoint = await ensure_endpoint(
                self.store, EndpointKind.CLIENT, dhan_client_id, url, generate_secret(), now=now
            )
        record = TokenRecord(
            token_hash=hash_secret(access_token),
            dhan_client_id=dhan_client_id,
            postback_url=url,
            partner_id=partner_id,
            created_at=now,
            expires_at=now + self.token_ttl,
            endpoint_id=None if endpoint is None else endpoint.id,
        )
        await self.store.add_token(record)
        return IssuedToken(access_token, record, endpoint)

    async def adopt_token(
        self,
        access_token: str,
        *,
        dhan_client_id: str,
        postback_url: str,
        signing_secret: str,
        lifetime: float,
    ) -> TokenRecord:
        """The record of a token made outside the registry (the relay derives its tokens from
        its signing secret), stored the first time it is seen with its client's endpoint at
        the URL, which signs with ``signing_secret``; the URL is checked like any. An endpoint
        left by an earlier run with another secret is rotated to this one: the old secret keeps
        signing beside it for the grace period."""
        token_hash = hash_secret(access_token)
        found = await self.store.get_token(token_hash)
        if found is not None:
            return found
        now = self.clock()
        url = await self._check_url(postback_url)
        endpoint = await ensure_endpoint(
            self.store, EndpointKind.CLIENT, dhan_client_id, url, signing_secret, now=now
        )
        if endpoint.signing_secret != signing_secret:
            await self.store.rotate_secret(
                endpoint.id,
                signing_secret,
                now=now,
                keep_until=now + self.secret_rotation_grace,
            )
        record = TokenRecord(
            token_hash=token_hash,
            dhan_client_id=dhan_client_id,
            postback_url=url,
            partner_id=None,
            created_at=now,
            expires_at=now + lifetime,
        )
        await self.store.add_token(record)
        return record

    async def revoke_token(self, access_token: str) -> TokenRecord:
        """Revoke a token; its deliveries are kept and still sent. NotFound if unknown."""
        token_hash = hash_secret(access_token)
        self._tokens.pop(token_hash, None)
        if not await self.store.revoke_token(token_hash, self.clock()):
            raise NotFound("no such access token")
        record = await self.store.get_token(token_hash)
        if record is None:  # pragma: no cover - revoked a moment ago
            raise NotFound("no such access token")
        return record

    async def authenticate(self, access_token: str | None) -> TokenRecord:
        """The active token for an ``access-token`` header, or AuthenticationError."""
        if not access_token:
            raise AuthenticationError("missing access-token header")
        token_hash = hash_secret(access_token)
        now = self.clock()
        await self._hear_revocations(now)
        cached = self._tokens.get(token_hash)
        if cached is not None and now - cached[0] < self.token_cache_ttl:
            self._tokens.move_to_end(token_hash)
            record = cached[1]
        else:
            found = await self.store.get_token(token_hash)
            if found is None:
                raise AuthenticationError("invalid access token")
            record = found
            self._tokens.pop(token_hash, None)
            while len(self._tokens) >= self.cache_size:
                self._tokens.popitem(last=False)  # the least recently used
            self._tokens[token_hash] = (now, record)
        if record.revoked_at is not None:
            raise AuthenticationError("the access token has been revoked")
        if not record.is_active(now):
            raise AuthenticationError("the access token has expired")
        return record

    async def preload(self) -> int:
        """Cache the newest active tokens, up to ``cache_size``, with one query; how many.

        A node that starts while clients are sending (a restart at the market's open) would
        otherwise read every client's token from the store on its first request, one by one,
        all at once. Tokens used meanwhile stay as they are; revocations are heard as usual.
        """
        now = self.clock()
        fresh = [
            token
            for token in await self.store.list_tokens()  # newest first
            if token.is_active(now) and token.token_hash not in self._tokens
        ][: max(0, self.cache_size - len(self._tokens))]
        for token in fresh:  # behind the tokens in use, the oldest first to be let go
            self._tokens[token.token_hash] = (now, token)
            self._tokens.move_to_end(token.token_hash, last=False)
        return len(fresh)

    async def _hear_revocations(self, now: float) -> None:
        """Drop the cached tokens that any node revoked lately: at most once per
        ``cache_ttl``, one query for all the requests that arrive meanwhile."""
        if now - self._revocations_read_at < self.cache_ttl:
            return
        async with self._revocations_lock:
            if now - self._revocations_read_at < self.cache_ttl:
                return  # read while this request waited
            # a cached token was read at most token_cache_ttl ago: a revocation that it
            # missed is younger than that, give or take the nodes' clocks
            revoked = await self.store.revoked_since(now - self.token_cache_ttl - CLOCK_SLACK)
            self._revocations_read_at = now
            for token_hash in revoked:
                cached = self._tokens.get(token_hash)
                if cached is not None and cached[1].revoked_at is None:
                    del self._tokens[token_hash]

    # Partners --------------------------------------------------------------------------------
    async def put_partner(
        self, partner_id: str, postback_url: str
    ) -> tuple[PartnerRecord, EndpointRecord]:
        """Create or replace a partner; its endpoint at that URL (new, or the one it had)."""
        url = await self._check_url(postback_url)
        now = self.clock()
        endpoint = await ensure_endpoint(
            self.store, EndpointKind.PARTNER, partner_id, url, generate_secret(), now=now
        )
        record = PartnerRecord(partner_id=partner_id, postback_url=url, created_at=now)
        await self.store.put_partner(record)
        self._partners.pop(partner_id, None)
        return record, endpoint

    async def partner(self, partner_id: str) -> PartnerRecord | None:
        now = self.clock()
        cached = self._partners.get(partner_id)
        if cached is not None and now - cached[0] < self.cache_ttl:
            return cached[1]
        record = await self.store.get_partner(partner_id)
        if record is not None:
            self._remember(self._partners, partner_id, record, now)
        return record

    # Endpoints -------------------------------------------------------------------------------
    async def rotate_secret(self, endpoint_id: str) -> EndpointRecord:
        """A new secret for an endpoint; the old one signs beside it for the grace period."""
        now = self.clock()
        rotated = await self.store.rotate_secret(
            endpoint_id, generate_secret(), now=now, keep_until=now + self.secret_rotation_grace
        )
        if rotated is None:
            raise NotFound("no such endpoint")
        return rotated

    # Routing ---------------------------------------------------------------------------------
    async def destinations(self, token: TokenRecord) -> list[Destination]:
        """Where a token's updates go: its own URL, then its partner's, each if there is one."""
        found: list[Destination] = []
        if token.postback_url is not None:
            found.append(Destination(Target.TOKEN, token.postback_url))
        if token.partner_id is not None:
            partner = await self.partner(token.partner_id)
            if partner is not None:
                found.append(Destination(Target.PARTNER, partner.postback_url, partner.partner_id))
        return found

    # Helpers ---------------------------------------------------------------------------------
    async def _check_url(self, url: str) -> str:
        try:
            return await urlpolicy.check_url_resolved(url, allow_loopback=self.allow_loopback)
        except URLRefused as exc:
            raise URLRefused(f"`postbackUrl`: {exc.message}", reason=exc.reason) from None

    def _remember(self, cache: dict[str, tuple[float, V]], key: str, value: V, now: float) -> None:
        if len(cache) >= self.cache_size:
            cache.clear()  # crude, but bounded; a busy service refills it in a second
        cache[key] = (now, value)
