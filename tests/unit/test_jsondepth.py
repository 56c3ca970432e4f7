"""The nesting-depth scan that runs before any recursive JSON decoder sees a body."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dhan_postback.errors import UnreadablePayload
from dhan_postback.jsondepth import MAX_DEPTH, check_depth, depth_exceeds
from tests.helpers.updates import update


def nested(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + closer * depth


def test_nesting_up_to_the_limit_passes() -> None:
    assert not depth_exceeds(nested(MAX_DEPTH))


def test_one_level_past_the_limit_is_too_deep() -> None:
    assert depth_exceeds(nested(MAX_DEPTH + 1))


def test_objects_count_as_levels_like_arrays() -> None:
    body = b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1)
    assert depth_exceeds(body)


def test_unclosed_brackets_count() -> None:
    assert depth_exceeds(b"[" * 100_000)


def test_brackets_inside_strings_are_text() -> None:
    body = json.dumps({"note": "[" * 1000, "other": "{" * 1000}).encode()
    assert not depth_exceeds(body)


def test_escaped_quotes_do_not_end_a_string() -> None:
    body = json.dumps({"note": '"' + "[" * 1000 + '\\"'}).encode()
    assert b"\\" in body
    assert not depth_exceeds(body)


def test_strings_cannot_hide_real_nesting() -> None:
    body = b'["]",' * (MAX_DEPTH + 1) + b"1" + b"]" * (MAX_DEPTH + 1)
    assert depth_exceeds(body)


def test_a_batch_of_a_thousand_updates_is_shallow() -> None:
    assert not depth_exceeds(json.dumps([update()] * 1000).encode())


def test_check_depth_refuses_with_a_400_naming_the_limit() -> None:
    with pytest.raises(UnreadablePayload) as caught:
        check_depth(b"[" * 100_000)
    assert caught.value.http_status == 400
    assert f"deeper than {MAX_DEPTH} levels" in caught.value.message


values = st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\ab'),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=3), children, max_size=3)
    ),
    max_leaves=40,
)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    return 0


@given(values, st.integers(min_value=1, max_value=8))
def test_the_scan_agrees_with_the_real_depth_of_any_json_value(value: object, limit: int) -> None:
    body = msgspec.json.encode(value)
    assert depth_exceeds(body, limit) == (_depth(value) > limit)
