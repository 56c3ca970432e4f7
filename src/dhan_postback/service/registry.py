"""Who may hand the service updates, and where their postbacks go: access tokens and partners.

As at the broker, a Postback URL is saved with the access token generated for it: one URL per
token, and a new token is how a URL changes. A token may belong to a partner; the updates of
orders placed with it then also go to the partner's URL, signed with the partner's secret.

Only SHA-256 hashes of access tokens and of the admin key are kept or compared; the token
itself exists only in the response that creates it and in its holder's requests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .. import urlpolicy
from ..errors import AuthenticationError, NotFound, PayloadError, URLRefused
from ..signing import generate_secret
from .store import PartnerRecord, Store, Target, TokenRecord

__all__ = [
    "AdminKey",
    "Destination",
    "IssuedToken",
    "Registry",
    "hash_secret",
    "new_access_token",
]


V = TypeVar("V")


def hash_secret(value: str) -> str:
    """SHA-256 hex of a token or key: what is stored and compared instead of the secret."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_access_token() -> str:
    """A new access token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


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
    """A new token as its holder sees it once: the token itself, and what was stored."""

    access_token: str
    record: TokenRecord


@dataclass(frozen=True, slots=True)
class Destination:
    """One URL an update of a token goes to."""

    target: Target
    url: str
    partner_id: str | None = None


class Registry:
    """Issues, authenticates and revokes tokens; keeps partners; tells where updates go.

    Token and partner look-ups are cached for ``cache_ttl`` seconds, because every ingest
    request needs them. A revocation made here drops the cache entry at once; one made by
    another node sharing the store takes effect here within ``cache_ttl``.
    """

    def __init__(
        self,
        store: Store,
        *,
        token_ttl: float,
        allow_loopback: bool = False,
        clock: Callable[[], float] = time.time,
        cache_ttl: float = 1.0,
        cache_size: int = 10_000,
    ) -> None:
        self.store = store
        self.token_ttl = token_ttl
        self.allow_loopback = allow_loopback
        self._clock = clock
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._tokens: dict[str, tuple[float, TokenRecord]] = {}
        self._partners: dict[str, tuple[float, PartnerRecord]] = {}

    # Tokens ----------------------------------------------------------------------------------
    async def issue_token(
        self,
        dhan_client_id: str,
        *,
        postback_url: str | None = None,
        partner_id: str | None = None,
    ) -> IssuedToken:
        """A new token for a client, with its Postback URL (checked) and partner (must exist)."""
        url = await self._check_url(postback_url) if postback_url is not None else None
        if partner_id is not None and await self.partner(partner_id) is None:
            raise PayloadError(f"`partnerId`: no partner {partner_id!r}")
        access_token = new_access_token()
        now = self._clock()
        record = TokenRecord(
            token_hash=hash_secret(access_token),
            dhan_client_id=dhan_client_id,
            postback_url=url,
            partner_id=partner_id,
            signing_secret=generate_secret(),
            created_at=now,
            expires_at=now + self.token_ttl,
        )
        await self.store.add_token(record)
        return IssuedToken(access_token, record)

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
        its signing secret), stored the first time it is seen; the URL is checked like any."""
        token_hash = hash_secret(access_token)
        found = await self.store.get_token(token_hash)
        if found is not None:
            return found
        now = self._clock()
        record = TokenRecord(
            token_hash=token_hash,
            dhan_client_id=dhan_client_id,
            postback_url=await self._check_url(postback_url),
            partner_id=None,
            signing_secret=signing_secret,
            created_at=now,
            expires_at=now + lifetime,
        )
        await self.store.add_token(record)
        return record

    async def revoke_token(self, access_token: str) -> TokenRecord:
        """Revoke a token; its deliveries are kept and still sent. NotFound if unknown."""
        token_hash = hash_secret(access_token)
        self._tokens.pop(token_hash, None)
        if not await self.store.revoke_token(token_hash, self._clock()):
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
        now = self._clock()
        cached = self._tokens.get(token_hash)
        if cached is not None and now - cached[0] < self._cache_ttl:
            record = cached[1]
        else:
            found = await self.store.get_token(token_hash)
            if found is None:
                raise AuthenticationError("invalid access token")
            record = found
            self._remember(self._tokens, token_hash, record, now)
        if record.revoked_at is not None:
            raise AuthenticationError("the access token has been revoked")
        if not record.is_active(now):
            raise AuthenticationError("the access token has expired")
        return record

    # Partners --------------------------------------------------------------------------------
    async def put_partner(self, partner_id: str, postback_url: str) -> PartnerRecord:
        """Create or replace a partner, with a new signing secret."""
        record = PartnerRecord(
            partner_id=partner_id,
            postback_url=await self._check_url(postback_url),
            signing_secret=generate_secret(),
            created_at=self._clock(),
        )
        await self.store.put_partner(record)
        self._partners.pop(partner_id, None)
        return record

    async def partner(self, partner_id: str) -> PartnerRecord | None:
        now = self._clock()
        cached = self._partners.get(partner_id)
        if cached is not None and now - cached[0] < self._cache_ttl:
            return cached[1]
        record = await self.store.get_partner(partner_id)
        if record is not None:
            self._remember(self._partners, partner_id, record, now)
        return record

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
        if len(cache) >= self._cache_size:
            cache.clear()  # crude, but bounded; a busy service refills it in a second
        cache[key] = (now, value)
