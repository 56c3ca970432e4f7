"""Standard Webhooks signatures: how a receiver knows a postback came from us, unchanged.

The sender adds three headers to every request::

    webhook-id: msg_2bV0...            stable across every retry of one delivery
    webhook-timestamp: 1732550000      seconds since the epoch, when this attempt was signed
    webhook-signature: v1,<base64>     HMAC-SHA256 over "id.timestamp.body"

The key is the token's signing secret, ``whsec_`` followed by base64 of random bytes. Several
space-separated signatures may be sent (key rotation); a receiver accepts the request when any
one of them matches any of its secrets. The broker itself signs nothing, so a receiver that
ignores these headers still sees exactly the broker's body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Final

from .errors import SignatureError

__all__ = [
    "DEFAULT_TOLERANCE",
    "SECRET_PREFIX",
    "SignatureVerifier",
    "Signer",
    "generate_secret",
    "sign",
    "verify",
]

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300.0
"""Seconds a signed timestamp may differ from the receiver's clock (either way)."""


def generate_secret() -> str:
    """A new signing secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    body = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a signing secret is 'whsec_' followed by base64") from None


_BLOCK: Final = hashlib.sha256().block_size
_INNER_PAD: Final = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD: Final = bytes(byte ^ 0x5C for byte in range(256))


class Signer:
    """Signs with one secret; the key is decoded and keyed into HMAC once, not per request.

    HMAC-SHA256 (RFC 2104) hashes the key, padded two ways, ahead of the message and of the
    inner digest. Those two padded blocks are hashed here once; each message then starts from
    copies of the two states, which costs a fraction of keying ``hmac`` afresh (or copying an
    ``hmac`` object through its Python wrapper): what a receiver checking thousands of
    postbacks a second, and a dispatcher signing as many, both want.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: str) -> None:
        key = _key(secret)
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_INNER_PAD))
        self._outer = hashlib.sha256(key.translate(_OUTER_PAD))

    def digest(self, signed_prefix: bytes, body: bytes) -> bytes:
        """HMAC-SHA256 of ``signed_prefix`` (``b"<id>.<timestamp>."``) followed by ``body``."""
        inner = self._inner.copy()
        inner.update(signed_prefix)
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The ``webhook-signature`` header value for one attempt."""
        digest = self.digest(f"{msg_id}.{timestamp}.".encode(), body)
        return "v1," + base64.b64encode(digest).decode()

    def headers(self, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The three Standard Webhooks headers for one attempt."""
        ts = int(time.time()) if timestamp is None else timestamp
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": self.signature(msg_id, ts, body),
        }


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for ``body`` (see :class:`Signer` for repeated use)."""
    return Signer(secret).signature(msg_id, timestamp, body)


def verify(
    secrets_: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> str:
    """Check a request's signature; return its ``webhook-id`` or raise :class:`SignatureError`.

    ``headers`` is looked up in lower case, so pass a case-insensitive mapping or lower-cased
    keys. Every comparison is constant-time. To check many requests against the same secrets,
    build a :class:`SignatureVerifier` once.
    """
    return SignatureVerifier(secrets_, tolerance=tolerance).verify(headers, body, now=now)


class SignatureVerifier:
    """:func:`verify` with its secrets decoded and keyed once (a receiver's hot path)."""

    __slots__ = ("_signers", "tolerance")

    def __init__(self, secrets_: str | Sequence[str], *, tolerance: float = DEFAULT_TOLERANCE):
        keys = [secrets_] if isinstance(secrets_, str) else list(secrets_)
        self._signers = tuple(Signer(secret) for secret in keys)
        self.tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> str:
        """See :func:`verify`."""
        msg_id = headers.get("webhook-id")
        stamp = headers.get("webhook-timestamp")
        header = headers.get("webhook-signature")
        if not msg_id or not stamp or not header:
            raise SignatureError(
                "missing webhook-id, webhook-timestamp or webhook-signature header"
            )
        try:
            timestamp = int(stamp)
        except ValueError:
            raise SignatureError("webhook-timestamp is not an integer") from None
        current = time.time() if now is None else now
        if abs(current - timestamp) > self.tolerance:
            raise SignatureError("webhook-timestamp is outside the allowed tolerance")
        offered = [part.encode() for part in header.split() if part.startswith("v1,")]
        if not offered:
            raise SignatureError("webhook-signature has no v1 signature")
        signed_prefix = f"{msg_id}.{timestamp}.".encode()
        matched = False
        for signer in self._signers:
            expected = b"v1," + binascii.b2a_base64(
                signer.digest(signed_prefix, body), newline=False
            )
            for candidate in offered:
                # No early exit: every pair is compared, so timing says nothing about which
                # matched.
                matched |= hmac.compare_digest(expected, candidate)
        if not matched:
            raise SignatureError("no signature matches")
        return msg_id
