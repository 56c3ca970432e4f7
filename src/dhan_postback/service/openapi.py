"""The OpenAPI 3.1 description of the service API, served at ``GET /openapi.json``.

Built from the same types the service validates with (the msgspec ``OrderUpdate`` and the
pydantic admin bodies) and answers with (the msgspec structs of :mod:`.shapes`), so that the
document cannot drift from the code's rules; the fuzz test checks every response against it.
docs/api.md explains the same API in prose.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from .._version import __version__
from ..jsondepth import MAX_DEPTH
from ..payload import MAX_UPDATE_BYTES, OrderUpdate
from .models import PartnerRequest, ReplayRequest, TokenRequest
from .shapes import RESPONSE_SHAPES, DeliveryListParameters

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


def _parameter(
    name: str, where: str, schema: dict[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required,
        "schema": schema,
        "description": description,
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return _parameter(name, "query", schema, description)


def _path_id(name: str, description: str) -> dict[str, Any]:
    return _parameter(name, "path", {"type": "string"}, description, required=True)


_DELIVERY_ID = _path_id("delivery_id", "The delivery's id (msg_...), also its webhook-id.")
_ENDPOINT_ID = _path_id("endpoint_id", "The endpoint's id (ep_...).")
_INCLUDE_SECRET = _query(
    "includeSecret",
    {"type": "string", "enum": ["true", "false"]},
    "true: also show the signing secret (and the retired ones still signing).",
)
_IDEMPOTENCY_KEY = _parameter(
    "Idempotency-Key",
    "header",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    "Send the request again with the same key and body to get its first answer again, "
    "nothing stored twice (within the idempotency window); the same key with another body is "
    "a 409.",
)


def _response_schemas() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The answers' schemas, from the structs that build them (:mod:`.shapes`), and the list
    query's parameters, from its struct's fields."""
    shapes = (*RESPONSE_SHAPES, DeliveryListParameters)
    (_, components) = msgspec.json.schema_components(shapes, ref_template=_REF)
    listing = components.pop(DeliveryListParameters.__name__)
    parameters = []
    for name, field in listing["properties"].items():
        # A query parameter is absent rather than null: keep the one non-null choice.
        (schema,) = (choice for choice in field["anyOf"] if choice != {"type": "null"})
        parameters.append(_query(name, schema, field["description"]))
    return components, parameters


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
    responses, list_parameters = _response_schemas()
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
                "parameters": [_path_id("token", "The access token itself.")],
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
            "schemas": {**_update_schemas(), **_body_schemas(), **responses},
        },
    }
