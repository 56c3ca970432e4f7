"""The dashboard's pieces without HTTP: sessions, formatting, endpoint health."""

from __future__ import annotations

import re

import pytest

from dhan_postback.errors import PermissionDenied
from dhan_postback.service.dashboard import EndpointHealth
from dhan_postback.service.dashboard.formatting import (
    display_url,
    format_ist,
    format_utc,
    parse_ist_input,
    pretty_payload,
    short_url,
    update_facts,
)
from dhan_postback.service.dashboard.health import percentile, summarise_endpoints
from dhan_postback.service.dashboard.sessions import Sessions, same_token
from dhan_postback.service.dashboard.sparkline import sparkline
from dhan_postback.service.principal import Principal
from dhan_postback.service.store.base import (
    DeliveryQuery,
    DeliveryStatus,
    MinuteCounts,
    OrderQuery,
    Target,
)
from dhan_postback.service.store.memory import MemoryStore
from dhan_postback.wire import TIME_PATTERN
from tests.helpers.dashboard_seed import CLIENT_A, CLIENT_B, PARTNER_URL, URL_A, URL_B, ist, seed

# Sessions -------------------------------------------------------------------------------------

ADMIN = Principal(is_admin=True)


def test_csrf_comparison_takes_whole_values_of_any_text() -> None:
    assert same_token("tok-1", "tok-1")
    assert not same_token("tok-1", "tok-12")
    assert not same_token("", "tok-1")
    assert not same_token("tök", "tok")


async def test_session_ids_and_csrf_tokens_are_random_and_distinct() -> None:
    sessions = Sessions(MemoryStore())
    one, two = await sessions.new(ADMIN), await sessions.new(ADMIN)
    assert len({one.id, two.id, one.csrf, two.csrf}) == 4
    assert len(one.id) >= 40


async def test_the_store_keeps_only_a_hash_of_the_session_id() -> None:
    store = MemoryStore()
    session = await Sessions(store).new(ADMIN)
    assert await store.get_session(session.id, now=0.0) is None
    assert await Sessions(store).get(session.id) == session  # another node finds it


async def test_expired_session_is_gone() -> None:
    sessions = Sessions(MemoryStore(), lifetime=0.0)
    session = await sessions.new(ADMIN)
    assert await sessions.get(session.id) is None


async def test_flash_messages_are_kept_for_the_next_request() -> None:
    sessions = Sessions(MemoryStore())
    session = await sessions.new(ADMIN)
    session.flash.append("Queued 3 dead deliveries again.")
    await sessions.save_flash(session)
    found = await sessions.get(session.id)
    assert found is not None and found.flash == ["Queued 3 dead deliveries again."]


async def test_new_sessions_evict_only_the_oldest_of_the_same_principal() -> None:
    sessions = Sessions(MemoryStore(), per_principal=2)
    client = Principal(is_admin=False, dhan_client_id="42", token_hash="ab" * 32)
    admin_session = await sessions.new(ADMIN)
    first, second, third = [await sessions.new(client) for _ in range(3)]
    assert await sessions.get(first.id) is None
    assert await sessions.get(second.id) == second and await sessions.get(third.id) == third
    assert await sessions.get(admin_session.id) == admin_session


def test_admin_query_is_unrestricted() -> None:
    query = DeliveryQuery(dhan_client_id="7")
    assert Principal(is_admin=True).restrict(query) == query


def test_token_query_is_its_clients_own_urls() -> None:
    asked = DeliveryQuery(status=DeliveryStatus.DEAD)
    query = Principal(is_admin=False, dhan_client_id="42").restrict(asked)
    assert (query.dhan_client_id, query.target) == ("42", Target.TOKEN)
    assert query.status is DeliveryStatus.DEAD


def test_token_order_query_is_its_clients_own_urls_with_its_bounds_kept() -> None:
    asked = OrderQuery(window=10, limit=3)
    query = Principal(is_admin=False, dhan_client_id="42").restrict(asked)
    assert query == OrderQuery(dhan_client_id="42", target=Target.TOKEN, window=10, limit=3)


def test_token_asking_for_another_client_is_refused_as_the_api_refuses_it() -> None:
    asked = DeliveryQuery(dhan_client_id="7")
    with pytest.raises(PermissionDenied, match="only its own client"):
        Principal(is_admin=False, dhan_client_id="42").restrict(asked)


def test_token_may_not_see_a_partners_copy_or_another_client() -> None:
    holder = Principal(is_admin=False, dhan_client_id="42")
    assert holder.may_see("42", Target.TOKEN)
    assert not holder.may_see("42", Target.PARTNER)
    assert not holder.may_see("43", Target.TOKEN)


# Formatting -----------------------------------------------------------------------------------


def test_times_render_in_ist_and_utc() -> None:
    moment = ist("2026-11-24 09:15:02")
    assert format_ist(moment) == "2026-11-24 09:15:02 IST"
    assert format_utc(moment) == "2026-11-24 03:45:02 UTC"
    assert format_ist(None) == "—"


def test_an_ist_time_without_its_zone_is_a_timestamp_as_the_broker_writes_them() -> None:
    assert re.fullmatch(TIME_PATTERN, format_ist(ist("2026-11-24 09:15:02"), short=True))


def test_filter_times_are_read_as_ist() -> None:
    assert parse_ist_input("2026-11-24T09:15") == ist("2026-11-24 09:15:00")
    assert parse_ist_input("  ") is None
    with pytest.raises(ValueError):
        parse_ist_input("yesterday")


def test_payload_is_indented_in_its_own_field_order() -> None:
    text = pretty_payload(b'{"b":1,"a":{"c":2}}')
    assert text.splitlines() == ["{", '  "b": 1,', '  "a": {', '    "c": 2', "  }", "}"]


def test_payload_that_is_not_json_is_shown_as_text() -> None:
    assert pretty_payload(b'{"legName": ,}') == '{"legName": ,}'
    assert pretty_payload(b"\xff") == "\ufffd"


def test_display_url_drops_userinfo() -> None:
    assert display_url("https://user:pw@hooks.example/x?y=1") == "https://hooks.example/x?y=1"


def test_update_facts_read_the_documented_example(docs_example: bytes) -> None:
    facts = update_facts(docs_example)
    assert (facts.order_status, facts.filled_qty, facts.quantity) == ("PENDING", 1, 5)
    assert facts.symbol == "11536"  # empty tradingSymbol falls back to securityId


def test_update_facts_of_an_unreadable_body_are_placeholders() -> None:
    assert update_facts(b"[]").order_status == "?"


# Endpoint health ------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


async def test_summary_counts_success_backlog_and_dead_per_url() -> None:
    store = MemoryStore()
    await seed(store)
    by_url = {s.url: s for s in await summarise_endpoints(store)}
    assert set(by_url) == {URL_A, URL_B, PARTNER_URL}
    assert by_url[URL_A].success_rate == 1.0
    assert by_url[URL_B].success_rate == 0.0
    assert (by_url[URL_B].backlog, by_url[URL_B].dead) == (1, 3)
    assert by_url[PARTNER_URL].sampled_attempts == 12
    assert by_url[PARTNER_URL].succeeded == 9


async def test_summary_lists_the_worst_endpoint_first() -> None:
    store = MemoryStore()
    await seed(store)
    summaries = await summarise_endpoints(store)
    assert [s.url for s in summaries] == [URL_B, PARTNER_URL, URL_A]


async def test_summary_for_a_client_shows_only_its_urls_and_their_live_state() -> None:
    store = MemoryStore()
    await seed(store)
    live = [
        EndpointHealth(URL_B, "open", 0, 7),
        EndpointHealth("https://other.example/", "closed", 3),
    ]
    client_b = Principal(is_admin=False, dhan_client_id=CLIENT_B)
    summaries = await summarise_endpoints(
        store, scope=client_b.restrict(DeliveryQuery()), live=live
    )
    assert [(s.url, s.live) for s in summaries] == [(URL_B, live[0])]
    client_a = Principal(is_admin=False, dhan_client_id=CLIENT_A)
    own = await summarise_endpoints(store, scope=client_a.restrict(DeliveryQuery()), live=live)
    assert {s.url for s in own} == {URL_A}  # not the partner's copy


async def test_summary_of_an_empty_store_is_empty_but_shows_live_urls_to_admin() -> None:
    live = [EndpointHealth("https://idle.example/hook", "closed", 0)]
    summaries = await summarise_endpoints(MemoryStore(), live=live)
    assert [(s.url, s.sampled_attempts, s.success_rate) for s in summaries] == [
        ("https://idle.example/hook", 0, None)
    ]


def test_a_short_url_keeps_the_end_of_the_path_that_tells_two_urls_apart() -> None:
    one = short_url("https://api.meera-quant.in/postback/dhan/primary/orders", width=36)
    two = short_url("https://api.meera-quant.in/postback/dhan/backup/orders", width=36)
    assert one != two
    assert one.startswith("api.meera-quant.in/…") and one.endswith("primary/orders")
    assert len(one) <= 36 and len(two) <= 36


def test_a_url_that_fits_is_shown_whole_without_its_scheme_or_userinfo() -> None:
    assert short_url("https://user:pw@hooks.example/a?x=1") == "hooks.example/a?x=1"


def test_the_sparkline_has_one_point_per_minute_on_one_scale() -> None:
    until = 1_700_000_000.0  # in the minute starting 1_699_999_980
    last = until // 60 * 60
    counts = [MinuteCounts(last, 4, 2), MinuteCounts(last - 120, 1, 0)]
    chart = sparkline(counts, until=until, minutes=5)
    delivered = [point.split(",") for point in chart.delivered_points.split()]
    failed = [point.split(",") for point in chart.failed_points.split()]
    assert len(delivered) == len(failed) == 5
    heights = [float(y) for _, y in delivered]
    assert heights[0] == heights[1] == heights[3] == chart.baseline  # empty minutes
    assert heights[4] < heights[2] < chart.baseline  # 4 a minute is drawn higher than 1
    assert float(failed[4][1]) < chart.baseline and float(failed[4][1]) > heights[4]
    assert (chart.delivered, chart.failed, chart.top) == (5, 2, 4)


def test_the_sparkline_leaves_out_minutes_outside_its_hour() -> None:
    until = 1_700_000_000.0
    old = MinuteCounts(until // 60 * 60 - 3600, 9, 9)
    chart = sparkline([old], until=until, minutes=60)
    assert (chart.delivered, chart.failed, chart.top) == (0, 0, 1)


async def test_summary_shows_the_breaker_of_every_url_when_the_node_has_one() -> None:
    store = MemoryStore()
    await seed(store)
    summaries = await summarise_endpoints(store, breaker_of=lambda url: "closed")
    assert {s.url: (s.live.breaker if s.live else None) for s in summaries} == {
        URL_A: "closed",
        URL_B: "closed",
        PARTNER_URL: "closed",
    }


async def test_summary_counts_failures_of_the_last_minutes_from_the_store() -> None:
    store = MemoryStore()
    await seed(store)
    at_the_end = ist("2026-11-24 09:31:50")
    by_url = {s.url: s for s in await summarise_endpoints(store, now=at_the_end)}
    assert by_url[URL_A].failed_recently == 0
    assert by_url[URL_B].failed_recently == by_url[URL_B].sampled_attempts == 11
    much_later = {s.url: s for s in await summarise_endpoints(store, now=at_the_end + 3600)}
    assert much_later[URL_B].failed_recently == 0
