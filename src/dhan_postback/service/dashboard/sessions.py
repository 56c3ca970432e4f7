"""Dashboard sessions: a random id in the cookie, everything else kept server-side.

The cookie holds only ``secrets.token_urlsafe(32)``: no key, no token, no hash of either, so
a stolen cookie jar says nothing about the credentials behind it, and logout or a restart ends
the session for good. Each session carries its own CSRF token (the synchronizer pattern: every
form posts it back in a hidden field). Anonymous sessions exist only to give the login form a
CSRF token; the id is replaced on login so that a planted id is worth nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = [
    "COOKIE_NAME",
    "Principal",
    "Session",
    "SessionStore",
    "hash_token",
    "same_secret",
]

COOKIE_NAME = "dpb_session"


def hash_token(token: str) -> str:
    """The registry's key for an access token: SHA-256 hex (the store never sees the token)."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets of any length."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is logged in: the admin (sees everything), or one client through its token.

    ``token_hash`` lets each request check that the token is still active; it is never
    rendered.
    """

    is_admin: bool
    dhan_client_id: str | None = None
    token_hash: str | None = None

    @property
    def scope_client_id(self) -> str | None:
        """The ``dhan_client_id`` every query must be restricted to (None: no restriction)."""
        return None if self.is_admin else self.dhan_client_id

    @property
    def label(self) -> str:
        return "admin" if self.is_admin else f"client {self.dhan_client_id}"


@dataclass(slots=True)
class Session:
    id: str
    csrf: str
    expires_at: float
    principal: Principal | None = None
    flash: list[str] = field(default_factory=list)


class SessionStore:
    """Sessions of one process, bounded in number and in age (oldest evicted first)."""

    def __init__(self, *, max_sessions: int = 10_000, lifetime: float = 12 * 3600.0) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._max = max_sessions
        self._lifetime = lifetime

    def new(self, principal: Principal | None = None) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            expires_at=time.time() + self._lifetime,
            principal=principal,
        )
        self._sessions[session.id] = session
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires_at <= time.time():
            del self._sessions[session_id]
            return None
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)
