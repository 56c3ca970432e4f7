from __future__ import annotations

import itertools
import re
import time

import pytest

from dhan_postback.service.ids import new_delivery_id, new_delivery_ids, new_ulid, ulid_time

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
