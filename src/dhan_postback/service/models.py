"""The admin API's request bodies (pydantic) and the JSON shapes of the delivery log.

Field names are the broker's camelCase. Bodies refuse unknown fields and wrong types, and a
refusal names the field. The ingest hot path does not come here: it uses msgspec.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import PayloadError, UnreadablePayload
from ..jsondepth import check_depth
from .http import to_iso
from .store import (
    Attempt,
    Delivery,
    DeliveryStatus,
    EndpointActivity,
    EndpointKind,
    EndpointRecord,
    TokenRecord,
)

__all__ = [
    "ClientId",
    "PartnerId",
    "PartnerRequest",
    "ReplayRequest",
    "TimeValue",
    "TokenRequest",
    "Url",
    "attempt_json",
    "delivery_json",
    "endpoint_json",
    "parse_body",
    "payload_json",
    "token_json",
]

ClientId = Annotated[str, Field(min_length=1, max_length=64)]
PartnerId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
Url = Annotated[str, Field(min_length=1, max_length=2048)]
M = TypeVar("M", bound=BaseModel)
TimeValue = Annotated[str | float, Field(union_mode="left_to_right")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TokenRequest(_Body):
    """``POST /v2/access-tokens``: a token for a client, with its Postback URL."""

    dhanClientId: ClientId
    postbackUrl: Url | None = None
    partnerId: PartnerId | None = None


class PartnerRequest(_Body):
    """``POST /v2/partners``: a partner whose URL gets every update of its tokens."""

    partnerId: PartnerId
    postbackUrl: Url


class ReplayRequest(_Body):
    """``POST /v2/deliveries/replay``: which deliveries to send again (at least one filter)."""

    status: DeliveryStatus | None = None
    orderId: ClientId | None = None
    dhanClientId: ClientId | None = None
    since: TimeValue | None = None
    until: TimeValue | None = None
    cursor: Annotated[str, Field(pattern=r"^[0-9]{1,18}$")] | None = None
    """The ``nextCursor`` of the previous answer, when one call did not replay them all."""


def parse_body(model: type[M], body: bytes) -> M:
    """A request body as ``model``, or a 400 naming the first wrong field."""
    check_depth(body)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        if error["type"] == "json_invalid":
            raise UnreadablePayload("the body is not valid JSON") from None
        if not error["loc"]:
            raise PayloadError("the body must be a JSON object") from None
        field = error["loc"][0]  # the body's own field, not the union member that failed
        raise PayloadError(f"`{field}`: {error['msg']}") from None


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """A delivery as the log lists it (no payload)."""
    return {
        "deliveryId": delivery.id,
        "dhanClientId": delivery.dhan_client_id,
        "orderId": delivery.order_id,
        "status": delivery.status.value,
        "target": delivery.target.value,
        "partnerId": delivery.partner_id,
        "postbackUrl": delivery.url,
        "attemptCount": delivery.attempts,
        "createdAt": to_iso(delivery.created_at),
        "nextAttemptAt": to_iso(delivery.next_attempt_at),
        "deliveredAt": to_iso(delivery.delivered_at),
        "lastStatusCode": delivery.last_status_code,
        "lastError": delivery.last_error,
        "afterDead": delivery.after_dead,
    }


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "time": to_iso(attempt.started_at),
        "statusCode": attempt.status_code,
        "latencyMs": round(attempt.latency_ms, 3),
        "error": attempt.error,
        "responsePrefix": attempt.response_prefix,
    }


def payload_json(body: bytes) -> Any:
    """The stored payload bytes as a JSON value (they were written by payload.dumps)."""
    return msgspec.json.decode(body)


def endpoint_json(
    endpoint: EndpointRecord,
    activity: EndpointActivity,
    *,
    breaker: str | None,
    now: float,
    include_secret: bool = False,
) -> dict[str, Any]:
    """An endpoint as ``GET /v2/endpoints`` shows it; its secrets only when asked for."""
    last = activity.last_attempt
    shown: dict[str, Any] = {
        "endpointId": endpoint.id,
        "postbackUrl": endpoint.url,
        "dhanClientId": endpoint.owner_id if endpoint.kind is EndpointKind.CLIENT else None,
        "partnerId": endpoint.owner_id if endpoint.kind is EndpointKind.PARTNER else None,
        "createdAt": to_iso(endpoint.created_at),
        "paused": endpoint.paused,
        "breaker": breaker,
        "backlog": activity.backlog,
        "lastAnswer": None
        if last is None
        else {
            "deliveryId": last.delivery_id,
            "time": to_iso(last.started_at),
            "statusCode": last.status_code,
            "error": last.error,
        },
        "secretRotatedAt": to_iso(endpoint.secret_rotated_at),
        "previousSecretsUntil": to_iso(endpoint.grace_until(now)),
    }
    if include_secret:
        shown["signingSecret"] = endpoint.signing_secret
        shown["previousSecrets"] = list(endpoint.grace_secrets(now))
    return shown


def token_json(token: TokenRecord, *, now: float) -> dict[str, Any]:
    """An access token as ``GET /v2/access-tokens`` lists it: never the token itself."""
    if token.revoked_at is not None:
        status = "revoked"
    elif token.is_active(now):
        status = "active"
    else:
        status = "expired"
    return {
        "tokenId": token.token_id,
        "dhanClientId": token.dhan_client_id,
        "endpointId": token.endpoint_id,
        "postbackUrl": token.postback_url,
        "partnerId": token.partner_id,
        "createdAt": to_iso(token.created_at),
        "expiresAt": to_iso(token.expires_at),
        "revokedAt": to_iso(token.revoked_at),
        "status": status,
    }
