"""The admin API's request bodies (pydantic); the answers' shapes are in :mod:`.shapes`.

Field names are the broker's camelCase. Bodies refuse unknown fields and wrong types, and a
refusal names the field. The ingest hot path does not come here: it uses msgspec.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import PayloadError, UnreadablePayload
from ..jsondepth import check_depth
from .store import DeliveryStatus

__all__ = [
    "ClientId",
    "PartnerId",
    "PartnerRequest",
    "ReplayRequest",
    "TimeValue",
    "TokenRequest",
    "Url",
    "parse_body",
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
