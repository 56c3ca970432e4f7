"""Endpoints and their signing secrets in the store, on every backend (``BACKENDS``).

The rules are in the docstring of ``dhan_postback.service.store.base``: one endpoint per
owner and URL, its secret reused by every later token, a rotation's old secret signing
second until its grace period ends, and stores from before endpoints migrated without
breaking any receiver.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from dhan_postback.service.registry import register_partner, register_token
from dhan_postback.service.store import (
    DeliveryStatus,
    EndpointActivity,
    EndpointKind,
    EndpointRecord,
    Store,
    Target,
    create_store,
)
from dhan_postback.service.store.queries import load_queries, migrations
from dhan_postback.service.store.sqlite import sqlite_path

from .conftest import StoreMaker
from .test_store_contract import (
    LEASE,
    NOW,
    OTHER_TOKEN,
    PARTNER,
    PARTNER_SECRET,
    PARTNER_URL,
    TOKEN,
    TOKEN_SECRET,
    URL,
    new,
    outcome,
)

NEW_SECRET = "whsec_bmV3LXNlY3JldA=="
NEWER_SECRET = "whsec_bmV3ZXItc2VjcmV0"


def endpoint(
    owner_id: str = TOKEN.dhan_client_id,
    url: str = URL,
    *,
    kind: EndpointKind = EndpointKind.CLIENT,
    secret: str = TOKEN_SECRET,
    endpoint_id: str = "ep_1",
) -> EndpointRecord:
    return EndpointRecord(endpoint_id, kind, owner_id, url, secret, NOW - 50)


@pytest.fixture
async def registered(store: Store) -> Store:
    """TOKEN's client with its endpoint at URL, and the partner with its own."""
    await register_partner(store, PARTNER, PARTNER_SECRET)
    await register_token(store, TOKEN, TOKEN_SECRET)
    return store


async def endpoint_at(store: Store, url: str) -> EndpointRecord:
    [found] = [e for e in await store.list_endpoints() if e.url == url]
    return found


# One endpoint per owner and URL ------------------------------------------------------------


async def test_an_endpoint_is_stored_and_read_back(store: Store) -> None:
    stored = await store.ensure_endpoint(endpoint())
    assert stored == endpoint()
    assert await store.get_endpoint("ep_1") == endpoint()
    assert await store.get_endpoint("ep_nobody") is None
    assert stored.paused is False


async def test_a_second_endpoint_for_the_same_owner_and_url_is_the_first(store: Store) -> None:
    await store.ensure_endpoint(endpoint())
    again = await store.ensure_endpoint(endpoint(secret=NEW_SECRET, endpoint_id="ep_2"))
    assert again == endpoint()
    assert [e.id for e in await store.list_endpoints()] == ["ep_1"]


async def test_owners_and_kinds_each_get_their_own_endpoint_at_one_url(store: Store) -> None:
    await store.ensure_endpoint(endpoint())
    await store.ensure_endpoint(endpoint("1000000002", endpoint_id="ep_2"))
    await store.ensure_endpoint(
        endpoint(TOKEN.dhan_client_id, kind=EndpointKind.PARTNER, endpoint_id="ep_3")
    )
    assert [e.id for e in await store.list_endpoints()] == ["ep_1", "ep_2", "ep_3"]


async def test_a_renewed_token_is_signed_by_the_same_endpoint_secret(registered: Store) -> None:
    renewed = dataclasses.replace(TOKEN, token_hash="9" * 64, created_at=NOW)
    reused = await register_token(registered, renewed, NEW_SECRET)
    assert reused is not None and reused.signing_secret == TOKEN_SECRET
    await registered.enqueue([new("msg_1", token=renewed)])
    [claim] = await registered.claim(limit=10, now=NOW, lease=LEASE)
    assert claim.signing_secret == TOKEN_SECRET


# Tokens -------------------------------------------------------------------------------------


async def test_tokens_are_listed_newest_first_with_their_endpoint(registered: Store) -> None:
    renewed = dataclasses.replace(TOKEN, token_hash="9" * 64, created_at=NOW)
    await register_token(registered, renewed, NEW_SECRET)
    await register_token(registered, OTHER_TOKEN, NEW_SECRET)
    ours = await endpoint_at(registered, URL)
    listed = await registered.list_tokens(TOKEN.dhan_client_id)
    assert [t.token_hash for t in listed] == [renewed.token_hash, TOKEN.token_hash]
    assert {t.endpoint_id for t in listed} == {ours.id}
    assert len(await registered.list_tokens()) == 3


async def test_a_token_without_a_url_has_no_endpoint(store: Store) -> None:
    bare = dataclasses.replace(TOKEN, postback_url=None)
    assert await register_token(store, bare, TOKEN_SECRET) is None
    stored = await store.get_token(bare.token_hash)
    assert stored is not None and stored.endpoint_id is None


# Rotation -----------------------------------------------------------------------------------


async def test_a_rotation_signs_with_the_new_secret_first_and_the_old_one_until_the_grace_ends(
    registered: Store,
) -> None:
    ours = await endpoint_at(registered, URL)
    rotated = await registered.rotate_secret(ours.id, NEW_SECRET, now=NOW, keep_until=NOW + 60)
    assert rotated is not None
    assert rotated.signing_secret == NEW_SECRET and rotated.secret_rotated_at == NOW
    assert rotated.grace_until(NOW) == NOW + 60
    assert await registered.get_endpoint(ours.id) == rotated
    await registered.enqueue([new("msg_1"), new("msg_2", order_id="order-2")])
    [during] = await registered.claim(limit=1, now=NOW + 59, lease=LEASE)
    assert (during.signing_secret, during.previous_secrets) == (NEW_SECRET, (TOKEN_SECRET,))
    [after] = await registered.claim(limit=1, now=NOW + 60, lease=LEASE)
    assert (after.signing_secret, after.previous_secrets) == (NEW_SECRET, ())


async def test_a_second_rotation_in_the_grace_period_keeps_both_old_secrets_signing(
    registered: Store,
) -> None:
    ours = await endpoint_at(registered, URL)
    await registered.rotate_secret(ours.id, NEW_SECRET, now=NOW, keep_until=NOW + 60)
    await registered.rotate_secret(ours.id, NEWER_SECRET, now=NOW + 10, keep_until=NOW + 100)
    await registered.enqueue([new("msg_1"), new("msg_2", order_id="order-2")])
    [early] = await registered.claim(limit=1, now=NOW + 20, lease=LEASE)
    assert early.signing_secret == NEWER_SECRET
    assert early.previous_secrets == (NEW_SECRET, TOKEN_SECRET)
    [late] = await registered.claim(limit=1, now=NOW + 70, lease=LEASE)
    assert late.previous_secrets == (NEW_SECRET,)


async def test_a_partner_endpoint_rotates_alone(registered: Store) -> None:
    partners = await endpoint_at(registered, PARTNER_URL)
    await registered.rotate_secret(partners.id, NEW_SECRET, now=NOW, keep_until=NOW + 60)
    await registered.enqueue(
        [new("msg_own"), new("msg_partner", url=PARTNER_URL, target=Target.PARTNER)]
    )
    claims = await registered.claim(limit=10, now=NOW, lease=LEASE)
    secrets = {claim.id: (claim.signing_secret, claim.previous_secrets) for claim in claims}
    assert secrets == {
        "msg_own": (TOKEN_SECRET, ()),
        "msg_partner": (NEW_SECRET, (PARTNER_SECRET,)),
    }


async def test_rotating_an_unknown_endpoint_says_so(store: Store) -> None:
    assert await store.rotate_secret("ep_nobody", NEW_SECRET, now=NOW, keep_until=NOW) is None


async def test_a_rotation_survives_reopening(store_maker: StoreMaker) -> None:
    if not store_maker.durable:
        pytest.skip(f"{store_maker.backend} keeps nothing across stores")
    first = store_maker()
    await first.open()
    await first.ensure_endpoint(endpoint())
    rotated = await first.rotate_secret("ep_1", NEW_SECRET, now=NOW, keep_until=NOW + 60)
    await first.close()
    second = store_maker()
    await second.open()
    try:
        assert await second.get_endpoint("ep_1") == rotated
    finally:
        await second.close()


# Activity -----------------------------------------------------------------------------------


async def test_an_endpoints_activity_is_its_own_backlog_and_last_answer(
    registered: Store,
) -> None:
    ours = await endpoint_at(registered, URL)
    partners = await endpoint_at(registered, PARTNER_URL)
    assert await registered.endpoint_activity(ours) == EndpointActivity(0, None)
    await registered.enqueue(
        [
            new("msg_1"),
            new("msg_2"),
            new("msg_3", order_id="order-3"),
            new("msg_p", url=PARTNER_URL, target=Target.PARTNER),
        ]
    )
    claims = await registered.claim(limit=10, now=NOW, lease=LEASE)
    first = next(claim for claim in claims if claim.id == "msg_1")
    await registered.finish([outcome(first, "delivered", at=NOW + 1)])
    activity = await registered.endpoint_activity(ours)
    assert activity.backlog == 2
    assert activity.last_attempt is not None
    assert (activity.last_attempt.delivery_id, activity.last_attempt.status_code) == ("msg_1", 200)
    partner_activity = await registered.endpoint_activity(partners)
    assert (partner_activity.backlog, partner_activity.last_attempt) == (1, None)
    assert (await registered.counts())[DeliveryStatus.PENDING] == 3


# Migrating a store from before endpoints ----------------------------------------------------

OLD_SECRET = "whsec_b2xkLXNlY3JldA=="
OLDER_SECRET = "whsec_b2xkZXItc2VjcmV0"
OLD_PARTNER_SECRET = "whsec_b2xkLXBhcnRuZXI="
_TOKENS = [
    # token_hash, client, url, partner, secret, created_at
    ("1" * 64, "1000000001", URL, "acme", OLDER_SECRET, NOW - 7200),
    ("2" * 64, "1000000001", URL, "acme", OLD_SECRET, NOW - 3600),
    ("3" * 64, "1000000002", PARTNER_URL + "/own", None, TOKEN_SECRET, NOW - 3600),
]


def _version_2_database(backend: str, url: str) -> None:
    """A database as dhan-postback left it before endpoints (the schema version before the
    migration that makes them), tokens and a partner with their own secrets, one delivery
    pending to each URL."""
    name = "postgres" if backend == "postgres" else "sqlite"
    every = migrations(load_queries(name))
    [endpoints_version] = [v for v, script in every if "CREATE TABLE endpoints" in script]
    scripts = [script for version, script in every if version < endpoints_version]
    mark = "%s" if backend == "postgres" else "?"
    rows: list[tuple[str, tuple[object, ...]]] = [
        (
            "INSERT INTO tokens (token_hash, dhan_client_id, postback_url, partner_id, "
            "signing_secret, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*token, token[-1] + 86400),
        )
        for token in _TOKENS
    ]
    rows.append(
        (
            "INSERT INTO partners (partner_id, postback_url, signing_secret, created_at) "
            "VALUES (?, ?, ?, ?)",
            ("acme", PARTNER_URL, OLD_PARTNER_SECRET, NOW - 9000),
        )
    )
    rows += [
        (
            "INSERT INTO deliveries (id, dhan_client_id, token_hash, target, partner_id, url, "
            "order_id, payload, created_at, next_attempt_at, is_head) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *(delivery_id, "1000000001", "2" * 64, target, partner, url, delivery_id),
                *(b"{}", NOW, NOW, True),
            ),
        )
        for delivery_id, target, partner, url in (
            ("msg_own", "token", None, URL),
            ("msg_partner", "partner", "acme", PARTNER_URL),
        )
    ]
    if backend == "sqlite":
        with sqlite3.connect(sqlite_path(url)) as conn:
            for script in scripts:
                conn.executescript(script)
            for statement, values in rows:
                conn.execute(statement, values)
            conn.execute(f"PRAGMA user_version = {len(scripts)}")
        return
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(load_queries("postgres")["create_schema_version"])
        for version, script in enumerate(scripts, start=1):
            pg.execute(script)
            pg.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        for statement, values in rows:
            pg.execute(statement.replace("?", mark), values)


@pytest.fixture
async def migrated(store_maker: StoreMaker) -> AsyncIterator[Store]:
    if not store_maker.durable:
        pytest.skip(f"{store_maker.backend} has nothing to migrate")
    _version_2_database(store_maker.backend, store_maker.url)
    store = create_store(store_maker.url)
    await store.open()
    yield store
    await store.close()


async def test_migration_gives_each_client_url_an_endpoint_with_its_newest_tokens_secret(
    migrated: Store,
) -> None:
    endpoints = {(e.kind, e.owner_id, e.url): e for e in await migrated.list_endpoints()}
    ours = endpoints[(EndpointKind.CLIENT, "1000000001", URL)]
    assert ours.signing_secret == OLD_SECRET
    assert endpoints[(EndpointKind.CLIENT, "1000000002", PARTNER_URL + "/own")].signing_secret == (
        TOKEN_SECRET
    )
    assert endpoints[(EndpointKind.PARTNER, "acme", PARTNER_URL)].signing_secret == (
        OLD_PARTNER_SECRET
    )
    assert len(endpoints) == 3
    tokens = await migrated.list_tokens("1000000001")
    assert {t.endpoint_id for t in tokens} == {ours.id}


async def test_migration_keeps_the_older_tokens_secrets_signing_for_a_day(
    migrated: Store,
) -> None:
    now = time.time()
    [own] = [c for c in await migrated.claim(limit=10, now=now, lease=LEASE) if c.id == "msg_own"]
    assert (own.signing_secret, own.previous_secrets) == (OLD_SECRET, (OLDER_SECRET,))
    ours = await endpoint_at(migrated, URL)
    until = ours.grace_until(now)
    assert until is not None and now + 86400 - 600 < until <= now + 86400 + 1


async def test_migration_signs_pending_partner_deliveries_with_the_partners_secret(
    migrated: Store,
) -> None:
    claims = await migrated.claim(limit=10, now=time.time(), lease=LEASE)
    [partner] = [c for c in claims if c.id == "msg_partner"]
    assert (partner.signing_secret, partner.previous_secrets) == (OLD_PARTNER_SECRET, ())


async def test_the_sqlite_migration_leaves_no_secret_in_the_tokens_table(tmp_path: Path) -> None:
    """Tokens and partners sign nothing any more: their secret columns are gone."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _version_2_database("sqlite", url)
    store = create_store(url)
    await store.open()
    await store.close()
    with sqlite3.connect(sqlite_path(url)) as conn:
        token_columns = {row[1] for row in conn.execute("PRAGMA table_info(tokens)")}
        partner_columns = {row[1] for row in conn.execute("PRAGMA table_info(partners)")}
    assert "signing_secret" not in token_columns | partner_columns
