"""The delivery dashboard over real HTTP: uvicorn on loopback, a seeded store, httpx as the browser.

The dashboard is mounted at ``/dashboard`` inside a parent app, as the service mounts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import unescape
from typing import Any

import httpx
import pytest

from dhan_postback.errors import StoreUnavailable
from dhan_postback.service.dashboard import EndpointHealth
from dhan_postback.service.dashboard.app import PAGE_SIZE
from dhan_postback.service.store.base import DeliveryStatus, NewDelivery, Target
from dhan_postback.service.store.memory import MemoryStore
from tests.helpers.dashboard_seed import (
    CLIENT_A,
    CLIENT_B,
    PARTNER_URL,
    URL_A,
    URL_B,
    Seeded,
    dashboard_app,
    seed,
)
from tests.helpers.servers import UvicornThread

ADMIN_KEY = "adm_" + "k" * 40


@dataclass
class Dashboard:
    """A running dashboard and what a test needs to drive and inspect it."""

    url: str
    store: MemoryStore
    seeded: Seeded
    commits: list[float] = field(default_factory=list)

    def run(self, coro: Any) -> Any:
        """Run a store coroutine from the test thread (MemoryStore has no loop affinity)."""
        return asyncio.run(coro)


def serve(
    store: MemoryStore,
    *,
    endpoint_health: Callable[[], list[EndpointHealth]] | None = None,
    commits: list[float] | None = None,
) -> UvicornThread:
    on_commit = (lambda: commits.append(time.time())) if commits is not None else None
    live = endpoint_health() if endpoint_health is not None else None
    return UvicornThread(dashboard_app(store, admin_key=ADMIN_KEY, live=live, on_commit=on_commit))


@pytest.fixture
def dash() -> Iterator[Dashboard]:
    store = MemoryStore()
    seeded = asyncio.run(seed(store))
    commits: list[float] = []
    live = [EndpointHealth(url=URL_B, breaker="open", in_flight=0, consecutive_failures=7)]
    with serve(store, endpoint_health=lambda: live, commits=commits) as server:
        yield Dashboard(f"{server.url}/dashboard", store, seeded, commits)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def browser(dash: Dashboard) -> httpx.Client:
    return httpx.Client(base_url=dash.url, follow_redirects=False, timeout=10)


@contextlib.contextmanager
def logged_in(dash: Dashboard, credential: str) -> Iterator[httpx.Client]:
    with browser(dash) as client:
        form = client.get("/login")
        response = client.post(
            "/login", data={"credential": credential, "csrf": csrf_of(form.text)}
        )
        assert response.status_code == 303, response.text
        yield client


def admin(dash: Dashboard) -> contextlib.AbstractContextManager[httpx.Client]:
    return logged_in(dash, ADMIN_KEY)


def delivery_ids(html: str) -> set[str]:
    return set(re.findall(r'/deliveries/(msg_[A-Za-z0-9]+)"', html))


# Login and sessions ---------------------------------------------------------------------------


def test_pages_redirect_to_login_when_nobody_is_logged_in(dash: Dashboard) -> None:
    with browser(dash) as client:
        response = client.get("/deliveries")
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login"


def test_admin_key_logs_in_and_sees_every_client(dash: Dashboard) -> None:
    with admin(dash) as client:
        html = client.get("/deliveries").text
    assert CLIENT_A in html and CLIENT_B in html
    assert "admin" in html


def test_wrong_credential_is_refused_with_a_friendly_page(dash: Dashboard) -> None:
    with browser(dash) as client:
        form = client.get("/login")
        response = client.post("/login", data={"credential": "nope", "csrf": csrf_of(form.text)})
        assert response.status_code == 401
        assert "not valid" in response.text
        assert client.get("/deliveries").status_code == 303


def test_login_without_csrf_token_is_refused(dash: Dashboard) -> None:
    with browser(dash) as client:
        client.get("/login")
        response = client.post("/login", data={"credential": ADMIN_KEY})
        assert response.status_code == 403
        assert client.get("/deliveries").status_code == 303


def test_session_cookie_is_httponly_strict_and_holds_no_credential(dash: Dashboard) -> None:
    with browser(dash) as client:
        form = client.get("/login")
        response = client.post("/login", data={"credential": ADMIN_KEY, "csrf": csrf_of(form.text)})
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/dashboard/" in cookie
    assert "Secure" not in cookie  # plain http here
    assert ADMIN_KEY not in cookie and ADMIN_KEY[4:20] not in cookie


def test_session_cookie_is_secure_when_served_over_https(dash: Dashboard) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1, as behind a TLS-terminating proxy.
    with httpx.Client(base_url=dash.url, headers={"x-forwarded-proto": "https"}) as client:
        response = client.get("/login")
    assert "Secure" in response.headers["set-cookie"]


def test_login_gives_a_new_session_id(dash: Dashboard) -> None:
    with browser(dash) as client:
        client.cookies.set("dpb_session", "planted-by-someone-else")
        form = client.get("/login")
        response = client.post("/login", data={"credential": ADMIN_KEY, "csrf": csrf_of(form.text)})
    assert response.cookies["dpb_session"] != "planted-by-someone-else"


def test_the_login_form_sets_only_its_csrf_cookie(dash: Dashboard) -> None:
    with browser(dash) as client:
        form = client.get("/login")
    assert set(form.cookies) == {"dpb_login"}
    assert form.cookies["dpb_login"] == csrf_of(form.text)


def test_login_with_another_browsers_csrf_token_is_refused(dash: Dashboard) -> None:
    with browser(dash) as theirs, browser(dash) as mine:
        their_token = csrf_of(theirs.get("/login").text)
        mine.get("/login")
        response = mine.post("/login", data={"credential": ADMIN_KEY, "csrf": their_token})
        assert response.status_code == 403


def test_logout_ends_the_session_for_good(dash: Dashboard) -> None:
    with admin(dash) as client:
        session_id = client.cookies["dpb_session"]
        page = client.get("/deliveries")
        response = client.post("/logout", data={"csrf": csrf_of(page.text)})
        assert response.status_code == 303
    with browser(dash) as replayed_cookie:
        replayed_cookie.cookies.set("dpb_session", session_id)
        assert replayed_cookie.get("/deliveries").status_code == 303


def test_logout_without_csrf_token_keeps_the_session(dash: Dashboard) -> None:
    with admin(dash) as client:
        assert client.post("/logout", data={}).status_code == 403
        assert client.get("/deliveries").status_code == 200


def test_revoked_token_ends_its_session(dash: Dashboard) -> None:
    with logged_in(dash, dash.seeded.token_a) as client:
        assert client.get("/deliveries").status_code == 200
        dash.run(dash.store.revoke_token(dash.seeded.token_hashes[0], time.time()))
        assert client.get("/deliveries").status_code == 303


# What a token may see -------------------------------------------------------------------------


def test_token_asking_for_another_clients_deliveries_is_refused_as_by_the_api(
    dash: Dashboard,
) -> None:
    with logged_in(dash, dash.seeded.token_b) as client:
        refused = client.get("/deliveries", params={"client": CLIENT_A})
    assert refused.status_code == 403
    assert "only its own client" in refused.text
    assert CLIENT_A not in refused.text


def test_token_sees_only_its_own_clients_deliveries(dash: Dashboard) -> None:
    with logged_in(dash, dash.seeded.token_b) as client:
        html = client.get("/deliveries").text
    assert CLIENT_B in html
    assert CLIENT_A not in html
    assert delivery_ids(html) == {
        dash.seeded.ids[k]
        for k in ("nifty-pending", "nifty-part", "nifty-traded", "b-sbin-pending")
    }


def test_token_gets_404_for_another_clients_delivery(dash: Dashboard) -> None:
    other = dash.seeded.ids["rel-traded"]
    with logged_in(dash, dash.seeded.token_b) as client:
        response = client.get(f"/deliveries/{other}")
    assert response.status_code == 404
    assert "No such delivery" in response.text
    assert "112611240001" not in response.text


def test_token_sees_its_own_urls_but_not_its_partners_copies(dash: Dashboard) -> None:
    partner_copy = dash.seeded.ids["rel-traded@partner"]
    with logged_in(dash, dash.seeded.token_a) as client:
        listing = client.get("/deliveries").text
        response = client.get(f"/deliveries/{partner_copy}")
    assert dash.seeded.ids["rel-traded"] in delivery_ids(listing)
    assert partner_copy not in listing and PARTNER_URL not in listing
    assert response.status_code == 404


def test_token_cannot_replay_another_clients_delivery(dash: Dashboard) -> None:
    other = dash.seeded.ids["rel-traded"]
    with logged_in(dash, dash.seeded.token_b) as client:
        page = client.get("/deliveries")
        assert client.get(f"/deliveries/{other}/replay").status_code == 404
        response = client.post(f"/deliveries/{other}/replay", data={"csrf": csrf_of(page.text)})
    assert response.status_code == 404
    assert dash.run(dash.store.get_delivery(other)).status is DeliveryStatus.DELIVERED
    assert dash.commits == []


def test_token_cannot_replay_dead_in_bulk(dash: Dashboard) -> None:
    with logged_in(dash, dash.seeded.token_b) as client:
        page = client.get("/deliveries")
        assert client.get("/replay-dead").status_code == 403
        response = client.post("/replay-dead", data={"csrf": csrf_of(page.text)})
    assert response.status_code == 403
    assert dash.run(dash.store.counts())[DeliveryStatus.DEAD] == 3


def test_token_sees_only_its_own_endpoints(dash: Dashboard) -> None:
    with logged_in(dash, dash.seeded.token_b) as client:
        html = client.get("/endpoints").text
    assert URL_B in html
    assert URL_A not in html and PARTNER_URL not in html


def test_token_sees_only_its_own_orders(dash: Dashboard) -> None:
    with logged_in(dash, dash.seeded.token_b) as client:
        html = client.get("/orders/112611240001").text
    assert "No deliveries for order 112611240001" in html


def test_no_secret_is_ever_rendered(dash: Dashboard) -> None:
    secrets = [ADMIN_KEY, dash.seeded.token_a, dash.seeded.token_b]
    secrets += dash.seeded.secrets + dash.seeded.token_hashes
    secrets += [secret.removeprefix("whsec_") for secret in dash.seeded.secrets]
    paths = ["/login", "/deliveries", "/endpoints", "/orders/112611240003", "/replay-dead"]
    paths += [f"/deliveries/{i}" for i in dash.seeded.ids.values()]
    paths += [f"/deliveries/{i}/replay" for i in dash.seeded.ids.values()]
    for credential in (ADMIN_KEY, dash.seeded.token_a):
        with logged_in(dash, credential) as client:
            for path in paths:
                html = client.get(path).text
                leaked = [s[:8] for s in secrets if s in html]
                assert not leaked, f"{path} renders a secret starting {leaked}"
                assert not re.search(r"v1,[A-Za-z0-9+/]", html), f"{path} renders a signature"


# Deliveries list ------------------------------------------------------------------------------


def test_status_filter_lists_only_that_status(dash: Dashboard) -> None:
    with admin(dash) as client:
        html = client.get("/deliveries", params={"status": "dead"}).text
    assert delivery_ids(html) == {
        dash.seeded.ids[k] for k in ("nifty-pending", "nifty-part", "nifty-traded")
    }


def test_client_and_order_filters_combine(dash: Dashboard) -> None:
    with admin(dash) as client:
        html = client.get(
            "/deliveries", params={"client": CLIENT_A, "order_id": "112611240004"}
        ).text
    assert delivery_ids(html) == {
        dash.seeded.ids[k]
        for k in (
            "hdfc-pending",
            "hdfc-cancelled",
            "hdfc-pending@partner",
            "hdfc-cancelled@partner",
        )
    }


def test_time_range_is_read_in_ist(dash: Dashboard) -> None:
    with admin(dash) as client:
        html = client.get(
            "/deliveries", params={"since": "2026-11-24T09:30", "until": "2026-11-24T09:32"}
        ).text
    assert delivery_ids(html) == {
        dash.seeded.ids[k] for k in ("tata-rejected", "tata-rejected@partner", "b-sbin-pending")
    }


def test_bad_filter_values_get_a_friendly_400(dash: Dashboard) -> None:
    with admin(dash) as client:
        bad_status = client.get("/deliveries", params={"status": "lost"})
        bad_time = client.get("/deliveries", params={"since": "yesterday"})
        bad_cursor = client.get("/deliveries", params={"cursor": "x"})
    for response in (bad_status, bad_time, bad_cursor):
        assert response.status_code == 400
        assert "<html" in response.text and "Traceback" not in response.text
    assert "pending, delivered or dead" in bad_status.text
    assert "IST" in bad_time.text


def test_cursor_paging_walks_every_delivery_once(dash: Dashboard) -> None:
    extra = [
        NewDelivery(
            id=f"msg_extra{n:04d}",
            dhan_client_id=CLIENT_A,
            token_hash=dash.seeded.token_hashes[0],
            target=Target.TOKEN,
            partner_id=None,
            url=URL_A,
            order_id=f"9{n:011d}",
            payload=b'{"orderId": "x"}',
            created_at=time.time(),
        )
        for n in range(PAGE_SIZE + 10)
    ]
    dash.run(dash.store.enqueue(extra))
    seen: list[str] = []
    with admin(dash) as client:
        params: dict[str, str] = {"client": CLIENT_A}
        for _ in range(5):
            html = client.get("/deliveries", params=params).text
            seen += re.findall(r'/deliveries/(msg_[A-Za-z0-9]+)"', html)
            older = re.search(r'class="next" href="/dashboard/deliveries\?([^"]+)"', html)
            if older is None:
                break
            params = dict(httpx.QueryParams(older.group(1).replace("&amp;", "&")))
            assert params["client"] == CLIENT_A
    assert len(seen) == len(set(seen)) == PAGE_SIZE + 10 + 18


# One delivery ---------------------------------------------------------------------------------


def test_delivery_page_shows_payload_headers_and_every_attempt(dash: Dashboard) -> None:
    delivery_id = dash.seeded.ids["nifty-pending"]
    with admin(dash) as client:
        html = unescape(client.get(f"/deliveries/{delivery_id}").text)
    assert '"orderId": "112611240003"' in html  # pretty-printed, indented
    assert '"filled_qty": 0' in html
    assert delivery_id in html
    assert "v1,…" in html and "(redacted)" in html
    assert "application/json" in html and "dhan-postback/" in html
    assert html.count('class="attempt"') == 3
    assert "503" in html and "connection refused" in html
    assert "503 Service Unavailable" in html  # response prefix, escaped HTML shown as text
    assert "2026-11-24 09:21:10 IST" in html and "2026-11-24 03:51:10 UTC" in html
    assert " ms" in html


def test_unknown_delivery_is_a_friendly_404(dash: Dashboard) -> None:
    with admin(dash) as client:
        response = client.get("/deliveries/msg_nope")
    assert response.status_code == 404
    assert "No such delivery" in response.text


# Replay ---------------------------------------------------------------------------------------


def test_replay_asks_for_confirmation_first(dash: Dashboard) -> None:
    delivery_id = dash.seeded.ids["nifty-traded"]
    with admin(dash) as client:
        html = client.get(f"/deliveries/{delivery_id}/replay").text
    assert "Send this update again?" in html
    assert dash.run(dash.store.get_delivery(delivery_id)).status is DeliveryStatus.DEAD
    assert dash.commits == []


def test_replay_queues_the_delivery_and_wakes_the_dispatcher(dash: Dashboard) -> None:
    delivery_id = dash.seeded.ids["nifty-traded"]
    with admin(dash) as client:
        confirm = client.get(f"/deliveries/{delivery_id}/replay")
        response = client.post(
            f"/deliveries/{delivery_id}/replay", data={"csrf": csrf_of(confirm.text)}
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"/dashboard/deliveries/{delivery_id}"
        page = client.get(response.headers["location"]).text
    assert dash.run(dash.store.get_delivery(delivery_id)).status is DeliveryStatus.PENDING
    assert len(dash.commits) == 1
    assert "Queued again" in page


def test_replay_without_csrf_token_changes_nothing(dash: Dashboard) -> None:
    delivery_id = dash.seeded.ids["nifty-traded"]
    with admin(dash) as client:
        response = client.post(f"/deliveries/{delivery_id}/replay", data={"csrf": "forged"})
    assert response.status_code == 403
    assert dash.run(dash.store.get_delivery(delivery_id)).status is DeliveryStatus.DEAD
    assert dash.commits == []


def test_token_replays_its_own_delivery(dash: Dashboard) -> None:
    delivery_id = dash.seeded.ids["nifty-part"]
    with logged_in(dash, dash.seeded.token_b) as client:
        confirm = client.get(f"/deliveries/{delivery_id}/replay")
        client.post(f"/deliveries/{delivery_id}/replay", data={"csrf": csrf_of(confirm.text)})
    assert dash.run(dash.store.get_delivery(delivery_id)).status is DeliveryStatus.PENDING
    assert len(dash.commits) == 1


def test_replay_dead_confirms_the_count_then_replays_only_the_filter(dash: Dashboard) -> None:
    with admin(dash) as client:
        confirm = client.get("/replay-dead", params={"order_id": "112611240003"})
        assert "Replay 3 dead deliveries?" in confirm.text
        response = client.post(
            "/replay-dead",
            data={"csrf": csrf_of(confirm.text), "order_id": "112611240003", "client": CLIENT_B},
        )
        assert response.status_code == 303
        assert "status=pending" in response.headers["location"]
        page = client.get(response.headers["location"]).text
    counts = dash.run(dash.store.counts())
    assert counts[DeliveryStatus.DEAD] == 0
    assert counts[DeliveryStatus.PENDING] == 4
    assert len(dash.commits) == 1
    assert "Queued 3 dead deliveries again" in page


def test_replay_dead_leaves_other_clients_alone(dash: Dashboard) -> None:
    with admin(dash) as client:
        confirm = client.get("/replay-dead", params={"client": CLIENT_A})
        assert "Nothing to replay" in confirm.text
        client.post("/replay-dead", data={"csrf": csrf_of(confirm.text), "client": CLIENT_A})
    assert dash.run(dash.store.counts())[DeliveryStatus.DEAD] == 3


# Endpoints and orders -------------------------------------------------------------------------


def test_endpoints_page_shows_health_from_the_log_and_the_dispatcher(dash: Dashboard) -> None:
    with admin(dash) as client:
        html = client.get("/endpoints").text
    rows = {url: html.split(url, 1)[1].split("</tr>", 1)[0] for url in (URL_A, URL_B, PARTNER_URL)}
    assert "100.0%" in rows[URL_A]
    assert "0.0%" in rows[URL_B] and "open" in rows[URL_B] and "7 failures" in rows[URL_B]
    assert "ms" in rows[PARTNER_URL]
    backlog_then_dead = r'class="num">1</td>\s*<td class="num"><span class="dead-count">3'
    assert re.search(backlog_then_dead, rows[URL_B])


def test_endpoints_page_without_dispatcher_leaves_live_columns_empty() -> None:
    store = MemoryStore()
    seeded = asyncio.run(seed(store))
    with serve(store) as server:
        dash = Dashboard(f"{server.url}/dashboard", store, seeded)
        with admin(dash) as client:
            html = client.get("/endpoints").text
    assert "dispatcher, which is not running" in html
    assert "breaker-" not in html


def test_order_page_shows_updates_in_sequence_with_where_each_stands(dash: Dashboard) -> None:
    with admin(dash) as client:
        html = client.get("/orders/112611240003").text
    steps = re.findall(r'class="step step-(\w+)"', html)
    assert steps == ["dead", "dead", "dead"]
    statuses = re.findall(r'class="order-status os-(\w+)"', html)
    assert statuses == ["PENDING", "PENDING", "TRADED"]
    assert html.count(">after dead<") == 2
    assert "filled 50/75" in html


def test_order_search_redirects_to_the_order(dash: Dashboard) -> None:
    with admin(dash) as client:
        response = client.get("/orders", params={"order_id": "112611240002"})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/orders/112611240002"


# Errors and hardening -------------------------------------------------------------------------


def test_unknown_page_is_a_friendly_404(dash: Dashboard) -> None:
    with admin(dash) as client:
        response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "There is nothing at this address" in response.text


class _BrokenStore(MemoryStore):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def list_deliveries(self, query: Any) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "text"),
    [
        (StoreUnavailable("database is down"), 503, "The store is unavailable"),
        (RuntimeError("/secret/path/in/trace"), 500, "unexpected problem"),
    ],
)
def test_store_failures_render_a_friendly_page_without_traceback(
    error: Exception, status: int, text: str
) -> None:
    store = _BrokenStore(error)
    with serve(store) as server:
        dash = Dashboard(f"{server.url}/dashboard", store, Seeded("", "", [], []))
        with admin(dash) as client:
            response = client.get("/deliveries")
    assert response.status_code == status
    assert text in response.text
    assert "Traceback" not in response.text and "/secret/path" not in response.text


def test_pages_carry_hardening_headers(dash: Dashboard) -> None:
    with admin(dash) as client:
        response = client.get("/deliveries")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


def test_static_assets_are_served_locally(dash: Dashboard) -> None:
    with browser(dash) as client:
        css = client.get("/static/dashboard.css")
        js = client.get("/static/dashboard.js")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert js.status_code == 200 and "getElementById" in js.text


def test_wrong_method_is_a_friendly_405(dash: Dashboard) -> None:
    with admin(dash) as client:
        response = client.delete("/deliveries")
    assert response.status_code == 405
    assert "cannot be used that way" in response.text


def test_without_an_admin_key_only_tokens_log_in() -> None:
    store = MemoryStore()
    seeded = asyncio.run(seed(store))
    with UvicornThread(dashboard_app(store, admin_key=None)) as server:
        dash = Dashboard(f"{server.url}/dashboard", store, seeded)
        with browser(dash) as client:
            form = client.get("/login")
            refused = client.post("/login", data={"credential": "", "csrf": csrf_of(form.text)})
            assert refused.status_code == 401
        with logged_in(dash, seeded.token_a) as client:
            assert CLIENT_A in client.get("/deliveries").text
