"""Turning one HTTP request into a trusted :class:`Postback`, with no web framework involved.

The checks run cheapest-to-refuse first, and nothing is parsed before it is trusted:

1. the Standard Webhooks signature, when the receiver has a secret (401 when it fails, also for a
   timestamp outside the tolerance: a stale request is as untrusted as a forged one);
2. the body, read tolerantly by :func:`dhan_postback.payload.parse` (400 when unreadable);
3. the optional ``dhanClientId`` allow-list (403).

:func:`parse_and_verify` is what a Flask or Django view calls; the ASGI :class:`Receiver` runs the
same steps through :class:`Verifier`, which holds the configuration once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

import msgspec

from .. import payload, signing
from ..errors import PermissionDenied
from ..payload import ReceivedUpdate

__all__ = [
    "Postback",
    "Verifier",
    "dedupe_key",
    "parse_and_verify",
    "redact_headers",
]


class Postback(msgspec.Struct, frozen=True):
    """One verified, readable postback and what identifies it.

    ``dedupe_key`` is ``id:<webhook-id>`` when the sender gave one (stable across its retries),
    otherwise ``sha256:<hex of the body>``: the broker sends no id, and a repeated body is a
    repeated update.
    """

    update: ReceivedUpdate
    body: bytes
    dedupe_key: str
    webhook_id: str | None = None

    @property
    def fields(self) -> dict[str, Any]:
        """The payload's fields by wire name (documented ones first, then extras)."""
        return self.update.fields

    @property
    def order_id(self) -> str:
        order_id = self.update.order_id
        assert order_id is not None  # parse() refuses a body without one
        return order_id

    @property
    def leg_name(self) -> str | None:
        leg = self.update.fields.get("legName")
        return leg if isinstance(leg, str) and leg else None

    @property
    def dhan_client_id(self) -> str | None:
        return self.update.dhan_client_id

    @property
    def order_status(self) -> str | None:
        return self.update.order_status

    @property
    def update_time(self) -> str | None:
        return self.update.update_time

    @property
    def filled_qty(self) -> int:
        return self.update.filled_qty


def dedupe_key(webhook_id: str | None, body: bytes) -> str:
    """The key that makes a repeated delivery of one update recognisable."""
    if webhook_id:
        return "id:" + webhook_id
    return "sha256:" + hashlib.sha256(body).hexdigest()


_SECRET_HEADER: Final = re.compile(r"auth|token|secret|key|cookie|password|session", re.I)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` fit to keep for inspection: anything that may carry a credential is masked."""
    return {
        name.lower(): ("[redacted]" if _SECRET_HEADER.search(name) else value)
        for name, value in headers.items()
    }


class Verifier:
    """The receiver's checks, configured once (secrets decoded and keyed into HMAC once) and
    run once per request."""

    __slots__ = ("_signatures", "allowed_client_ids", "secrets", "tolerance")

    def __init__(
        self,
        secret: str | Sequence[str] | None = None,
        *,
        allowed_client_ids: Collection[str] | None = None,
        tolerance: float = signing.DEFAULT_TOLERANCE,
    ) -> None:
        keys = [secret] if isinstance(secret, str) else list(secret or ())
        for key in keys:
            if not key:
                raise ValueError("an empty signing secret was given")
        self.secrets: tuple[str, ...] = tuple(keys)
        # refuses a malformed secret now, not on the first request
        self._signatures = signing.SignatureVerifier(keys, tolerance=tolerance) if keys else None
        self.allowed_client_ids = (
            frozenset(allowed_client_ids) if allowed_client_ids is not None else None
        )
        self.tolerance = tolerance

    def check(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> Postback:
        """Verify and read one request; ``headers`` must have lower-case names.

        Raises :class:`~dhan_postback.errors.SignatureError`,
        :class:`~dhan_postback.errors.UnreadablePayload` or
        :class:`~dhan_postback.errors.PermissionDenied`.
        """
        webhook_id = self.webhook_id(headers, body, now=now)
        update = payload.parse(body)
        self.check_client(update.dhan_client_id)
        return Postback(
            update=update,
            body=body,
            dedupe_key=dedupe_key(webhook_id, body),
            webhook_id=webhook_id,
        )

    def webhook_id(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> str | None:
        """The first check: the request's ``webhook-id``, once its signature is verified
        (when the receiver has a secret; raises :class:`~dhan_postback.errors.SignatureError`).
        """
        if self._signatures is not None:
            return self._signatures.verify(headers, body, now=now)
        return headers.get("webhook-id") or None

    def check_client(self, client_id: str | None) -> None:
        """The last check: raises :class:`~dhan_postback.errors.PermissionDenied` for a
        ``dhanClientId`` outside the allow-list."""
        allowed = self.allowed_client_ids
        if allowed is not None and client_id not in allowed:
            raise PermissionDenied("this receiver does not accept postbacks for that dhanClientId")


def parse_and_verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str | Sequence[str] | None = None,
    allowed_client_ids: Collection[str] | None = None,
    now: float | None = None,
    tolerance: float = signing.DEFAULT_TOLERANCE,
) -> Postback:
    """Verify and read one postback request in any framework (Flask, Django, plain WSGI).

    ``headers`` may use any letter case. Without ``secret`` the signature is not checked (the
    broker itself signs nothing); with it, a missing, wrong or stale signature raises
    :class:`~dhan_postback.errors.SignatureError`. An unreadable body raises
    :class:`~dhan_postback.errors.UnreadablePayload`; a ``dhanClientId`` outside
    ``allowed_client_ids`` raises :class:`~dhan_postback.errors.PermissionDenied`. Each error
    carries ``http_status`` and :func:`~dhan_postback.errors.error_body` gives the response body.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    verifier = Verifier(secret, allowed_client_ids=allowed_client_ids, tolerance=tolerance)
    return verifier.check(lowered, body, now=now)
