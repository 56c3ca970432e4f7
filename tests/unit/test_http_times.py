from __future__ import annotations

from datetime import datetime

import pytest

from dhan_postback.errors import PayloadError
from dhan_postback.service.http import IST, from_iso, to_iso


def test_times_are_written_in_ist_to_the_millisecond() -> None:
    assert to_iso(0.0) == "1970-01-01T05:30:00.000+05:30"
    assert to_iso(None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1970-01-01T05:30:00+05:30", 0.0),
        ("1970-01-01T00:00:00Z", 0.0),
        ("1970-01-01 05:30:01", 1.0),  # no offset: the broker's IST
        ("12.5", 12.5),
        (7, 7.0),
    ],
)
def test_times_are_read_from_iso_8601_or_epoch_seconds(text: str | int, expected: float) -> None:
    assert from_iso(text, "since") == expected


@pytest.mark.parametrize("text", ["yesterday", "nan", "inf", True, "2024-13-01"])
def test_unreadable_times_name_the_parameter(text: str | bool) -> None:
    with pytest.raises(PayloadError, match="since"):
        from_iso(text, "since")


def test_round_trip() -> None:
    moment = datetime(2024, 5, 2, 9, 15, 1, tzinfo=IST).timestamp()
    assert from_iso(to_iso(moment) or "", "t") == moment
