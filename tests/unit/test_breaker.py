"""Circuit breakers: judged by recent deliveries' failure rate, probed with a growing cooldown."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from dhan_postback.service.breaker import BreakerBoard, BreakerPolicy, BreakerState

URL = "https://hooks.example.com/dhan"
OTHER = "https://other.example.com/dhan"
POLICY = BreakerPolicy(failure_rate=0.5, min_attempts=4, window=30, cooldown=1, max_cooldown=30)
_ids = itertools.count()


def new_id() -> str:
    return f"msg_{next(_ids)}"


def send(
    board: BreakerBoard, ok: bool, now: float, delivery: str | None = None, url: str = URL
) -> BreakerState:
    """One attempt of ``delivery`` (a new one unless given) that succeeds or fails at ``now``."""
    ticket = board.acquire(url, now)
    assert ticket is not None
    return board.record(ticket, delivery or new_id(), ok, now)


def fail(board: BreakerBoard, times: int, now: float, url: str = URL) -> BreakerState:
    state = board.state(url, now)
    for _ in range(times):
        state = send(board, False, now, url=url)
    return state


def opened(now: float = 0, policy: BreakerPolicy = POLICY) -> BreakerBoard:
    board = BreakerBoard(policy)
    assert fail(board, policy.min_attempts, now) is BreakerState.OPEN
    return board


def probe(board: BreakerBoard, ok: bool, now: float, delivery: str | None = None) -> BreakerState:
    ticket = board.acquire(URL, now)
    assert ticket is not None and ticket.probe
    return board.record(ticket, delivery or new_id(), ok, now)


def test_a_new_url_is_closed_and_allowed() -> None:
    board = BreakerBoard(POLICY)
    assert board.state(URL, 0) is BreakerState.CLOSED
    assert board.acquire(URL, 0) is not None


def test_fewer_failed_deliveries_than_the_minimum_keep_it_closed() -> None:
    board = BreakerBoard(POLICY)
    assert fail(board, POLICY.min_attempts - 1, 0) is BreakerState.CLOSED
    assert board.blocked_urls(0) == set()


def test_the_minimum_of_deliveries_mostly_failing_opens_it() -> None:
    board = BreakerBoard(POLICY)
    assert fail(board, 1, 0) is BreakerState.CLOSED
    send(board, True, 0)
    send(board, True, 0)  # 1 of 3 failed: too few to judge
    assert fail(board, 1, 0) is BreakerState.OPEN  # 2 of 4 failed: the rate is reached
    assert board.acquire(URL, 0.5) is None
    assert board.blocked_urls(0.5) == {URL}


def test_runs_of_failures_do_not_open_a_mostly_healthy_url() -> None:
    board = BreakerBoard(BreakerPolicy(min_attempts=20))
    for second in range(60):  # 30 % fail, in runs of six, as with 16 requests in flight
        for ok in [False] * 6 + [True] * 14:
            assert send(board, ok, second) is BreakerState.CLOSED


def test_failures_older_than_the_window_are_forgotten() -> None:
    board = BreakerBoard(POLICY)
    fail(board, POLICY.min_attempts - 1, 0)
    assert fail(board, 1, POLICY.window + 1) is BreakerState.CLOSED


def test_one_delivery_failing_again_and_again_counts_once() -> None:
    board = BreakerBoard(POLICY)
    for _ in range(10):
        assert send(board, False, 0, "msg_poisoned") is BreakerState.CLOSED


def test_a_delivery_failing_again_after_others_succeeded_no_longer_counts() -> None:
    board = BreakerBoard(POLICY)
    poisoned = [new_id() for _ in range(3)]
    for delivery in poisoned:
        send(board, False, 0, delivery)
    send(board, True, 1)  # the endpoint works: 3 of 4 failed, but that says little
    for second in range(2, 30):
        for delivery in poisoned:
            assert send(board, False, second, delivery) is BreakerState.CLOSED


def test_an_open_breaker_lets_one_probe_through_after_the_cooldown() -> None:
    board = opened(0)
    assert board.acquire(URL, POLICY.cooldown - 0.1) is None
    assert board.state(URL, POLICY.cooldown) is BreakerState.HALF_OPEN
    first = board.acquire(URL, POLICY.cooldown)
    assert first is not None and first.probe
    assert board.acquire(URL, POLICY.cooldown) is None  # one probe at a time
    assert board.blocked_urls(POLICY.cooldown) == {URL}


def test_a_successful_probe_closes_it() -> None:
    board = opened(0)
    assert probe(board, True, 1) is BreakerState.CLOSED
    assert board.acquire(URL, 1) is not None


def test_a_closed_breaker_judges_afresh() -> None:
    board = opened(0)
    probe(board, True, 1)
    assert fail(board, POLICY.min_attempts - 1, 1) is BreakerState.CLOSED


def test_a_failed_probe_opens_it_again_for_twice_as_long() -> None:
    board = opened(0)
    assert probe(board, False, 1) is BreakerState.OPEN
    assert board.state(URL, 2.9) is BreakerState.OPEN
    assert board.state(URL, 3) is BreakerState.HALF_OPEN


def test_the_cooldown_grows_while_the_url_stays_down_up_to_the_maximum() -> None:
    board = opened(0)
    now, pauses = 0.0, []
    for _ in range(8):
        reopen = board.next_reopen()
        assert reopen is not None
        pauses.append(reopen - now)
        now = reopen
        probe(board, False, now)
    assert pauses == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_dead_url_is_probed_at_most_a_few_times_a_minute_once_down_for_a_while() -> None:
    board = opened(0)
    probes: list[float] = []
    now = 0.0
    while now < 300:
        now += 0.1
        ticket = board.acquire(URL, now)
        if ticket is not None:
            assert ticket.probe
            probes.append(now)
            board.record(ticket, new_id(), False, now)
    assert len([t for t in probes if t >= 120]) <= 3 * 3  # minutes 2 to 5: three a minute


def test_opening_again_soon_after_closing_continues_the_longer_cooldown() -> None:
    board = opened(0)
    probe(board, False, 1)  # cooldown now 2
    probe(board, True, 3)
    assert fail(board, POLICY.min_attempts, 4) is BreakerState.OPEN
    assert board.next_reopen() == 4 + 4


def test_opening_long_after_closing_starts_short_again() -> None:
    board = opened(0)
    probe(board, False, 1)
    probe(board, True, 3)
    later = 3 + POLICY.window + 1
    assert fail(board, POLICY.min_attempts, later) is BreakerState.OPEN
    assert board.next_reopen() == later + POLICY.cooldown


def test_late_answers_from_before_it_opened_are_ignored() -> None:
    board = BreakerBoard(POLICY)
    early = [board.acquire(URL, 0) for _ in range(POLICY.min_attempts + 1)]
    for ticket in early[: POLICY.min_attempts]:
        assert ticket is not None
        board.record(ticket, new_id(), False, 1)
    assert board.state(URL, 1) is BreakerState.OPEN
    late = early[-1]
    assert late is not None
    assert board.record(late, new_id(), True, 1.5) is BreakerState.OPEN


def test_while_half_open_only_the_probe_counts() -> None:
    board = BreakerBoard(POLICY)
    straggler = board.acquire(URL, 0)
    assert straggler is not None
    fail(board, POLICY.min_attempts, 0)
    ticket = board.acquire(URL, 1)
    assert ticket is not None and ticket.probe
    assert board.record(straggler, new_id(), False, 1) is BreakerState.HALF_OPEN
    assert board.record(ticket, new_id(), True, 1) is BreakerState.CLOSED


def test_an_abandoned_probe_frees_the_probe_slot() -> None:
    board = opened(0)
    ticket = board.acquire(URL, 1)
    assert ticket is not None and ticket.probe
    board.abandon(ticket)
    assert board.acquire(URL, 1) is not None


def test_a_probe_rotates_from_a_failing_delivery_to_another_waiting_one() -> None:
    board = BreakerBoard(POLICY)
    poisoned = [new_id() for _ in range(POLICY.min_attempts)]
    for delivery in poisoned:
        send(board, False, 0, delivery)
    assert board.state(URL, 1) is BreakerState.HALF_OPEN
    assert board.rotate_probe(URL, poisoned[0], 1, [poisoned[1], "msg_healthy"])


def test_a_failing_delivery_probes_when_every_waiting_one_fails_too() -> None:
    board = BreakerBoard(POLICY)
    poisoned = [new_id() for _ in range(POLICY.min_attempts)]
    for delivery in poisoned:
        send(board, False, 0, delivery)
    assert not board.rotate_probe(URL, poisoned[0], 1, poisoned[1:])


def test_probes_do_not_rotate_while_closed() -> None:
    board = BreakerBoard(POLICY)
    send(board, False, 0, "msg_failing")
    assert not board.rotate_probe(URL, "msg_failing", 0, ["msg_other"])


def test_a_delivered_delivery_is_no_longer_known_to_fail() -> None:
    board = BreakerBoard(POLICY)
    poisoned = [new_id() for _ in range(POLICY.min_attempts)]
    for delivery in poisoned:
        send(board, False, 0, delivery)
    probe(board, True, 1, poisoned[0])
    fail(board, POLICY.min_attempts, 2)
    assert board.state(URL, 4) is BreakerState.HALF_OPEN
    assert not board.rotate_probe(URL, poisoned[0], 4, ["msg_new"])


def test_a_success_with_no_failure_remembered_forgets_the_breaker() -> None:
    board = BreakerBoard(POLICY)
    send(board, False, 0, "msg_once")
    send(board, True, 1, "msg_once")
    assert board._breakers == {}


def test_one_url_open_leaves_the_others_alone() -> None:
    board = opened(0)
    assert board.state(OTHER, 0) is BreakerState.CLOSED
    assert board.acquire(OTHER, 0) is not None
    assert board.not_closed(0) == {URL: BreakerState.OPEN}


def test_the_troubled_urls_are_followed_through_a_mass_outage_and_recovery() -> None:
    board = BreakerBoard(POLICY)
    urls = [f"https://hooks{n}.example.com/dhan" for n in range(200)]
    for url in urls:
        assert fail(board, POLICY.min_attempts, 0, url=url) is BreakerState.OPEN
    for number, url in enumerate(urls):  # cooldown over: every other probe succeeds
        if number % 4 != 3:
            ticket = board.acquire(url, 1)
            assert ticket is not None and ticket.probe
            board.record(ticket, new_id(), number % 2 == 0, 1)
    states = {url: board.state(url, 1) for url in urls}

    assert board.not_closed(1) == {u: s for u, s in states.items() if s is not BreakerState.CLOSED}
    assert Counter(states.values()) == {
        BreakerState.CLOSED: 100,  # still remembered (their failed deliveries), not troubled
        BreakerState.OPEN: 50,  # failed probes: open for twice the cooldown
        BreakerState.HALF_OPEN: 50,  # not probed yet
    }
    assert board.blocked_urls(1) == {u for u, s in states.items() if s is BreakerState.OPEN}
    assert board.next_reopen() == 1 + 2 * POLICY.cooldown


@pytest.mark.parametrize(
    "values",
    [
        {"failure_rate": 0},
        {"failure_rate": 1.5},
        {"min_attempts": 0},
        {"window": 0},
        {"cooldown": 10, "max_cooldown": 5},
    ],
)
def test_a_policy_that_cannot_work_is_refused(values: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**values)  # type: ignore[arg-type]
