"""What the service API answers with: one msgspec struct per JSON shape.

Each answer is built from one of these structs, and ``GET /openapi.json`` describes them with
``msgspec.json.schema_components`` (:mod:`.openapi`), so a field added, renamed or retyped here
changes the answer and its documentation together: they can no longer drift apart, as a
document written a second time by hand did. Field names are the broker's camelCase
(``rename="camel"``); a field that may be left out of an answer defaults to ``UNSET``.

The list query of ``GET /v2/deliveries`` is a struct too (:class:`DeliveryListParameters`): its
fields are the query parameters the route takes and documents.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from . import store
from .breaker import BreakerState
from .http import to_iso
from .registry import IssuedToken
from .store import (
    DeliveryStatus,
    EndpointActivity,
    EndpointKind,
    EndpointRecord,
    PartnerRecord,
    Target,
    TokenRecord,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "RESPONSE_SHAPES",
    "Accepted",
    "Attempt",
    "Count",
    "Delivery",
    "DeliveryDetail",
    "DeliveryListParameters",
    "DeliveryPage",
    "Endpoint",
    "EndpointList",
    "Error",
    "Health",
    "LastAnswer",
    "PartnerCreated",
    "ReplayAccepted",
    "SecretRotated",
    "TokenCreated",
    "TokenInfo",
    "TokenList",
    "TokenRevoked",
]

Count = Annotated[int, Meta(ge=0)]


class _Shape(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """Camel-case names; a field at its default (only ever ``UNSET``) is left out."""


class Error(_Shape):
    """Every refusal, in the broker's shape. Only described here: the HTTP layers (the API's,
    the receiver's, the operations routes') write it with :func:`dhan_postback.errors.error_body`,
    which has no service dependency."""

    error_type: str
    error_code: str
    error_message: str


class Health(_Shape):
    status: Literal["ok"]


# Delivery log ------------------------------------------------------------------------------


class Delivery(_Shape):
    """A delivery as the log lists it (no payload)."""

    delivery_id: str
    dhan_client_id: str
    order_id: str
    status: DeliveryStatus
    target: Target
    partner_id: str | None
    postback_url: str
    attempt_count: Count
    created_at: str
    next_attempt_at: str | None
    delivered_at: str | None
    last_status_code: int | None
    last_error: str | None
    after_dead: bool

    @classmethod
    def of(cls, delivery: store.Delivery) -> Delivery:
        return cls(
            delivery_id=delivery.id,
            dhan_client_id=delivery.dhan_client_id,
            order_id=delivery.order_id,
            status=delivery.status,
            target=delivery.target,
            partner_id=delivery.partner_id,
            postback_url=delivery.url,
            attempt_count=delivery.attempts,
            created_at=to_iso(delivery.created_at),
            next_attempt_at=to_iso(delivery.next_attempt_at),
            delivered_at=to_iso(delivery.delivered_at),
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            after_dead=delivery.after_dead,
        )


class Attempt(_Shape):
    """One try at sending a delivery: when, what came back, how long it took."""

    number: int
    time: str
    status_code: int | None
    latency_ms: float
    error: str | None
    response_prefix: str | None

    @classmethod
    def of(cls, attempt: store.Attempt) -> Attempt:
        return cls(
            number=attempt.number,
            time=to_iso(attempt.started_at),
            status_code=attempt.status_code,
            latency_ms=round(attempt.latency_ms, 3),
            error=attempt.error,
            response_prefix=attempt.response_prefix,
        )


class DeliveryDetail(Delivery):
    """One delivery with the payload it sends and every attempt so far."""

    payload: dict[str, Any]
    attempts: list[Attempt]

    @classmethod
    def with_attempts(
        cls, delivery: store.Delivery, attempts: list[store.Attempt]
    ) -> DeliveryDetail:
        listed = msgspec.structs.asdict(Delivery.of(delivery))
        return cls(
            **listed,
            payload=msgspec.json.decode(delivery.payload),  # written by payload.dumps
            attempts=[Attempt.of(attempt) for attempt in attempts],
        )


class DeliveryPage(_Shape):
    deliveries: list[Delivery]
    next_cursor: str | None


DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
_TIME = "ISO 8601 (no offset means IST) or epoch seconds"


class DeliveryListParameters(_Shape):
    """The query parameters ``GET /v2/deliveries`` takes (each optional), and what each means."""

    status: Annotated[DeliveryStatus | None, Meta(description="Filter.")] = None
    order_id: Annotated[str | None, Meta(description="Only this order's deliveries.")] = None
    dhan_client_id: Annotated[
        str | None, Meta(description="Admin only: one client's deliveries.")
    ] = None
    target: Annotated[Target | None, Meta(description="Admin only.")] = None
    partner_id: Annotated[str | None, Meta(description="Admin only: one partner's deliveries.")] = (
        None
    )
    since: Annotated[str | None, Meta(description=f"Created at or after: {_TIME}.")] = None
    until: Annotated[str | None, Meta(description=f"Created before: {_TIME}.")] = None
    cursor: Annotated[str | None, Meta(description="nextCursor of the previous page.")] = None
    limit: Annotated[
        Annotated[int, Meta(ge=1, le=MAX_PAGE_SIZE)] | None,
        Meta(description=f"Page size ({DEFAULT_PAGE_SIZE})."),
    ] = None
    order: Annotated[Literal["newest", "oldest"] | None, Meta(description="Newest first.")] = None


class Accepted(_Shape):
    """Updates or a delivery taken: the deliveries they made (a note when there are none)."""

    delivery_ids: list[str]
    note: str | UnsetType = UNSET


class ReplayAccepted(_Shape):
    """Deliveries sent again; ``nextCursor`` (and a note) when more matched than one call takes."""

    delivery_ids: list[str]
    next_cursor: str | None
    note: str | UnsetType = UNSET


# Registry ----------------------------------------------------------------------------------


class TokenCreated(_Shape):
    """A new access token: shown once, never again (the store keeps only its hash)."""

    access_token: str
    dhan_client_id: str
    postback_url: str | None
    partner_id: str | None
    endpoint_id: str | None
    signing_secret: str | None
    expires_at: str

    @classmethod
    def of(cls, issued: IssuedToken) -> TokenCreated:
        record, endpoint = issued.record, issued.endpoint
        return cls(
            access_token=issued.access_token,
            dhan_client_id=record.dhan_client_id,
            postback_url=record.postback_url,
            partner_id=record.partner_id,
            endpoint_id=None if endpoint is None else endpoint.id,
            signing_secret=None if endpoint is None else endpoint.signing_secret,
            expires_at=to_iso(record.expires_at),
        )


class TokenInfo(_Shape):
    """An access token as ``GET /v2/access-tokens`` lists it: never the token itself."""

    token_id: str
    dhan_client_id: str
    endpoint_id: str | None
    postback_url: str | None
    partner_id: str | None
    created_at: str
    expires_at: str
    revoked_at: str | None
    status: Literal["active", "expired", "revoked"]

    @classmethod
    def of(cls, token: TokenRecord, *, now: float) -> TokenInfo:
        if token.revoked_at is not None:
            status: Literal["active", "expired", "revoked"] = "revoked"
        elif token.is_active(now):
            status = "active"
        else:
            status = "expired"
        return cls(
            token_id=token.token_id,
            dhan_client_id=token.dhan_client_id,
            endpoint_id=token.endpoint_id,
            postback_url=token.postback_url,
            partner_id=token.partner_id,
            created_at=to_iso(token.created_at),
            expires_at=to_iso(token.expires_at),
            revoked_at=to_iso(token.revoked_at),
            status=status,
        )


class TokenList(_Shape):
    access_tokens: list[TokenInfo]


class TokenRevoked(_Shape):
    dhan_client_id: str
    status: Literal["revoked"]
    revoked_at: str

    @classmethod
    def of(cls, token: TokenRecord) -> TokenRevoked:
        assert token.revoked_at is not None, "a revoked token has its revocation time"
        revoked_at = to_iso(token.revoked_at)
        return cls(dhan_client_id=token.dhan_client_id, status="revoked", revoked_at=revoked_at)


class PartnerCreated(_Shape):
    partner_id: str
    postback_url: str
    endpoint_id: str
    signing_secret: str

    @classmethod
    def of(cls, partner: PartnerRecord, endpoint: EndpointRecord) -> PartnerCreated:
        return cls(
            partner_id=partner.partner_id,
            postback_url=partner.postback_url,
            endpoint_id=endpoint.id,
            signing_secret=endpoint.signing_secret,
        )


class LastAnswer(_Shape):
    """The newest attempt at an endpoint: which delivery, when, and what came back."""

    delivery_id: str
    time: str
    status_code: int | None
    error: str | None


class Endpoint(_Shape):
    """An endpoint as ``GET /v2/endpoints`` shows it; its secrets only when asked for."""

    endpoint_id: str
    postback_url: str
    dhan_client_id: str | None
    partner_id: str | None
    created_at: str
    paused: bool
    breaker: BreakerState | None
    backlog: Count
    last_answer: LastAnswer | None
    secret_rotated_at: str | None
    previous_secrets_until: str | None
    signing_secret: str | UnsetType = UNSET
    previous_secrets: list[str] | UnsetType = UNSET

    @classmethod
    def of(
        cls,
        endpoint: EndpointRecord,
        activity: EndpointActivity,
        *,
        breaker: str | None,
        now: float,
        include_secret: bool = False,
    ) -> Endpoint:
        last = activity.last_attempt
        client = endpoint.kind is EndpointKind.CLIENT
        return cls(
            endpoint_id=endpoint.id,
            postback_url=endpoint.url,
            dhan_client_id=endpoint.owner_id if client else None,
            partner_id=None if client else endpoint.owner_id,
            created_at=to_iso(endpoint.created_at),
            paused=endpoint.paused,
            breaker=None if breaker is None else BreakerState(breaker),
            backlog=activity.backlog,
            last_answer=None
            if last is None
            else LastAnswer(
                delivery_id=last.delivery_id,
                time=to_iso(last.started_at),
                status_code=last.status_code,
                error=last.error,
            ),
            secret_rotated_at=to_iso(endpoint.secret_rotated_at),
            previous_secrets_until=to_iso(endpoint.grace_until(now)),
            signing_secret=endpoint.signing_secret if include_secret else UNSET,
            previous_secrets=list(endpoint.grace_secrets(now)) if include_secret else UNSET,
        )


class EndpointList(_Shape):
    endpoints: list[Endpoint]


class SecretRotated(_Shape):
    endpoint_id: str
    postback_url: str
    signing_secret: str
    secret_rotated_at: str
    previous_secrets_until: str | None

    @classmethod
    def of(cls, endpoint: EndpointRecord, *, now: float) -> SecretRotated:
        assert endpoint.secret_rotated_at is not None, "a rotated endpoint has a rotation time"
        return cls(
            endpoint_id=endpoint.id,
            postback_url=endpoint.url,
            signing_secret=endpoint.signing_secret,
            secret_rotated_at=to_iso(endpoint.secret_rotated_at),
            previous_secrets_until=to_iso(endpoint.grace_until(now)),
        )


RESPONSE_SHAPES: tuple[type[_Shape], ...] = (
    Error,
    TokenCreated,
    TokenInfo,
    TokenList,
    Endpoint,
    EndpointList,
    SecretRotated,
    TokenRevoked,
    PartnerCreated,
    Accepted,
    ReplayAccepted,
    Delivery,
    Attempt,
    DeliveryDetail,
    DeliveryPage,
    Health,
)
"""Every answer's shape, named in ``/openapi.json`` by its class name."""
