"""The ingest rules: from a request body to the deliveries the outbox must commit.

Strict on purpose: the service is the sender, so whatever it accepts it must be able to send
as the broker's exact payload. Every refusal names the update (its index in an array) and
the field. Pure functions, so that the rules are tested without a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import msgspec

from .. import payload
from ..errors import BatchTooLarge, InvalidUpdate, PayloadError, PermissionDenied
from ..payload import OrderUpdate
from .http import decode_json
from .ids import new_delivery_ids
from .registry import Destination
from .store import NewDelivery, TokenRecord

__all__ = [
    "IDEMPOTENCY_KEY_MAX",
    "check_client",
    "decode_updates",
    "idempotency_key",
    "plan_deliveries",
]

IDEMPOTENCY_KEY_MAX = 255


def idempotency_key(header: str | None) -> str | None:
    """The ``Idempotency-Key`` of a request (None without one): 1 to 255 printable ASCII
    characters, so that it is stored and compared as the client sent it."""
    if header is None:
        return None
    if not 1 <= len(header) <= IDEMPOTENCY_KEY_MAX or not all(
        " " <= char <= "~" for char in header
    ):
        raise PayloadError(
            f"`Idempotency-Key` must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters"
        )
    return header


class _Checked(OrderUpdate, frozen=True, forbid_unknown_fields=True):
    """An :class:`OrderUpdate` read straight from JSON, unknown fields refused as it is read.

    Only for the one-pass reading in :func:`decode_updates`; what it accepts is exactly what
    :func:`~dhan_postback.payload.validate_strict` accepts (the same types and constraints,
    strict), and it is an OrderUpdate in every attribute. Compare updates by their fields:
    a struct of a subclass never equals one of its base.
    """


_decode_checked = msgspec.json.Decoder(_Checked | list[_Checked], strict=True).decode


def decode_updates(body: bytes, *, max_batch: int) -> tuple[list[OrderUpdate], bool]:
    """The updates of a body (one object, or an array of 1..``max_batch`` objects).

    Returns the updates and whether the body was an array (errors then name an index).

    A valid body, which is nearly every body, is read in one typed pass; anything that pass
    refuses is read again field by field (:func:`~dhan_postback.payload.validate_strict`),
    which finds the first thing wrong and names it (its index, its field), the same for
    either way in.
    """
    try:
        decoded = _decode_checked(body)
    except msgspec.MsgspecError:
        pass
    else:
        updates = cast("list[OrderUpdate]", decoded if isinstance(decoded, list) else [decoded])
        try:
            for update in updates:
                payload.check_limits(update)
        except InvalidUpdate:
            pass
        else:
            if isinstance(decoded, _Checked):
                return updates, False
            if 0 < len(updates) <= max_batch:
                return updates, True
    return _decode_one_by_one(body, max_batch=max_batch)


def _decode_one_by_one(body: bytes, *, max_batch: int) -> tuple[list[OrderUpdate], bool]:
    decoded: Any = decode_json(body)
    if isinstance(decoded, dict):
        return [_validate(decoded, None)], False
    if not isinstance(decoded, list):
        raise PayloadError(
            f"the body must be an update object or an array of them, not a JSON "
            f"{_json_type(decoded)}"
        )
    if not decoded:
        raise PayloadError("the array is empty: send at least one update")
    if len(decoded) > max_batch:
        raise BatchTooLarge(
            f"{len(decoded)} updates in one request; at most {max_batch} are accepted"
        )
    return [_validate(item, index) for index, item in enumerate(decoded)], True


def _validate(item: Any, index: int | None) -> OrderUpdate:
    try:
        return payload.validate_strict(item)
    except InvalidUpdate as exc:
        if index is None:
            raise
        raise InvalidUpdate(exc.message, field=exc.field, index=index) from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__


def check_client(updates: Sequence[OrderUpdate], token: TokenRecord, *, batch: bool) -> None:
    """Every update must be of the token's own client, as at the broker."""
    for index, update in enumerate(updates):
        if update.dhan_client_id != token.dhan_client_id:
            where = f"update [{index}]: " if batch else ""
            raise PermissionDenied(
                f"{where}`dhanClientId` is not the client this access token belongs to"
            )


def plan_deliveries(
    updates: Sequence[OrderUpdate],
    token: TokenRecord,
    destinations: Sequence[Destination],
    *,
    now: float,
) -> list[NewDelivery]:
    """One delivery per update and destination, in update order, ids made up front."""
    if not destinations:
        return []
    ids = iter(new_delivery_ids(len(updates) * len(destinations)))
    deliveries: list[NewDelivery] = []
    for update in updates:
        body = payload.dumps(update)
        for destination in destinations:
            deliveries.append(
                NewDelivery(
                    id=next(ids),
                    dhan_client_id=token.dhan_client_id,
                    token_hash=token.token_hash,
                    target=destination.target,
                    partner_id=destination.partner_id,
                    url=destination.url,
                    order_id=update.order_id,
                    payload=body,
                    created_at=now,
                )
            )
    return deliveries
