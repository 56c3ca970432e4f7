"""The OpenAPI 3.1 description of the service API, served at ``GET /openapi.json``.

Built from the same types the service validates with (the msgspec ``OrderUpdate`` and the
pydantic admin bodies), so that the document cannot drift from the code's rules; the fuzz
test checks every response against it. docs/api.md explains the same API in prose.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from .._version import __version__
from ..jsondepth import MAX_DEPTH
from ..payload import MAX_UPDATE_BYTES, OrderUpdate
from .models import PartnerRequest, ReplayRequest, TokenRequest

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{name}"

_ERROR_MEANINGS = {
    400: (
        "Malformed or too deeply nested JSON, a wrong field or a value past its limit (named "
        "in errorMessage), or a batch too large."
    ),
    401: "Missing, unknown, expired or revoked access token; or a wrong admin key.",
    403: "The update's dhanClientId is not the access token's client.",
    404: "No such delivery (or not this client's), token or endpoint.",
    409: "The delivery is being sent right now.",
    413: "The body is larger than the configured limit.",
    415: "The body is declared as something other than JSON.",
    422: "The Postback URL is refused; errorMessage names the reason.",
    429: "Too many wrong credentials from this address: wait Retry-After seconds.",
    503: "The store does not answer.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(success: int, schema: str, *errors: int) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(success): {"description": "Success.", "content": _json(_ref(schema))}
    }
    throttled = (429,) if 401 in errors else ()
    for status in (*errors, *throttled, 405):
        responses[str(status)] = {
            "description": _ERROR_MEANINGS.get(status, "Method not allowed."),
            "content": _json(_ref("Error")),
        }
    return responses


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": _json(_ref(schema))}


_ADMIN: list[dict[str, list[str]]] = [{"adminKey": []}]
_EITHER: list[dict[str, list[str]]] = [{"accessToken": []}, {"adminKey": []}]
_DELIVERY_ID = {
    "name": "delivery_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The delivery's id (msg_...), also its webhook-id.",
}
_ENDPOINT_ID = {
    "name": "endpoint_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The endpoint's id (ep_...).",
}
_INCLUDE_SECRET = {
    "name": "includeSecret",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["true", "false"]},
    "description": "true: also show the signing secret (and the retired ones still signing).",
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    "description": "Send the request again with the same key and body to get its first "
    "answer again, nothing stored twice (within the idempotency window); the same key with "
    "another body is a 409.",
}
_TIME = {"type": "string", "description": "ISO 8601 (no offset means IST) or epoch seconds."}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }


def _own_schemas() -> dict[str, Any]:
    text, time_or_null = {"type": "string"}, _nullable({"type": "string"})
    delivery = _object(
        {
            "deliveryId": text,
            "dhanClientId": text,
            "orderId": text,
            "status": {"type": "string", "enum": ["pending", "delivered", "dead"]},
            "target": {"type": "string", "enum": ["token", "partner"]},
            "partnerId": _nullable(text),
            "postbackUrl": text,
            "attemptCount": {"type": "integer", "minimum": 0},
            "createdAt": text,
            "nextAttemptAt": time_or_null,
            "deliveredAt": time_or_null,
            "lastStatusCode": _nullable({"type": "integer"}),
            "lastError": _nullable(text),
            "afterDead": {"type": "boolean"},
        }
    )
    return {
        "Error": _object({"errorType": text, "errorCode": text, "errorMessage": text}),
        "TokenCreated": _object(
            {
                "accessToken": text,
                "dhanClientId": text,
                "postbackUrl": _nullable(text),
                "partnerId": _nullable(text),
                "endpointId": _nullable(text),
                "signingSecret": _nullable(text),
                "expiresAt": text,
            }
        ),
        "TokenInfo": _object(
            {
                "tokenId": text,
                "dhanClientId": text,
                "endpointId": _nullable(text),
                "postbackUrl": _nullable(text),
                "partnerId": _nullable(text),
                "createdAt": text,
                "expiresAt": text,
                "revokedAt": time_or_null,
                "status": {"type": "string", "enum": ["active", "expired", "revoked"]},
            }
        ),
        "TokenList": _object({"accessTokens": {"type": "array", "items": _ref("TokenInfo")}}),
        "Endpoint": _object(
            {
                "endpointId": text,
                "postbackUrl": text,
                "dhanClientId": _nullable(text),
                "partnerId": _nullable(text),
                "createdAt": text,
                "paused": {"type": "boolean"},
                "breaker": _nullable({"type": "string", "enum": ["closed", "open", "half_open"]}),
                "backlog": {"type": "integer", "minimum": 0},
                "lastAnswer": _nullable(
                    _object(
                        {
                            "deliveryId": text,
                            "time": text,
                            "statusCode": _nullable({"type": "integer"}),
                            "error": _nullable(text),
                        }
                    )
                ),
                "secretRotatedAt": time_or_null,
                "previousSecretsUntil": time_or_null,
                "signingSecret": text,
                "previousSecrets": {"type": "array", "items": text},
            },
            optional=("signingSecret", "previousSecrets"),
        ),
        "EndpointList": _object({"endpoints": {"type": "array", "items": _ref("Endpoint")}}),
        "SecretRotated": _object(
            {
                "endpointId": text,
                "postbackUrl": text,
                "signingSecret": text,
                "secretRotatedAt": text,
                "previousSecretsUntil": time_or_null,
            }
        ),
        "TokenRevoked": _object(
            {"dhanClientId": text, "status": {"const": "revoked"}, "revokedAt": text}
        ),
        "PartnerCreated": _object(
            {"partnerId": text, "postbackUrl": text, "endpointId": text, "signingSecret": text}
        ),
        "Accepted": _object(
            {"deliveryIds": {"type": "array", "items": text}, "note": text}, optional=("note",)
        ),
        "ReplayAccepted": _object(
            {
                "deliveryIds": {"type": "array", "items": text},
                "nextCursor": _nullable(text),
                "note": text,
            },
            optional=("note",),
        ),
        "Delivery": delivery,
        "Attempt": _object(
            {
                "number": {"type": "integer"},
                "time": text,
                "statusCode": _nullable({"type": "integer"}),
                "latencyMs": {"type": "number"},
                "error": _nullable(text),
                "responsePrefix": _nullable(text),
            }
        ),
        "DeliveryDetail": {
            "allOf": [
                _ref("Delivery"),
                _object(
                    {
                        "payload": {"type": "object"},
                        "attempts": {"type": "array", "items": _ref("Attempt")},
                    }
                ),
            ]
        },
        "DeliveryPage": _object(
            {
                "deliveries": {"type": "array", "items": _ref("Delivery")},
                "nextCursor": _nullable(text),
            }
        ),
        "Health": _object({"status": {"const": "ok"}}),
    }


def _update_schemas() -> dict[str, Any]:
    (_, components) = msgspec.json.schema_components([OrderUpdate], ref_template=_REF)
    components["OrderUpdate"]["additionalProperties"] = False
    components["OrderUpdate"]["description"] = (
        "One order update: the broker's 29 postback fields, in its order. Unknown fields, "
        "unknown enum values, wrong types and malformed times are refused, and so is what a "
        "receiver could not hold: integers above 2^53 - 1, strings past their maxLength, and "
        f"an update larger than {MAX_UPDATE_BYTES} bytes as sent (compact UTF-8 JSON). A body "
        f"nested deeper than {MAX_DEPTH} levels is refused before it is decoded."
    )
    components["OrderUpdates"] = {
        "oneOf": [
            _ref("OrderUpdate"),
            {"type": "array", "items": _ref("OrderUpdate"), "minItems": 1, "maxItems": 1000},
        ]
    }
    return dict(components)


def _body_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (TokenRequest, PartnerRequest, ReplayRequest):
        schema = model.model_json_schema(ref_template=_REF.replace("{name}", "{model}"))
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The whole document (built once)."""
    list_parameters = [
        _query("status", {"type": "string", "enum": ["pending", "delivered", "dead"]}, "Filter."),
        _query("orderId", {"type": "string"}, "Only this order's deliveries."),
        _query("dhanClientId", {"type": "string"}, "Admin only: one client's deliveries."),
        _query("target", {"type": "string", "enum": ["token", "partner"]}, "Admin only."),
        _query("partnerId", {"type": "string"}, "Admin only: one partner's deliveries."),
        _query("since", _TIME, "Created at or after."),
        _query("until", _TIME, "Created before."),
        _query("cursor", {"type": "string"}, "nextCursor of the previous page."),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (100)."),
        _query("order", {"type": "string", "enum": ["newest", "oldest"]}, "Newest first."),
    ]
    paths: dict[str, Any] = {
        "/v2/access-tokens": {
            "post": {
                "summary": "Generate an access token with its Postback URL",
                "security": _ADMIN,
                "requestBody": _body("TokenRequest"),
                "responses": _responses(201, "TokenCreated", 400, 401, 413, 415, 422),
            },
            "get": {
                "summary": "List access tokens by a non-secret id (never the tokens)",
                "security": _ADMIN,
                "parameters": [_query("dhanClientId", {"type": "string"}, "One client's.")],
                "responses": _responses(200, "TokenList", 400, 401),
            },
        },
        "/v2/endpoints": {
            "get": {
                "summary": "List endpoints: URL, owner, backlog, breaker, last answer",
                "security": _ADMIN,
                "parameters": [
                    _query("dhanClientId", {"type": "string"}, "One client's endpoints."),
                    _query("partnerId", {"type": "string"}, "One partner's endpoints."),
                    _INCLUDE_SECRET,
                ],
                "responses": _responses(200, "EndpointList", 400, 401),
            }
        },
        "/v2/endpoints/{endpoint_id}": {
            "get": {
                "summary": "One endpoint",
                "security": _ADMIN,
                "parameters": [_ENDPOINT_ID, _INCLUDE_SECRET],
                "responses": _responses(200, "Endpoint", 400, 401, 404),
            }
        },
        "/v2/endpoints/{endpoint_id}/rotate-secret": {
            "post": {
                "summary": "A new signing secret; the old one signs beside it for a grace period",
                "security": _ADMIN,
                "parameters": [_ENDPOINT_ID],
                "responses": _responses(200, "SecretRotated", 401, 404),
            }
        },
        "/v2/endpoints/{endpoint_id}/pause": {
            "post": {
                "summary": "Send nothing to an endpoint until resumed (deliveries wait, in order)",
                "security": _ADMIN,
                "parameters": [_ENDPOINT_ID],
                "responses": _responses(200, "Endpoint", 401, 404),
            }
        },
        "/v2/endpoints/{endpoint_id}/resume": {
            "post": {
                "summary": "Send to a paused endpoint again: what waited goes out in order",
                "security": _ADMIN,
                "parameters": [_ENDPOINT_ID],
                "responses": _responses(200, "Endpoint", 401, 404),
            }
        },
        "/v2/access-tokens/{token}": {
            "delete": {
                "summary": "Revoke an access token (its deliveries are kept and still sent)",
                "security": _ADMIN,
                "parameters": [
                    {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": _responses(200, "TokenRevoked", 401, 404),
            }
        },
        "/v2/partners": {
            "post": {
                "summary": "Create or replace a partner and its Postback URL",
                "security": _ADMIN,
                "requestBody": _body("PartnerRequest"),
                "responses": _responses(201, "PartnerCreated", 400, 401, 413, 415, 422),
            }
        },
        "/v2/order-updates": {
            "post": {
                "summary": "Hand over order updates; 202 once they are committed",
                "security": [{"accessToken": []}],
                "parameters": [_IDEMPOTENCY_KEY],
                "requestBody": _body("OrderUpdates"),
                "responses": _responses(202, "Accepted", 400, 401, 403, 409, 413, 415, 503),
            }
        },
        "/v2/deliveries": {
            "get": {
                "summary": "List deliveries, newest first, with cursor paging",
                "security": _EITHER,
                "parameters": list_parameters,
                "responses": _responses(200, "DeliveryPage", 400, 401, 403),
            }
        },
        "/v2/deliveries/replay": {
            "post": {
                "summary": "Send again every delivery matching a filter",
                "security": _EITHER,
                "description": "At most --max-replay (default 10,000) deliveries per call, "
                "oldest first; when more match, nextCursor is set: send the same body with "
                '"cursor" set to it for the next ones.',
                "requestBody": _body("ReplayRequest"),
                "responses": _responses(202, "ReplayAccepted", 400, 401, 403, 413, 415),
            }
        },
        "/v2/deliveries/{delivery_id}": {
            "get": {
                "summary": "One delivery with its payload and every attempt",
                "security": _EITHER,
                "parameters": [_DELIVERY_ID],
                "responses": _responses(200, "DeliveryDetail", 401, 404),
            }
        },
        "/v2/deliveries/{delivery_id}/replay": {
            "post": {
                "summary": "Send one delivery again (a fresh retry round)",
                "security": _EITHER,
                "parameters": [_DELIVERY_ID],
                "responses": _responses(202, "Accepted", 401, 404, 409),
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness, with a store check",
                "security": [],
                "responses": _responses(200, "Health", 503),
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format)",
                "description": "Open on a loopback bind; otherwise only with the metrics "
                "token (--metrics-token) as a bearer token.",
                "security": [{}, {"metricsToken": []}],
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dhan-postback service",
            "version": __version__,
            "description": "Hands DhanHQ v2 order updates to a durable outbox and delivers "
            "them as postbacks. Errors use the broker's shape {errorType, errorCode, "
            "errorMessage}. See docs/api.md.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "accessToken": {"type": "apiKey", "in": "header", "name": "access-token"},
                "adminKey": {"type": "apiKey", "in": "header", "name": "admin-key"},
                "metricsToken": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {**_update_schemas(), **_body_schemas(), **_own_schemas()},
        },
    }
