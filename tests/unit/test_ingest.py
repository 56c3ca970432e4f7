from __future__ import annotations

import json
from typing import Any

import pytest

from dhan_postback import payload
from dhan_postback.errors import BatchTooLarge, InvalidUpdate, PayloadError, PermissionDenied
from dhan_postback.service.ingest import (
    check_client,
    decode_updates,
    idempotency_key,
    plan_deliveries,
)
from dhan_postback.service.registry import Destination
from dhan_postback.service.store import Target, TokenRecord
from tests.helpers.updates import update

TOKEN = TokenRecord("h" * 64, "1000000003", "https://a.example/", "acme", 0, 1e12)


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_one_object_is_one_update_and_not_a_batch() -> None:
    updates, batch = decode_updates(body(update()), max_batch=10)
    assert (len(updates), batch) == (1, False)
    assert updates[0].order_id == update()["orderId"]


def test_an_array_is_a_batch_in_its_order() -> None:
    updates, batch = decode_updates(body([update(order_id="a"), update(order_id="b")]), max_batch=2)
    assert batch
    assert [u.order_id for u in updates] == ["a", "b"]


def test_a_batch_larger_than_allowed_is_refused() -> None:
    with pytest.raises(BatchTooLarge, match="3 updates"):
        decode_updates(body([update()] * 3), max_batch=2)


def test_an_error_in_a_batch_names_the_index_and_the_field() -> None:
    with pytest.raises(InvalidUpdate) as caught:
        decode_updates(body([update(), update(quantity="5")]), max_batch=5)
    assert (caught.value.index, caught.value.field) == (1, "quantity")
    assert str(caught.value).startswith("update [1]:")


def test_an_error_in_a_single_update_has_no_index() -> None:
    with pytest.raises(InvalidUpdate) as caught:
        decode_updates(body(update(orderStatus="LOST")), max_batch=5)
    assert caught.value.index is None
    assert caught.value.field == "orderStatus"


@pytest.mark.parametrize("value", ["text", 3, None, True, []])
def test_a_body_that_is_not_updates_is_refused(value: Any) -> None:
    with pytest.raises(PayloadError):
        decode_updates(body(value), max_batch=5)


def test_updates_of_another_client_are_refused_by_index() -> None:
    updates, _ = decode_updates(body([update(), update("999")]), max_batch=5)
    with pytest.raises(PermissionDenied, match=r"update \[1\]"):
        check_client(updates, TOKEN, batch=True)


def test_each_update_goes_to_each_destination_with_the_exact_payload() -> None:
    updates, _ = decode_updates(body([update(order_id="a"), update(order_id="b")]), max_batch=5)
    destinations = [
        Destination(Target.TOKEN, "https://a.example/"),
        Destination(Target.PARTNER, "https://p.example/", "acme"),
    ]
    planned = plan_deliveries(updates, TOKEN, destinations, now=123.0)
    assert [(d.order_id, d.target, d.url) for d in planned] == [
        ("a", Target.TOKEN, "https://a.example/"),
        ("a", Target.PARTNER, "https://p.example/"),
        ("b", Target.TOKEN, "https://a.example/"),
        ("b", Target.PARTNER, "https://p.example/"),
    ]
    assert planned[0].payload == payload.dumps(updates[0])
    assert {d.created_at for d in planned} == {123.0}
    assert {d.token_hash for d in planned} == {TOKEN.token_hash}
    assert [d.partner_id for d in planned] == [None, "acme", None, "acme"]
    ids = [d.id for d in planned]
    assert ids == sorted(ids) and len(set(ids)) == 4


def test_no_destinations_means_no_deliveries() -> None:
    updates, _ = decode_updates(body(update()), max_batch=5)
    assert plan_deliveries(updates, TOKEN, [], now=0.0) == []


def test_no_idempotency_key_header_is_no_key() -> None:
    assert idempotency_key(None) is None


@pytest.mark.parametrize("key", ["a", "k" * 255, " spaced key ~!", "550e8400-e29b-41d4"])
def test_an_idempotency_key_of_1_to_255_printable_ascii_is_kept_as_sent(key: str) -> None:
    assert idempotency_key(key) == key


@pytest.mark.parametrize("key", ["", "k" * 256, "caf\u00e9", "tab\t", "line\n", "del\x7f"])
def test_any_other_idempotency_key_is_refused_naming_the_header(key: str) -> None:
    with pytest.raises(PayloadError, match="Idempotency-Key"):
        idempotency_key(key)
