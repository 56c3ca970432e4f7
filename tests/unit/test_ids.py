from __future__ import annotations

import itertools
import re
import time

import pytest

from dhan_postback.service.ids import (
    derived_delivery_id,
    new_delivery_id,
    new_delivery_ids,
    new_ulid,
    ulid_time,
)

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def test_a_delivery_id_is_msg_and_a_ulid() -> None:
    delivery_id = new_delivery_id()
    assert delivery_id.startswith("msg_")
    assert ULID.match(delivery_id.removeprefix("msg_"))


def test_ids_made_one_after_another_sort_in_that_order() -> None:
    made = [new_delivery_id() for _ in range(200)] + new_delivery_ids(500) + [new_ulid()]
    delivery_ids = made[:-1]
    assert delivery_ids == sorted(delivery_ids)
    assert len(set(delivery_ids)) == len(delivery_ids)


def test_a_batch_of_ids_is_strictly_increasing() -> None:
    batch = new_delivery_ids(1000)
    assert all(a < b for a, b in itertools.pairwise(batch))


def test_no_ids_for_an_empty_batch() -> None:
    assert new_delivery_ids(0) == []


def test_the_time_of_an_id_is_when_it_was_made() -> None:
    before = time.time()
    made = ulid_time(new_delivery_id())
    assert before - 0.002 <= made <= time.time() + 0.002


@pytest.mark.parametrize("text", ["msg_short", "msg_" + "U" * 26, ""])
def test_reading_the_time_of_a_malformed_id_fails(text: str) -> None:
    with pytest.raises(ValueError):
        ulid_time(text)


def test_the_time_part_is_written_as_the_ulid_specification_writes_it() -> None:
    # the specification's example: 1469918176385 ms is 01ARYZ6S41
    made = derived_delivery_id("any", at=1469918176385 / 1000)
    assert made.removeprefix("msg_")[:10] == "01ARYZ6S41"
    assert ulid_time(made) == 1469918176.385


def test_the_last_millisecond_a_ulid_can_hold_is_7zzzzzzzzz() -> None:
    made = derived_delivery_id("any", at=(2**48 - 1) / 1000)
    assert ULID.match(made.removeprefix("msg_"))
    assert made.removeprefix("msg_")[:10] == "7ZZZZZZZZZ"
