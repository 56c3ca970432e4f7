from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dhan_postback.receiver.book import Progress, supersedes
from tests.helpers.lifecycles import Step, lifecycles

T1, T2, T3 = "2024-01-02 10:00:01", "2024-01-02 10:00:02", "2024-01-02 10:00:03"


def test_an_unknown_status_neither_ends_nor_reopens_an_order() -> None:
    assert supersedes(Progress(T2, "TRIGGERED", 0), Progress(T1, "PENDING", 0))
    assert not supersedes(Progress(T3, "TRIGGERED", 0), Progress(T2, "TRADED", 10))


def test_pending_with_fills_ranks_like_part_traded() -> None:
    assert supersedes(Progress(T1, "PENDING", 4), Progress(T1, "PENDING", 0))
    assert supersedes(Progress(T1, "PART_TRADED", 4), Progress(T1, "PENDING", 4))


def test_the_first_update_of_an_order_always_applies() -> None:
    assert supersedes(Progress(T1, "PENDING", 0), None)


def test_a_later_update_time_moves_the_order_forward() -> None:
    assert supersedes(Progress(T2, "PENDING", 0), Progress(T1, "PENDING", 0))


def test_an_older_update_does_not_overwrite_a_newer_one() -> None:
    assert not supersedes(Progress(T1, "PENDING", 0), Progress(T2, "PENDING", 0))


def test_a_terminal_status_never_goes_back_even_to_a_later_open_update() -> None:
    assert not supersedes(Progress(T3, "PENDING", 0), Progress(T2, "CANCELLED", 0))
    assert not supersedes(Progress(T3, "PART_TRADED", 5), Progress(T2, "TRADED", 10))


def test_filled_qty_never_decreases() -> None:
    assert not supersedes(Progress(T3, "PART_TRADED", 2), Progress(T2, "PART_TRADED", 4))


def test_same_second_the_higher_status_rank_wins() -> None:
    assert supersedes(Progress(T1, "PENDING", 0), Progress(T1, "TRANSIT", 0))
    assert not supersedes(Progress(T1, "TRANSIT", 0), Progress(T1, "PENDING", 0))
    assert supersedes(Progress(T1, "PART_TRADED", 1), Progress(T1, "PENDING", 0))
    assert supersedes(Progress(T1, "TRADED", 10), Progress(T1, "PART_TRADED", 5))


def test_same_second_and_status_the_larger_fill_wins() -> None:
    assert supersedes(Progress(T1, "PART_TRADED", 6), Progress(T1, "PART_TRADED", 5))
    assert not supersedes(Progress(T1, "PART_TRADED", 5), Progress(T1, "PART_TRADED", 6))


def test_an_exact_tie_goes_to_the_later_arrival_unless_the_order_is_finished() -> None:
    assert supersedes(Progress(T1, "PENDING", 0), Progress(T1, "PENDING", 0))
    assert not supersedes(Progress(T1, "CANCELLED", 0), Progress(T1, "CANCELLED", 0))


def _progress(step: Step) -> Progress:
    return Progress(step.update_time, step.status, step.filled_qty)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_arrival_order_with_repeats_ends_at_the_newest_state(data: st.DataObject) -> None:
    steps = data.draw(lifecycles("1"))
    arrivals = data.draw(st.permutations(steps + data.draw(st.lists(st.sampled_from(steps)))))
    current: Progress | None = None
    for step in arrivals:
        if supersedes(_progress(step), current):
            current = _progress(step)
    assert current == _progress(steps[-1])
