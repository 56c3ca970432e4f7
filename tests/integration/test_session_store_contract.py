"""The dashboard-session part of the Store contract, on every backend (memory, SQLite,
PostgreSQL): what :class:`~dhan_postback.service.dashboard.sessions.Sessions` relies on."""

from __future__ import annotations

import pytest

from dhan_postback.service.store import SessionRecord, Store

from .conftest import StoreMaker

NOW = 1_700_000_000.0


def session(
    number: int, principal: str = "admin", *, expires_at: float = NOW + 3600
) -> SessionRecord:
    return SessionRecord(
        id_hash=f"{number:064x}",
        principal=principal,
        dhan_client_id=None if principal == "admin" else "1000000001",
        token_hash=None if principal == "admin" else "c" * 64,
        created_at=NOW + number,
        expires_at=expires_at,
    )


async def test_a_stored_session_is_found_by_its_id_hash(store: Store) -> None:
    await store.add_session(session(1, "token:" + "c" * 64), keep=5, now=NOW)
    assert await store.get_session(session(1).id_hash, now=NOW) == session(1, "token:" + "c" * 64)
    assert await store.get_session(session(2).id_hash, now=NOW) is None


async def test_an_expired_session_is_not_found(store: Store) -> None:
    await store.add_session(session(1, expires_at=NOW + 10), keep=5, now=NOW)
    assert await store.get_session(session(1).id_hash, now=NOW + 10) is None


async def test_adding_a_session_forgets_every_expired_one(store: Store) -> None:
    await store.add_session(session(1, "admin", expires_at=NOW + 10), keep=5, now=NOW)
    await store.add_session(session(2, "token:x"), keep=5, now=NOW + 20)
    assert await store.get_session(session(1).id_hash, now=NOW) is None


async def test_beyond_the_cap_the_principals_oldest_session_goes(store: Store) -> None:
    for number in range(1, 4):
        await store.add_session(session(number, "token:x"), keep=2, now=NOW)
    assert await store.get_session(session(1).id_hash, now=NOW) is None
    assert await store.get_session(session(2).id_hash, now=NOW) is not None
    assert await store.get_session(session(3).id_hash, now=NOW) is not None


async def test_the_cap_never_evicts_another_principals_sessions(store: Store) -> None:
    await store.add_session(session(1, "admin"), keep=2, now=NOW)
    for number in range(2, 12):
        await store.add_session(session(number, "token:x"), keep=2, now=NOW)
    assert await store.get_session(session(1).id_hash, now=NOW) == session(1, "admin")


async def test_an_ended_session_is_gone(store: Store) -> None:
    await store.add_session(session(1), keep=5, now=NOW)
    await store.end_session(session(1).id_hash)
    assert await store.get_session(session(1).id_hash, now=NOW) is None


async def test_flash_messages_are_stored_with_the_session(store: Store) -> None:
    await store.add_session(session(1), keep=5, now=NOW)
    await store.set_session_flash(session(1).id_hash, "Queued 3 dead deliveries again.")
    found = await store.get_session(session(1).id_hash, now=NOW)
    assert found is not None and found.flash == "Queued 3 dead deliveries again."


async def test_sessions_survive_closing_and_reopening(store_maker: StoreMaker) -> None:
    if not store_maker.durable:
        pytest.skip(f"{store_maker.backend} keeps nothing across stores")
    first = store_maker()
    await first.open()
    await first.add_session(session(1), keep=5, now=NOW)
    await first.close()
    second = store_maker()
    await second.open()
    try:
        assert await second.get_session(session(1).id_hash, now=NOW) == session(1)
    finally:
        await second.close()
