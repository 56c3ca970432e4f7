from __future__ import annotations

import asyncio

import pytest

from dhan_postback.errors import AuthenticationError, NotFound, PayloadError, URLRefused
from dhan_postback.service.registry import AdminKey, Registry, hash_secret, new_access_token
from dhan_postback.service.store import Target, TokenRecord
from dhan_postback.service.store.memory import MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


class CountingStore(MemoryStore):
    """Counts the token reads and revocation queries the registry makes."""

    def __init__(self) -> None:
        super().__init__()
        self.token_reads = 0
        self.revocation_reads = 0

    async def get_token(self, token_hash: str) -> TokenRecord | None:
        self.token_reads += 1
        return await super().get_token(token_hash)

    async def revoked_since(self, since: float) -> list[str]:
        self.revocation_reads += 1
        return await super().revoked_since(since)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def registry(store: MemoryStore, clock: Clock) -> Registry:
    return Registry(store, token_ttl=3600, allow_loopback=True, clock=clock, cache_ttl=1.0)


async def test_a_token_is_stored_as_its_hash_with_a_secret_and_an_expiry(
    registry: Registry, store: MemoryStore, clock: Clock
) -> None:
    issued = await registry.issue_token("C1", postback_url="http://127.0.0.1:8999/x")
    stored = await store.get_token(hash_secret(issued.access_token))
    assert stored == issued.record
    assert issued.endpoint is not None and stored.endpoint_id == issued.endpoint.id
    assert issued.endpoint.signing_secret.startswith("whsec_")
    assert stored.expires_at == clock.now + 3600
    assert await store.get_token(issued.access_token) is None


async def test_an_issued_token_authenticates(registry: Registry) -> None:
    issued = await registry.issue_token("C1")
    assert (await registry.authenticate(issued.access_token)).dhan_client_id == "C1"


@pytest.mark.parametrize(
    ("token", "message"), [(None, "missing"), ("", "missing"), ("x", "invalid")]
)
async def test_a_missing_or_unknown_token_does_not_authenticate(
    registry: Registry, token: str | None, message: str
) -> None:
    with pytest.raises(AuthenticationError, match=message):
        await registry.authenticate(token)


async def test_an_expired_token_does_not_authenticate(registry: Registry, clock: Clock) -> None:
    issued = await registry.issue_token("C1")
    clock.now += 3600
    with pytest.raises(AuthenticationError, match="expired"):
        await registry.authenticate(issued.access_token)


async def test_revoking_here_takes_effect_at_once(registry: Registry) -> None:
    issued = await registry.issue_token("C1")
    await registry.authenticate(issued.access_token)  # now cached
    await registry.revoke_token(issued.access_token)
    with pytest.raises(AuthenticationError, match="revoked"):
        await registry.authenticate(issued.access_token)


async def test_revoking_elsewhere_takes_effect_when_the_cache_expires(
    registry: Registry, store: MemoryStore, clock: Clock
) -> None:
    issued = await registry.issue_token("C1")
    await registry.authenticate(issued.access_token)
    await store.revoke_token(issued.record.token_hash, clock.now)  # another node
    clock.now += 1.0
    with pytest.raises(AuthenticationError, match="revoked"):
        await registry.authenticate(issued.access_token)


async def test_a_cached_token_is_not_read_from_the_store_again(
    registry: Registry, store: CountingStore, clock: Clock
) -> None:
    issued = await registry.issue_token("C1")
    for _ in range(3):
        await registry.authenticate(issued.access_token)
        clock.now += 600  # ten minutes apart, well past the revocation check's second
    assert store.token_reads == 1


async def test_a_cached_token_is_read_again_once_its_cache_lifetime_is_over(
    store: CountingStore, clock: Clock
) -> None:
    registry = Registry(store, token_ttl=86400, clock=clock, token_cache_ttl=60)
    issued = await registry.issue_token("C1")
    await registry.authenticate(issued.access_token)
    clock.now += 60
    await registry.authenticate(issued.access_token)
    assert store.token_reads == 2


async def test_a_cached_token_expires_on_time(registry: Registry, clock: Clock) -> None:
    issued = await registry.issue_token("C1")
    clock.now += 3599
    await registry.authenticate(issued.access_token)  # cached, a second to live
    clock.now += 1
    with pytest.raises(AuthenticationError, match="expired"):
        await registry.authenticate(issued.access_token)


async def test_revoking_elsewhere_takes_effect_long_after_the_token_was_cached(
    registry: Registry, store: MemoryStore, clock: Clock
) -> None:
    issued = await registry.issue_token("C1")
    await registry.authenticate(issued.access_token)
    clock.now += 1800
    await registry.authenticate(issued.access_token)  # still cached
    await store.revoke_token(issued.record.token_hash, clock.now)  # another node
    clock.now += 1.0
    with pytest.raises(AuthenticationError, match="revoked"):
        await registry.authenticate(issued.access_token)


async def test_a_revocation_from_a_node_whose_clock_is_behind_is_heard(
    registry: Registry, store: MemoryStore, clock: Clock
) -> None:
    issued = await registry.issue_token("C1")
    await registry.authenticate(issued.access_token)
    clock.now += 5
    await registry.authenticate(issued.access_token)
    await store.revoke_token(issued.record.token_hash, clock.now - 30)  # its clock: 30 s late
    clock.now += 1.0
    with pytest.raises(AuthenticationError, match="revoked"):
        await registry.authenticate(issued.access_token)


async def test_revocations_are_asked_for_once_per_cache_ttl_however_many_requests(
    registry: Registry, store: CountingStore, clock: Clock
) -> None:
    issued = await registry.issue_token("C1")
    await asyncio.gather(*(registry.authenticate(issued.access_token) for _ in range(50)))
    clock.now += 0.5
    await asyncio.gather(*(registry.authenticate(issued.access_token) for _ in range(50)))
    assert store.revocation_reads == 1
    clock.now += 0.5
    await registry.authenticate(issued.access_token)
    assert store.revocation_reads == 2


async def test_a_full_token_cache_lets_the_least_recently_used_go(
    store: CountingStore, clock: Clock
) -> None:
    registry = Registry(store, token_ttl=86400, clock=clock, cache_size=2)
    first, second, third = [await registry.issue_token(f"C{n}") for n in range(3)]
    for issued in (first, second, first, third):  # the third pushes out the second
        await registry.authenticate(issued.access_token)
    assert store.token_reads == 3
    await registry.authenticate(first.access_token)
    await registry.authenticate(third.access_token)
    assert store.token_reads == 3
    await registry.authenticate(second.access_token)
    assert store.token_reads == 4


async def test_revoking_an_unknown_token_is_not_found(registry: Registry) -> None:
    with pytest.raises(NotFound):
        await registry.revoke_token("nope")


async def test_a_refused_url_names_the_field_and_keeps_the_reason() -> None:
    strict = Registry(MemoryStore(), token_ttl=60, allow_loopback=False)
    with pytest.raises(URLRefused) as caught:
        await strict.issue_token("C1", postback_url="http://127.0.0.1/hook")
    assert caught.value.reason == "loopback"
    assert "postbackUrl" in caught.value.message


async def test_a_token_needs_an_existing_partner(registry: Registry) -> None:
    with pytest.raises(PayloadError, match="partnerId"):
        await registry.issue_token("C1", partner_id="ghost")


async def test_updates_go_to_the_tokens_url_then_the_partners(registry: Registry) -> None:
    await registry.put_partner("acme", "http://127.0.0.1:8999/partner")
    issued = await registry.issue_token(
        "C1", postback_url="http://127.0.0.1:8999/own", partner_id="acme"
    )
    destinations = await registry.destinations(issued.record)
    assert [(d.target, d.url, d.partner_id) for d in destinations] == [
        (Target.TOKEN, "http://127.0.0.1:8999/own", None),
        (Target.PARTNER, "http://127.0.0.1:8999/partner", "acme"),
    ]


async def test_a_token_without_url_or_partner_has_no_destination(registry: Registry) -> None:
    issued = await registry.issue_token("C1")
    assert await registry.destinations(issued.record) == []


def test_the_admin_key_is_checked() -> None:
    key = AdminKey("s3cret")
    key.check("s3cret")
    for wrong in (None, "", "s3cret ", "other"):
        with pytest.raises(AuthenticationError):
            key.check(wrong)


def test_without_an_admin_key_the_admin_api_is_closed() -> None:
    with pytest.raises(AuthenticationError, match="disabled"):
        AdminKey(None).check("anything")


def test_no_access_token_starts_with_a_dash_that_a_command_line_reads_as_an_option() -> None:
    # One in 64 URL-safe tokens would: 2,000 of them all pass by chance about once in e^31.
    assert not [t for t in (new_access_token() for _ in range(2000)) if t.startswith("-")]


async def test_preloaded_tokens_authenticate_without_a_read_each(
    registry: Registry, store: CountingStore, clock: Clock
) -> None:
    live = [await registry.issue_token(f"C{n}") for n in range(3)]
    revoked = await registry.issue_token("C9")
    await store.revoke_token(revoked.record.token_hash, clock.now)
    clock.now += 1

    assert await registry.preload() == 3
    for issued in live:
        await registry.authenticate(issued.access_token)
    assert store.token_reads == 0
    with pytest.raises(AuthenticationError, match="revoked"):
        await registry.authenticate(revoked.access_token)


async def test_preloading_a_small_cache_keeps_the_newest_tokens(
    store: CountingStore, clock: Clock
) -> None:
    registry = Registry(store, token_ttl=86400, clock=clock, cache_size=2)
    tokens = []
    for n in range(3):
        tokens.append(await registry.issue_token(f"C{n}"))
        clock.now += 1

    await registry.preload()
    await registry.authenticate(tokens[2].access_token)
    await registry.authenticate(tokens[1].access_token)
    assert store.token_reads == 0
    await registry.authenticate(tokens[0].access_token)
    assert store.token_reads == 1
