"""Dashboard sessions: a random id in the cookie, everything else kept server-side.

The cookie holds only ``secrets.token_urlsafe(32)``: no key, no token, no hash of either, so
a stolen cookie jar says nothing about the credentials behind it, and logout or a restart ends
the session for good. Each session carries its own CSRF token (the synchronizer pattern: every
form posts it back in a hidden field). Anonymous sessions exist only to give the login form a
CSRF token; the id is replaced on login so that a planted id is worth nothing.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from ..principal import Principal

__all__ = ["COOKIE_NAME", "Principal", "Session", "SessionStore", "same_token"]

COOKIE_NAME = "dpb_session"


@dataclass(slots=True)
class Session:
    id: str
    csrf: str
    expires_at: float
    principal: Principal | None = None
    flash: list[str] = field(default_factory=list)


def same_token(sent: str, expected: str) -> bool:
    """Constant-time comparison of a submitted CSRF token with the session's."""
    return hmac.compare_digest(sent.encode(), expected.encode())


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
