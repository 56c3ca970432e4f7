"""Who is asking: the admin, or one client through its access token.

The HTTP API and the dashboard both ask :class:`Principal` what a caller may see, so their
rules cannot drift: a token's holder sees its client's deliveries to its client's own Postback
URLs, never another client's and never a partner's copy, and asking for another client's is
refused (403) rather than quietly narrowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

from ..errors import PermissionDenied
from .store.base import DeliveryQuery, OrderQuery, Target, TokenRecord

__all__ = ["Principal"]

Q = TypeVar("Q", DeliveryQuery, OrderQuery)
"""A query over the delivery log that names a client and a target: what a principal narrows."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The admin (``is_admin``), or the holder of the token hashed as ``token_hash``.

    ``token_hash`` lets a long-lived session check that the token is still active; it is
    never rendered or logged.
    """

    is_admin: bool
    dhan_client_id: str | None = None
    token_hash: str | None = None

    @classmethod
    def admin(cls) -> Principal:
        return cls(is_admin=True)

    @classmethod
    def of_token(cls, token: TokenRecord) -> Principal:
        return cls(is_admin=False, dhan_client_id=token.dhan_client_id, token_hash=token.token_hash)

    def restrict(self, query: Q) -> Q:
        """``query`` limited to what this principal may see; PermissionDenied when it names
        another client."""
        if self.is_admin:
            return query
        own = self.dhan_client_id
        if query.dhan_client_id not in (None, own):
            raise PermissionDenied("an access token sees only its own client's deliveries")
        return dataclasses.replace(query, dhan_client_id=own, target=Target.TOKEN)

    def may_see(self, client_id: str, target: Target) -> bool:
        return self.is_admin or (client_id == self.dhan_client_id and target is Target.TOKEN)

    @property
    def label(self) -> str:
        """How logs name the caller (never a secret)."""
        return "admin" if self.is_admin else f"client {self.dhan_client_id}"

    @property
    def key(self) -> str:
        """Whose sessions these are, for the dashboard's per-principal cap (no secret in it)."""
        return "admin" if self.is_admin else f"token:{self.token_hash}"
