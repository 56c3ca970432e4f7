"""The API's answer shapes: what each encodes to, field by field, and what it leaves out."""

from __future__ import annotations

import msgspec

from dhan_postback.service import shapes
from dhan_postback.service.store import (
    Attempt,
    Delivery,
    DeliveryStatus,
    EndpointActivity,
    EndpointKind,
    EndpointRecord,
    RetiredSecret,
    Target,
)

_NOW = 1_736_912_700.0  # 2025-01-15 09:15:00 IST

DELIVERY = Delivery(
    id="msg_1",
    seq=7,
    dhan_client_id="1000000001",
    token_hash="h",
    target=Target.TOKEN,
    partner_id=None,
    url="https://example.test/hook",
    order_id="112111182045",
    payload=b'{"orderId":"112111182045"}',
    status=DeliveryStatus.PENDING,
    attempts=1,
    created_at=_NOW,
    next_attempt_at=_NOW + 5,
    last_status_code=503,
    last_error="HTTP 503",
)
ENDPOINT = EndpointRecord(
    id="ep_1",
    kind=EndpointKind.PARTNER,
    owner_id="acme",
    url="https://example.test/hook",
    signing_secret="whsec_new",
    created_at=_NOW,
    previous_secrets=(RetiredSecret("whsec_old", _NOW + 60),),
    secret_rotated_at=_NOW,
)


def _decoded(shape: msgspec.Struct) -> dict[str, object]:
    decoded = msgspec.json.decode(msgspec.json.encode(shape))
    assert isinstance(decoded, dict)
    return decoded


def test_a_listed_delivery_has_the_logs_fields_in_order_with_times_in_ist() -> None:
    shown = _decoded(shapes.Delivery.of(DELIVERY))
    assert list(shown) == [
        "deliveryId",
        "dhanClientId",
        "orderId",
        "status",
        "target",
        "partnerId",
        "postbackUrl",
        "attemptCount",
        "createdAt",
        "nextAttemptAt",
        "deliveredAt",
        "lastStatusCode",
        "lastError",
        "afterDead",
    ]
    assert shown["createdAt"] == "2025-01-15T09:15:00.000+05:30"
    assert shown["status"] == "pending" and shown["deliveredAt"] is None


def test_a_delivery_detail_is_the_listing_then_its_payload_and_attempts() -> None:
    attempt = Attempt("msg_1", 1, _NOW, 12.34567, 503, "HTTP 503", "busy")
    detail = _decoded(shapes.DeliveryDetail.with_attempts(DELIVERY, [attempt]))
    listing = _decoded(shapes.Delivery.of(DELIVERY))
    assert list(detail) == [*listing, "payload", "attempts"]
    assert detail["payload"] == {"orderId": "112111182045"}
    assert detail["attempts"] == [
        {
            "number": 1,
            "time": "2025-01-15T09:15:00.000+05:30",
            "statusCode": 503,
            "latencyMs": 12.346,
            "error": "HTTP 503",
            "responsePrefix": "busy",
        }
    ]


def test_an_endpoint_shows_its_secrets_only_when_asked() -> None:
    activity = EndpointActivity(backlog=3, last_attempt=None)
    hidden = _decoded(shapes.Endpoint.of(ENDPOINT, activity, breaker="open", now=_NOW))
    shown = _decoded(
        shapes.Endpoint.of(ENDPOINT, activity, breaker=None, now=_NOW, include_secret=True)
    )
    assert "signingSecret" not in hidden and "previousSecrets" not in hidden
    assert hidden["breaker"] == "open" and hidden["partnerId"] == "acme"
    assert shown["signingSecret"] == "whsec_new"
    assert shown["previousSecrets"] == ["whsec_old"]


def test_an_acceptance_carries_a_note_only_when_it_has_one() -> None:
    assert msgspec.json.encode(shapes.Accepted(delivery_ids=["msg_1"])) == (
        b'{"deliveryIds":["msg_1"]}'
    )
    noted = shapes.ReplayAccepted(delivery_ids=[], next_cursor="9", note="more")
    assert _decoded(noted) == {"deliveryIds": [], "nextCursor": "9", "note": "more"}
