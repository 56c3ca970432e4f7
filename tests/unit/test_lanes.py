"""The dispatcher's lanes, rule by rule: caps, bounds, one delivery per queue, starved lanes."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dhan_postback.service.lanes import Lane, Lanes
from dhan_postback.service.metrics import endpoint_label
from dhan_postback.service.store.base import Claim

A = "http://a.example:8000/hook"
A2 = "http://a.example:8000/other"  # another URL of the same endpoint
B = "http://b.example:8000/hook"

_ids = itertools.count(1)


def claim(url: str = A, order: str | None = None) -> Claim:
    n = next(_ids)
    return Claim(
        id=f"msg_{n}",
        seq=n,
        url=url,
        order_id=order or f"order-{n}",
        payload=b"{}",
        signing_secret="whsec_test",
        attempts=0,
        round_attempts=0,
        lease_until=1e12,
    )


def lanes(per_lane: int = 2, max_in_flight: int = 8, claim_batch: int = 4) -> Lanes:
    return Lanes(per_lane=per_lane, max_in_flight=max_in_flight, claim_batch=claim_batch)


def lane_of(board: Lanes, url: str) -> Lane:
    (lane,) = (lane for lane in board.lanes() if url in lane.urls)
    return lane


def start_all(board: Lanes, lane: Lane) -> list[Claim]:
    started = []
    while (taken := board.take(lane)) is not None:
        board.start(lane)
        started.append(taken)
    return started


def test_admitted_claims_wait_in_the_lane_of_their_endpoint() -> None:
    board = lanes()
    admitted = board.admit([claim(A), claim(A2), claim(B)])

    assert [lane.label for lane in admitted.lanes] == [
        "http://a.example:8000",
        "http://b.example:8000",
    ]
    assert lane_of(board, A) is lane_of(board, A2)
    assert (board.waiting, board.in_flight, board.held) == (3, 0, 3)


def test_claims_start_in_the_order_they_were_admitted() -> None:
    board = lanes(per_lane=3)
    first, second, third = claim(), claim(), claim()
    (lane,) = board.admit([first, second, third]).lanes

    assert start_all(board, lane) == [first, second, third]


def test_a_lane_runs_at_most_per_lane_posts() -> None:
    board = lanes(per_lane=2)
    (lane,) = board.admit([claim() for _ in range(5)]).lanes

    assert len(start_all(board, lane)) == 2
    assert (lane.in_flight, len(lane.queue)) == (2, 3)


def test_a_finished_post_frees_its_lane_slot() -> None:
    board = lanes(per_lane=1)
    (lane,) = board.admit([claim(), claim()]).lanes
    (first,) = start_all(board, lane)

    board.finished(lane, first)

    assert len(start_all(board, lane)) == 1


def test_all_lanes_together_run_at_most_max_in_flight() -> None:
    board = lanes(per_lane=4, max_in_flight=5)
    admitted = board.admit([claim(A) for _ in range(4)] + [claim(B) for _ in range(4)])

    started = [c for lane in admitted.lanes for c in start_all(board, lane)]

    assert len(started) == 5 == board.in_flight


def test_a_lane_holding_twice_its_cap_is_full_and_its_urls_are_skipped() -> None:
    board = lanes(per_lane=2)
    board.admit([claim(A), claim(A2), claim(A), claim(A), claim(B)])

    assert board.full_urls() == {A, A2}


def test_a_lane_never_holds_more_than_twice_its_cap_plus_a_claim_batch() -> None:
    board = lanes(per_lane=2, claim_batch=3)
    offered = [claim(A) for _ in range(10)]

    admitted = board.admit(offered)

    assert lane_of(board, A).held == 2 * 2 + 3
    assert admitted.refused == offered[7:]
    assert admitted.second_heads == 0


def test_the_next_claim_asks_for_no_more_than_max_in_flight_plus_a_batch_in_all() -> None:
    board = lanes(per_lane=100, max_in_flight=6, claim_batch=4)
    assert board.room == 4  # one batch at most
    board.admit([claim() for _ in range(8)])
    assert board.room == 2  # 6 + 4 in all
    board.admit([claim() for _ in range(2)])
    assert board.room == 0


def test_a_second_head_of_a_held_queue_is_refused() -> None:
    board = lanes()
    head = claim(A, "order-1")
    board.admit([head])
    successor = claim(A, "order-1")

    admitted = board.admit([successor])

    assert admitted.refused == [successor]
    assert admitted.second_heads == 1
    assert board.holder((A, "order-1")) == head.id


def test_the_same_order_at_another_url_is_another_queue() -> None:
    board = lanes()
    admitted = board.admit([claim(A, "order-1"), claim(B, "order-1")])

    assert admitted.refused == []
    assert board.waiting == 2


def test_a_claim_held_already_is_neither_admitted_again_nor_given_back() -> None:
    board = lanes()
    head = claim()
    board.admit([head])

    admitted = board.admit([head])

    assert admitted == ([], [], 0)
    assert board.waiting == 1


def test_a_finished_queue_stays_held_until_its_outcome_is_let_go() -> None:
    board = lanes()
    head = claim(A, "order-1")
    (lane,) = board.admit([head]).lanes
    start_all(board, lane)
    board.finished(lane, head)

    early = board.admit([claim(A, "order-1")])
    board.let_go([((A, "order-1"), head.id)])
    successor = claim(A, "order-1")
    later = board.admit([successor])

    assert early.second_heads == 1
    assert later.refused == []
    assert board.holder((A, "order-1")) == successor.id


def test_let_go_ignores_a_queue_held_by_another_delivery() -> None:
    board = lanes()
    head = claim(A, "order-1")
    board.admit([head])

    assert board.let_go([((A, "order-1"), "msg_other")]) == []
    assert board.holder((A, "order-1")) == head.id


def test_an_outcome_that_did_not_commit_holds_its_queue_again() -> None:
    board = lanes()
    head = claim(A, "order-1")
    (lane,) = board.admit([head]).lanes
    start_all(board, lane)
    board.finished(lane, head)
    let_go = board.let_go([((A, "order-1"), head.id)])

    board.hold_again(let_go)

    assert board.admit([claim(A, "order-1")]).second_heads == 1


def test_a_given_back_claim_frees_its_queue_at_once() -> None:
    board = lanes()
    head = claim(A, "order-1")
    (lane,) = board.admit([head]).lanes
    taken = board.take(lane)
    assert taken is head

    board.give_back(lane, head)

    assert (board.held, board.holder((A, "order-1"))) == (0, None)


def test_an_abandoned_post_frees_its_slot_and_its_queue() -> None:
    board = lanes(per_lane=1)
    head = claim(A, "order-1")
    (lane,) = board.admit([head, claim(A)]).lanes
    start_all(board, lane)

    board.abandon(lane, head)

    assert (board.in_flight, board.holder((A, "order-1"))) == (0, None)
    assert len(start_all(board, lane)) == 1


def test_a_lane_without_a_global_slot_starves_and_is_served_first_in_turn() -> None:
    board = lanes(per_lane=2, max_in_flight=2)
    busy, second, third = (f"http://{name}.example/hook" for name in ("busy", "two", "three"))
    (busy_lane,) = board.admit([claim(busy) for _ in range(4)]).lanes
    running = start_all(board, busy_lane)
    second_lane, third_lane = board.admit([claim(second), claim(third)]).lanes
    assert board.take(second_lane) is None
    assert board.take(third_lane) is None
    assert board.next_starved() is None  # no slot free yet

    board.finished(busy_lane, running[0])
    assert board.next_starved() is second_lane
    start_all(board, second_lane)
    assert board.next_starved() is None  # the freed slot is taken again
    board.finished(busy_lane, running[1])

    assert board.next_starved() is third_lane
    assert not third_lane.starved


def test_a_starved_lane_is_queued_once_however_often_it_asks() -> None:
    board = lanes(per_lane=1, max_in_flight=1)
    (first,) = board.admit([claim(A)]).lanes
    (running,) = start_all(board, first)
    (hungry,) = board.admit([claim(B)]).lanes
    board.take(hungry)
    board.take(hungry)
    board.finished(first, running)

    assert board.next_starved() is hungry
    assert board.next_starved() is None


def test_give_back_waiting_of_a_url_leaves_its_other_urls_and_claims_under_way() -> None:
    board = lanes(per_lane=1)
    under_way, waiting_a, waiting_a2 = claim(A), claim(A), claim(A2)
    (lane,) = board.admit([under_way, waiting_a, waiting_a2]).lanes
    start_all(board, lane)

    given = board.give_back_waiting(A)

    assert given == [waiting_a]
    assert list(lane.queue) == [waiting_a2]
    assert (board.in_flight, board.waiting) == (1, 1)
    assert lane.urls == {A: 1, A2: 1}


def test_give_back_waiting_of_every_url_empties_every_queue() -> None:
    board = lanes()
    offered = [claim(A), claim(B), claim(A2)]
    board.admit(offered)

    assert sorted(c.id for c in board.give_back_waiting()) == sorted(c.id for c in offered)
    assert board.held == 0


def test_forget_waiting_drops_the_named_waiting_claims_and_frees_their_queues() -> None:
    board = lanes(per_lane=1)
    under_way, lost, kept = claim(A), claim(A), claim(B)
    lane_a, _ = board.admit([under_way, lost, kept]).lanes
    start_all(board, lane_a)

    forgotten = board.forget_waiting({lost.id, under_way.id})

    assert forgotten == [lost]
    assert board.holder((A, lost.order_id)) is None
    assert (board.in_flight, board.waiting) == (1, 1)


def test_idle_lanes_are_forgotten_when_the_full_urls_are_asked() -> None:
    board = lanes()
    head = claim(A)
    (lane,) = board.admit([head]).lanes
    board.take(lane)
    board.give_back(lane, head)

    board.full_urls()

    assert board.lanes() == []


def test_an_idle_endpoint_gets_its_own_lane_back_on_its_next_claim() -> None:
    board = lanes()
    first = claim(A)
    (lane,) = board.admit([first]).lanes
    board.take(lane)
    board.give_back(lane, first)
    board.full_urls()  # idle: set aside

    (again,) = board.admit([claim(A)]).lanes

    assert again is lane and board.lanes() == [lane]


def test_idle_lanes_kept_are_bounded_and_the_longest_idle_go_first() -> None:
    board = Lanes(per_lane=2, max_in_flight=8, claim_batch=4, idle_lanes=2)
    made = {}
    for url in (A, B, "http://c.example:8000/hook"):  # idle in this order
        head = claim(url)
        (made[url],) = board.admit([head]).lanes
        board.take(made[url])
        board.give_back(made[url], head)
        board.full_urls()

    back = {url: board.admit([claim(url)]).lanes[0] for url in made}

    assert [back[url] is made[url] for url in made] == [False, True, True]


def test_in_flight_by_url_reports_the_endpoint_load_for_each_url_held() -> None:
    board = lanes(per_lane=1)
    (lane,) = board.admit([claim(A), claim(A2)]).lanes
    start_all(board, lane)

    assert board.in_flight_by_url() == {A: 1, A2: 1}


def test_waiting_ids_name_the_waiting_claims_of_one_url_oldest_first() -> None:
    board = lanes(per_lane=1)
    first, other, second = claim(A), claim(A2), claim(A)
    (lane,) = board.admit([claim(A), first, other, second]).lanes
    start_all(board, lane)

    assert list(lane.waiting_ids(A)) == [first.id, second.id]


def test_room_promised_to_a_commit_is_left_out_of_the_next_claim() -> None:
    board = lanes(max_in_flight=8, claim_batch=4)  # holds at most 12
    board.admit([claim() for _ in range(6)])

    assert board.promise(3) == 3
    assert board.room == 12 - 6 - 3


def test_a_commit_is_promised_no_more_than_the_room() -> None:
    board = lanes(per_lane=8, max_in_flight=8, claim_batch=4)
    board.admit([claim() for _ in range(10)])

    assert board.promise(5) == 2
    assert board.promise(5) == 0
    assert board.room == 0


def test_a_commit_over_gives_back_the_room_it_did_not_fill() -> None:
    board = lanes(max_in_flight=8, claim_batch=4)
    promised = board.promise(3)
    board.admit([claim()])  # what the commit handed over

    board.unpromise(promised)

    assert board.room == 4
    assert board.held_bound - board.held == 11


def test_full_tells_whether_the_lane_of_one_url_is_full() -> None:
    board = lanes(per_lane=2)
    board.admit([claim(A) for _ in range(4)])

    assert (board.full(A), board.full(A2), board.full(B)) == (True, True, False)
    assert len(board.lanes()) == 1  # asking made no lane for B


@pytest.mark.parametrize("bad", [{"per_lane": 0}, {"max_in_flight": 0}, {"claim_batch": 0}])
def test_lanes_need_at_least_one_slot(bad: dict[str, int]) -> None:
    values = {"per_lane": 1, "max_in_flight": 1, "claim_batch": 1} | bad
    with pytest.raises(ValueError, match="at least 1"):
        Lanes(**values)


URLS = (A, A2, B, "http://c.example/hook")
ORDERS = ("order-1", "order-2", "order-3")


class LanesMachine(RuleBasedStateMachine):
    """Random admissions, starts, finishes, give-backs and abandons; the rules after each.

    The model holds every claim ever offered in exactly one state: waiting, in flight,
    settling (finished, outcome not yet committed), or gone (refused, given back, abandoned
    or let go).
    """

    def __init__(self) -> None:
        super().__init__()
        self.board = Lanes(per_lane=2, max_in_flight=2, claim_batch=3)
        self.state: dict[str, str] = {}
        self.claims: dict[str, Claim] = {}
        self.starved: list[str] = []
        """Labels of the lanes that starved, in the order they starved."""
        self.promises: list[int] = []
        """Room set aside for commits under way, oldest first."""

    def _in(self, state: str) -> list[Claim]:
        return [self.claims[i] for i, s in self.state.items() if s == state]

    def _holder(self, url: str, order: str) -> str | None:
        for i, s in self.state.items():
            c = self.claims[i]
            if s in ("waiting", "in_flight", "settling") and (c.url, c.order_id) == (url, order):
                return i
        return None

    def _lane(self, url: str) -> Lane | None:
        label = endpoint_label(url)
        return next((lane for lane in self.board.lanes() if lane.label == label), None)

    def _held_in(self, label: str) -> int:
        return sum(
            1 for c in self._in("waiting") + self._in("in_flight") if endpoint_label(c.url) == label
        )

    @precondition(lambda self: self.board.room > 0)
    @rule(data=st.data())
    def admit(self, data: st.DataObject) -> None:
        self._admit(data, data.draw(st.integers(1, self.board.room)))

    @rule(at_most=st.integers(1, 4))
    def promise(self, at_most: int) -> None:
        """A commit that may hand over heads has room set aside first."""
        room = self.board.room
        promised = self.board.promise(at_most)
        assert promised == max(0, min(at_most, room))
        self.promises.append(promised)

    @precondition(lambda self: bool(self.promises))
    @rule(data=st.data())
    def hand_over(self, data: st.DataObject) -> None:
        """The commit hands over no more than it was promised, admitted like a claim."""
        promised = self.promises.pop(0)
        self._admit(data, data.draw(st.integers(0, promised)))
        self.board.unpromise(promised)

    def _admit(self, data: st.DataObject, size: int) -> None:
        keys = data.draw(
            st.lists(
                st.tuples(st.sampled_from(URLS), st.sampled_from(ORDERS)),
                min_size=size,
                max_size=size,
            )
        )
        offered = [claim(url, order) for url, order in keys]
        expected_refused, expected_second = [], 0
        held_by = {}
        for c in offered:
            key = (c.url, c.order_id)
            holder = held_by.get(key) or self._holder(*key)
            label = endpoint_label(c.url)
            if holder is not None:
                expected_second += 1
                expected_refused.append(c)
            elif (
                self._held_in(label)
                + sum(1 for h in held_by.values() if endpoint_label(self.claims[h].url) == label)
                >= self.board.lane_bound
            ):
                expected_refused.append(c)
            else:
                held_by[key] = c.id
            self.claims[c.id] = c
        admitted = self.board.admit(offered)
        assert admitted.refused == expected_refused
        assert admitted.second_heads == expected_second
        for c in offered:
            self.state[c.id] = "waiting" if c not in expected_refused else "gone"
        for lane in admitted.lanes:  # as the dispatcher does
            self._pump(lane)

    @precondition(lambda self: any(s == "waiting" for s in self.state.values()))
    @rule(data=st.data())
    def readmit_a_claim_held_already(self, data: st.DataObject) -> None:
        again = data.draw(st.sampled_from(self._in("waiting") + self._in("in_flight")))
        assert self.board.admit([again]) == ([], [], 0)

    def _pump(self, lane: Lane) -> None:
        """Start what may start in ``lane``, as the dispatcher does; note a starved lane."""
        while (taken := self.board.take(lane)) is not None:
            assert taken.id == next(c.id for c in self._in("waiting") if c is taken)
            self.board.start(lane)
            self.state[taken.id] = "in_flight"
        if lane.queue and lane.in_flight < self.board.per_lane:
            assert self.board.in_flight == self.board.max_in_flight  # why else wait?
            if lane.label not in self.starved:
                self.starved.append(lane.label)

    def _serve_starved(self) -> None:
        while (lane := self.board.next_starved()) is not None:
            assert lane.label == self.starved.pop(0)  # in the order they starved
            self._pump(lane)
        assert not self.starved or self.board.in_flight == self.board.max_in_flight

    @rule(url=st.sampled_from(URLS))
    def pump(self, url: str) -> None:
        lane = self._lane(url)
        if lane is not None:
            self._pump(lane)

    @rule(url=st.sampled_from(URLS))
    def take_and_give_back(self, url: str) -> None:
        lane = self._lane(url)
        if lane is None:
            return
        oldest = lane.queue[0] if lane.queue else None
        taken = self.board.take(lane)
        if taken is None:
            hungry = lane.queue and lane.in_flight < self.board.per_lane
            if hungry and lane.label not in self.starved:
                self.starved.append(lane.label)
            return
        assert taken is oldest
        self.board.give_back(lane, taken)
        self.state[taken.id] = "gone"

    @precondition(lambda self: any(s == "in_flight" for s in self.state.values()))
    @rule(data=st.data(), abandon=st.booleans())
    def end(self, data: st.DataObject, abandon: bool) -> None:
        """A POST ends; then, as the dispatcher does, starved lanes go first, then its own."""
        done = data.draw(st.sampled_from(self._in("in_flight")))
        lane = self._lane(done.url)
        assert lane is not None
        if abandon:
            self.board.abandon(lane, done)
            self.state[done.id] = "gone"
        else:
            self.board.finished(lane, done)
            self.state[done.id] = "settling"
        self._serve_starved()
        self._pump(lane)

    @precondition(lambda self: any(s == "settling" for s in self.state.values()))
    @rule(data=st.data(), commits=st.booleans())
    def write_outcomes(self, data: st.DataObject, commits: bool) -> None:
        settled = data.draw(
            st.lists(st.sampled_from(self._in("settling")), min_size=1, unique=True)
        )
        let_go = self.board.let_go(((c.url, c.order_id), c.id) for c in settled)
        assert sorted(i for _, i in let_go) == sorted(c.id for c in settled)
        if commits:
            for c in settled:
                self.state[c.id] = "gone"
        else:
            self.board.hold_again(let_go)

    @rule(url=st.none() | st.sampled_from(URLS))
    def give_back_waiting(self, url: str | None) -> None:
        given = self.board.give_back_waiting(url)
        expected = [c for c in self._in("waiting") if url is None or c.url == url]
        assert sorted(c.id for c in given) == sorted(c.id for c in expected)
        for c in given:
            self.state[c.id] = "gone"

    @rule()
    def claim_next(self) -> None:
        full = self.board.full_urls()
        for url in URLS:
            assert (url in full) == (
                self._held_in(endpoint_label(url)) >= self.board.lane_full
                and any(c.url == url for c in self._in("waiting") + self._in("in_flight"))
            )

    @invariant()
    def counters_equal_the_maps(self) -> None:
        waiting, in_flight = self._in("waiting"), self._in("in_flight")
        lanes = self.board.lanes()
        queued = [c.id for lane in lanes for c in lane.queue]
        assert sorted(queued) == sorted(c.id for c in waiting)  # nothing lost or duplicated
        assert self.board.waiting == len(waiting) == len(queued)
        assert self.board.in_flight == len(in_flight) == sum(lane.in_flight for lane in lanes)
        for lane in lanes:
            mine = [c for c in waiting + in_flight if endpoint_label(c.url) == lane.label]
            assert lane.urls == dict(Counter(c.url for c in mine))
            assert lane.in_flight == sum(
                1 for c in in_flight if endpoint_label(c.url) == lane.label
            )

    @invariant()
    def caps_are_never_exceeded(self) -> None:
        assert self.board.in_flight <= self.board.max_in_flight
        assert self.board.held + sum(self.promises) <= self.board.held_bound
        for lane in self.board.lanes():
            assert lane.in_flight <= self.board.per_lane
            assert lane.held <= self.board.lane_bound

    @invariant()
    def one_delivery_per_queue(self) -> None:
        live = self._in("waiting") + self._in("in_flight") + self._in("settling")
        keys = [(c.url, c.order_id) for c in live]
        assert len(keys) == len(set(keys))
        for c in live:
            assert self.board.holder((c.url, c.order_id)) == c.id

    @invariant()
    def starved_lanes_wait_for_their_turn(self) -> None:
        starved = [lane.label for lane in self.board.lanes() if lane.starved]
        assert sorted(starved) == sorted(self.starved)


TestLanesMachine = LanesMachine.TestCase
TestLanesMachine.settings = settings(max_examples=100, stateful_step_count=60, deadline=None)
