"""Dashboard sessions: a random id in the cookie, its hash and its owner in the database.

Why like this:

* **Nothing for anonymous visitors.** The login form needs a CSRF token, and nothing else; it
  gets one from a *double-submit cookie*: a random value set in an ``HttpOnly``,
  ``SameSite=Strict`` cookie and repeated in the form, the two compared on POST. No server
  state, so no number of anonymous visits can push a logged-in session out.
* **In the database**, so that a session survives a restart and works on every node behind
  one load balancer (they share the store).
* **Hashed at rest.** The cookie holds ``secrets.token_urlsafe(32)``; the store keeps only its
  SHA-256, so a copy of the database cannot be replayed as a cookie. The session's CSRF token
  is derived from the id (another hash, under another label), so it is never stored either.
* **Capped per principal.** The admin, and each access token, keep at most
  :data:`SESSIONS_PER_PRINCIPAL` sessions; a new login beyond that ends the same principal's
  oldest session, never another's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..principal import Principal
from ..store.base import SessionRecord, Store

__all__ = [
    "COOKIE_NAME",
    "LOGIN_COOKIE_NAME",
    "SESSIONS_PER_PRINCIPAL",
    "SESSION_LIFETIME",
    "Principal",
    "Session",
    "Sessions",
    "new_login_token",
    "same_token",
]

COOKIE_NAME = "dpb_session"
LOGIN_COOKIE_NAME = "dpb_login"
"""The double-submit cookie of the login form (a random value, no server state)."""
SESSIONS_PER_PRINCIPAL = 20
SESSION_LIFETIME = 12 * 3600.0


@dataclass(slots=True)
class Session:
    """A logged-in session as a request sees it; ``id`` is the cookie's value."""

    id: str
    principal: Principal
    expires_at: float
    flash: list[str] = field(default_factory=list)

    @property
    def csrf(self) -> str:
        """The token every form of this session posts back (derived, never stored)."""
        return hashlib.sha256(b"dpb-csrf\x00" + self.id.encode()).hexdigest()


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def new_login_token() -> str:
    """A fresh value for the login form's double-submit cookie."""
    return secrets.token_urlsafe(32)


def same_token(sent: str, expected: str) -> bool:
    """Constant-time comparison of a submitted CSRF token with the expected one."""
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


class Sessions:
    """Dashboard sessions kept in the service's store (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        lifetime: float = SESSION_LIFETIME,
        per_principal: int = SESSIONS_PER_PRINCIPAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._lifetime = lifetime
        self._per_principal = per_principal
        self._clock = clock

    async def new(self, principal: Principal) -> Session:
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), principal, now + self._lifetime)
        record = SessionRecord(
            id_hash=_id_hash(session.id),
            principal=principal.key,
            dhan_client_id=principal.dhan_client_id,
            token_hash=principal.token_hash,
            created_at=now,
            expires_at=session.expires_at,
        )
        await self._store.add_session(record, keep=self._per_principal, now=now)
        return session

    async def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        record = await self._store.get_session(_id_hash(session_id), now=self._clock())
        if record is None:
            return None
        principal = Principal(
            is_admin=record.principal == "admin",
            dhan_client_id=record.dhan_client_id,
            token_hash=record.token_hash,
        )
        flash = record.flash.split("\n") if record.flash else []
        return Session(session_id, principal, record.expires_at, flash)

    async def end(self, session: Session) -> None:
        await self._store.end_session(_id_hash(session.id))

    async def save_flash(self, session: Session) -> None:
        """Keep ``session.flash`` for the next page (one message per line)."""
        text = "\n".join(message.replace("\n", " ") for message in session.flash)
        await self._store.set_session_flash(_id_hash(session.id), text)
