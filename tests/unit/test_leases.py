"""The heartbeat's bookkeeping (:class:`dhan_postback.service.leases.Leases`), rule by rule."""

from __future__ import annotations

import dataclasses

from dhan_postback.service.leases import Leases
from dhan_postback.service.store.base import Claim

NOW = 1_700_000_000.0


def claim(delivery_id: str, lease_until: float = NOW + 10) -> Claim:
    return Claim(
        delivery_id, 1, "http://127.0.0.1:9/hook", "o1", b"{}", "whsec_x", 0, 0, lease_until
    )


def test_every_claim_held_is_asked_for_with_its_lease_end() -> None:
    leases = Leases()
    leases.hold([claim("a", NOW + 10), claim("b", NOW + 11)])
    assert sorted(leases.held()) == [("a", NOW + 10), ("b", NOW + 11)]


def test_a_renewed_lease_is_asked_for_with_its_new_end_next_time() -> None:
    leases = Leases()
    held = claim("a")
    leases.hold([held])
    lost = leases.renewed(leases.held(), {"a"}, NOW + 20)
    assert lost == set()
    assert leases.held() == [("a", NOW + 20)]
    assert leases.until(held) == NOW + 20


def test_a_lease_the_store_refused_is_lost_and_no_longer_held() -> None:
    leases = Leases()
    leases.hold([claim("a"), claim("b")])
    lost = leases.renewed(leases.held(), {"b"}, NOW + 20)
    assert lost == {"a"}
    assert leases.held() == [("b", NOW + 20)]


def test_a_lease_let_go_while_the_store_answered_is_not_called_lost() -> None:
    leases = Leases()
    leases.hold([claim("a")])
    asked = leases.held()
    leases.let_go(["a"])  # its outcome was written meanwhile
    assert leases.renewed(asked, set(), NOW + 20) == set()
    assert leases.held() == []


def test_a_newer_claim_of_a_delivery_brings_its_newer_lease_end() -> None:
    leases = Leases()
    leases.hold([claim("a", NOW + 10)])
    asked = leases.held()
    leases.hold([claim("a", NOW + 30)])  # claimed again while the renewal was asked
    assert leases.renewed(asked, set(), NOW + 20) == set()
    assert leases.held() == [("a", NOW + 30)]


def test_a_failed_write_holds_the_leases_let_go_again() -> None:
    leases = Leases()
    leases.hold([claim("a"), claim("b")])
    let_go = leases.let_go(["a", "unknown"])
    assert leases.held() == [("b", NOW + 10)]
    leases.hold_again(let_go)
    assert sorted(leases.held()) == [("a", NOW + 10), ("b", NOW + 10)]


def test_holding_again_keeps_a_newer_claim_of_the_same_delivery() -> None:
    leases = Leases()
    leases.hold([claim("a", NOW + 10)])
    let_go = leases.let_go(["a"])
    leases.hold([claim("a", NOW + 30)])
    leases.hold_again(let_go)
    assert leases.held() == [("a", NOW + 30)]


def test_a_lost_mark_is_taken_once() -> None:
    leases = Leases()
    leases.lose(["a"])
    assert leases.is_lost("a")
    assert leases.take_lost("a") is True
    assert leases.take_lost("a") is False


def test_claiming_a_lost_delivery_again_makes_it_ours_again() -> None:
    leases = Leases()
    leases.lose(["a"])
    leases.hold([dataclasses.replace(claim("a"), lease_until=NOW + 40)])
    assert not leases.is_lost("a")
    assert leases.held() == [("a", NOW + 40)]
