"""Circuit breakers: open after consecutive failures, one probe after the cooldown."""

from __future__ import annotations

from dhan_postback.service.breaker import BreakerBoard, BreakerState

URL = "https://hooks.example.com/dhan"
OTHER = "https://other.example.com/dhan"


def fail(board: BreakerBoard, times: int, now: float, url: str = URL) -> BreakerState:
    state = board.state(url, now)
    for _ in range(times):
        ticket = board.acquire(url, now)
        assert ticket is not None
        state = board.record(ticket, False, now)
    return state


def test_a_new_url_is_closed_and_allowed() -> None:
    board = BreakerBoard(threshold=3, cooldown=10)
    assert board.state(URL, 0) is BreakerState.CLOSED
    assert board.acquire(URL, 0) is not None


def test_failures_below_the_threshold_keep_it_closed() -> None:
    board = BreakerBoard(threshold=3, cooldown=10)
    assert fail(board, 2, 0) is BreakerState.CLOSED
    assert board.blocked_urls(0) == set()


def test_threshold_consecutive_failures_open_it() -> None:
    board = BreakerBoard(threshold=3, cooldown=10)
    assert fail(board, 3, 0) is BreakerState.OPEN
    assert board.acquire(URL, 1) is None
    assert board.blocked_urls(1) == {URL}


def test_a_success_resets_the_count() -> None:
    board = BreakerBoard(threshold=3, cooldown=10)
    fail(board, 2, 0)
    ticket = board.acquire(URL, 0)
    assert ticket is not None
    board.record(ticket, True, 0)
    assert fail(board, 2, 0) is BreakerState.CLOSED


def test_one_url_opening_leaves_others_alone() -> None:
    board = BreakerBoard(threshold=1, cooldown=10)
    fail(board, 1, 0)
    assert board.acquire(OTHER, 0) is not None
    assert board.blocked_urls(0) == {URL}


def test_after_the_cooldown_exactly_one_probe_may_go() -> None:
    board = BreakerBoard(threshold=1, cooldown=10)
    fail(board, 1, 0)
    assert board.next_reopen() == 10
    assert board.state(URL, 10) is BreakerState.HALF_OPEN
    probe = board.acquire(URL, 10)
    assert probe is not None and probe.probe
    assert board.acquire(URL, 10) is None
    assert board.blocked_urls(10) == {URL}


def test_a_successful_probe_closes_it() -> None:
    board = BreakerBoard(threshold=1, cooldown=10)
    fail(board, 1, 0)
    probe = board.acquire(URL, 10)
    assert probe is not None
    assert board.record(probe, True, 10.5) is BreakerState.CLOSED
    assert board.acquire(URL, 10.5) is not None
    assert board.not_closed(10.5) == {}


def test_a_failed_probe_opens_it_for_another_cooldown() -> None:
    board = BreakerBoard(threshold=1, cooldown=10)
    fail(board, 1, 0)
    probe = board.acquire(URL, 10)
    assert probe is not None
    assert board.record(probe, False, 12) is BreakerState.OPEN
    assert board.acquire(URL, 21) is None
    assert board.next_reopen() == 22


def test_an_abandoned_probe_lets_another_probe_go() -> None:
    board = BreakerBoard(threshold=1, cooldown=10)
    fail(board, 1, 0)
    probe = board.acquire(URL, 10)
    assert probe is not None
    board.abandon(probe)
    assert board.acquire(URL, 10) is not None


def test_late_answers_from_before_opening_are_ignored() -> None:
    board = BreakerBoard(threshold=2, cooldown=10)
    early = [board.acquire(URL, 0) for _ in range(3)]
    assert all(t is not None for t in early)
    board.record(early[0], False, 1)  # type: ignore[arg-type]
    board.record(early[1], False, 1)  # type: ignore[arg-type]
    assert board.record(early[2], True, 2) is BreakerState.OPEN  # type: ignore[arg-type]


def test_only_the_probe_decides_while_half_open() -> None:
    board = BreakerBoard(threshold=1, cooldown=10)
    straggler = board.acquire(URL, 0)
    fail(board, 1, 0)
    probe = board.acquire(URL, 10)
    assert straggler is not None and probe is not None
    assert board.record(straggler, False, 11) is BreakerState.HALF_OPEN
    assert board.record(probe, True, 11) is BreakerState.CLOSED


def test_healthy_urls_leave_no_state_behind() -> None:
    board = BreakerBoard(threshold=3, cooldown=10)
    fail(board, 2, 0)
    ticket = board.acquire(URL, 0)
    assert ticket is not None
    board.record(ticket, True, 0)
    assert board._breakers == {}
