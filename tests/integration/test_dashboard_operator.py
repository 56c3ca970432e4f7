"""The operator's pages of the dashboard over real HTTP: search, the Orders list, the
endpoint page with its chart, failures and actions (rotate secret, replay failed since T).

Same setup as ``test_dashboard.py`` (uvicorn on loopback, the seeded morning, httpx as the
browser); fresh attempts are added at the time of the test where a page shows the last hour.
"""

from __future__ import annotations

import re
import time

from dhan_postback.service.store.base import (
    Attempt,
    DeliveryStatus,
    EndpointRecord,
    NewDelivery,
    Outcome,
    Target,
)
from tests.helpers.dashboard_seed import CLIENT_A, CLIENT_B, PARTNER_URL, URL_A, URL_B

from .test_dashboard import Dashboard, admin, csrf_of, dash, follow, logged_in

__all__ = ["dash"]


def endpoint_of(d: Dashboard, url: str, owner: str) -> EndpointRecord:
    every = d.run(d.store.list_endpoints())
    [found] = [e for e in every if e.url == url and e.owner_id == owner]
    return found


def fresh_failure(d: Dashboard, status: int | None, *, body: str) -> str:
    """Client B sends one more update now; its receiver answers ``status`` (None: no answer)."""
    delivery_id = f"msg_fresh{int(time.time() * 1000)}"
    now = time.time()

    async def run() -> None:
        await d.store.enqueue(
            [
                NewDelivery(
                    id=delivery_id,
                    dhan_client_id=CLIENT_B,
                    token_hash=d.seeded.token_hashes[1],
                    target=Target.TOKEN,
                    partner_id=None,
                    url=URL_B,
                    order_id="112611249999",
                    payload=b'{"orderId":"112611249999","orderStatus":"PENDING"}',
                    created_at=now,
                )
            ]
        )
        claims = await d.store.claim(limit=100, now=now + 1, lease=60)
        assert delivery_id in [c.id for c in claims]
        error = "connection refused" if status is None else f"HTTP {status}"
        attempt = Attempt(delivery_id, 1, now, 3.0, status, error, body)
        await d.store.finish([Outcome(attempt, "retry", next_attempt_at=now + 60)])
        await d.store.release([c.id for c in claims if c.id != delivery_id])

    d.run(run())
    return delivery_id


# Search ---------------------------------------------------------------------------------------


def test_search_by_webhook_id_opens_the_delivery(dash: Dashboard) -> None:
    delivery_id = dash.seeded.ids["infy-traded"]
    with admin(dash) as client:
        response = client.get("/search", params={"q": delivery_id})
    assert response.status_code == 303
    assert response.headers["location"] == f"/dashboard/deliveries/{delivery_id}"


def test_search_by_order_id_opens_the_order(dash: Dashboard) -> None:
    with admin(dash) as client:
        response = client.get("/search", params={"q": " 112611240003 "})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/orders/112611240003"


def test_search_for_nothing_known_says_so(dash: Dashboard) -> None:
    with admin(dash) as client:
        response = client.get("/search", params={"q": "msg_nosuchthing"})
    assert response.status_code == 404
    assert "Nothing found for" in response.text and "msg_nosuchthing" in response.text


def test_a_token_does_not_find_another_clients_delivery_or_order(dash: Dashboard) -> None:
    with logged_in(dash, dash.seeded.token_b) as client:
        by_id = client.get("/search", params={"q": dash.seeded.ids["rel-traded"]})
        by_order = client.get("/search", params={"q": "112611240001"})
    assert by_id.status_code == 404 and by_order.status_code == 404
    assert "RELIANCE" not in by_id.text + by_order.text


def test_every_page_has_the_search_box(dash: Dashboard) -> None:
    with admin(dash) as client:
        for path in ("/deliveries", "/orders", "/endpoints"):
            assert 'action="/dashboard/search"' in client.get(path).text, path


# Orders list ----------------------------------------------------------------------------------


def test_orders_page_lists_recent_orders_newest_first(dash: Dashboard) -> None:
    with admin(dash) as client:
        html = client.get("/orders").text
    listed = re.findall(r'class="order-link" href="/dashboard/orders/(\d+)"', html)
    assert listed == [f"11261124000{n}" for n in (6, 5, 4, 3, 2, 1)]
    nifty = html.split("/orders/112611240003", 1)[1].split("</tr>", 1)[0]
    assert "TRADED" in nifty and "status-dead" in nifty and CLIENT_B in nifty


def test_a_tokens_orders_page_lists_only_its_clients_orders(dash: Dashboard) -> None:
    with logged_in(dash, dash.seeded.token_b) as client:
        html = client.get("/orders").text
    listed = re.findall(r'class="order-link" href="/dashboard/orders/(\d+)"', html)
    assert listed == ["112611240006", "112611240003"]
    assert CLIENT_A not in html


# Deliveries list URLs -------------------------------------------------------------------------


def test_the_deliveries_list_tells_two_paths_on_one_host_apart(dash: Dashboard) -> None:
    other_path = URL_B.replace("/postback/dhan", "/postback/dhan-backup")
    now = time.time()
    dash.run(
        dash.store.enqueue(
            [
                NewDelivery(
                    id=f"msg_path{n}",
                    dhan_client_id=CLIENT_B,
                    token_hash=dash.seeded.token_hashes[1],
                    target=Target.TOKEN,
                    partner_id=None,
                    url=url,
                    order_id=f"77700000{n}",
                    payload=b"{}",
                    created_at=now + n,
                )
                for n, url in enumerate([URL_B, other_path])
            ]
        )
    )
    with admin(dash) as client:
        html = client.get("/deliveries").text
    cells = re.findall(r'<td class="url" title="([^"]+)">([^<]+)', html)
    shown = {title: text for title, text in cells}
    assert shown[URL_B] != shown[other_path]
    assert shown[other_path].endswith("dhan-backup")


# Endpoints ------------------------------------------------------------------------------------


def test_each_endpoint_row_opens_its_endpoint_page(dash: Dashboard) -> None:
    ours = endpoint_of(dash, URL_B, CLIENT_B)
    with admin(dash) as client:
        listing = client.get("/endpoints").text
        page = client.get(f"/endpoints/{ours.id}")
    assert f'href="/dashboard/endpoints/{ours.id}"' in listing
    assert page.status_code == 200
    assert URL_B in page.text and ours.id in page.text


def test_endpoint_page_charts_the_last_hour_and_lists_failures_with_answers(
    dash: Dashboard,
) -> None:
    failed = fresh_failure(dash, 503, body="<title>503 Service Unavailable</title>")
    ours = endpoint_of(dash, URL_B, CLIENT_B)
    with admin(dash) as client:
        html = client.get(f"/endpoints/{ours.id}").text
    assert '<svg class="sparkline"' in html and "<polyline" in html
    assert "failed 1" in html and "delivered 0" in html
    row = html.split('<tr class="failure">', 1)[1].split("</tr>", 1)[0]
    assert failed in row and ">503<" in row and "503 Service Unavailable" in row
    assert "1 pending" in html or "2 pending" in html


def test_endpoint_failures_read_like_a_deliverys_attempts_plus_which_delivery(
    dash: Dashboard,
) -> None:
    failed = fresh_failure(dash, 503, body="down")
    ours = endpoint_of(dash, URL_B, CLIENT_B)
    with admin(dash) as client:
        endpoint_page = client.get(f"/endpoints/{ours.id}").text
        delivery_page = client.get(f"/deliveries/{failed}").text
    [failures_head] = re.findall(
        r'<table class="grid failures">\s*<thead>(.*?)</thead>', endpoint_page
    )
    [attempts_head] = re.findall(
        r'<table class="grid attempts">\s*<thead>(.*?)</thead>', delivery_page
    )
    assert failures_head == attempts_head.replace("<tr>", "<tr><th>Delivery</th>", 1)
    row = endpoint_page.split('<tr class="failure">', 1)[1].split("</tr>", 1)[0]
    assert "3.0 ms" in row and "IST" in row and "UTC" in row


def test_endpoint_page_without_recent_attempts_says_so(dash: Dashboard) -> None:
    ours = endpoint_of(dash, URL_A, CLIENT_A)
    with admin(dash) as client:
        html = client.get(f"/endpoints/{ours.id}").text
    assert "No failed attempt in the last 24 hours" in html
    assert "failed 0" in html


def test_a_token_sees_its_own_endpoint_page_without_actions(dash: Dashboard) -> None:
    ours = endpoint_of(dash, URL_B, CLIENT_B)
    with logged_in(dash, dash.seeded.token_b) as client:
        html = client.get(f"/endpoints/{ours.id}").text
    assert URL_B in html
    assert "Rotate secret" not in html and "Replay failed" not in html


def test_a_token_gets_404_for_another_clients_or_a_partners_endpoint(dash: Dashboard) -> None:
    theirs = endpoint_of(dash, URL_A, CLIENT_A)
    partners = [e for e in dash.run(dash.store.list_endpoints()) if e.url == PARTNER_URL]
    with logged_in(dash, dash.seeded.token_b) as client:
        for endpoint in (theirs, *partners):
            assert client.get(f"/endpoints/{endpoint.id}").status_code == 404


def test_rotate_secret_asks_for_confirmation_then_rotates(dash: Dashboard) -> None:
    ours = endpoint_of(dash, URL_B, CLIENT_B)
    with admin(dash) as client:
        confirm = client.get(f"/endpoints/{ours.id}/rotate-secret")
        assert "Rotate this endpoint's signing secret?" in confirm.text
        assert endpoint_of(dash, URL_B, CLIENT_B).signing_secret == ours.signing_secret
        response = client.post(
            f"/endpoints/{ours.id}/rotate-secret", data={"csrf": csrf_of(confirm.text)}
        )
        page = follow(client, response)
    rotated = endpoint_of(dash, URL_B, CLIENT_B)
    assert rotated.signing_secret != ours.signing_secret
    assert rotated.grace_secrets(time.time()) == (ours.signing_secret,)
    assert "Rotated" in page and "--include-secret" in page
    assert rotated.signing_secret not in page and ours.signing_secret not in page


def test_rotate_secret_without_csrf_token_changes_nothing(dash: Dashboard) -> None:
    ours = endpoint_of(dash, URL_B, CLIENT_B)
    with admin(dash) as client:
        response = client.post(f"/endpoints/{ours.id}/rotate-secret", data={"csrf": "forged"})
    assert response.status_code == 403
    assert endpoint_of(dash, URL_B, CLIENT_B).signing_secret == ours.signing_secret


def test_a_token_may_not_rotate_its_endpoints_secret(dash: Dashboard) -> None:
    ours = endpoint_of(dash, URL_B, CLIENT_B)
    with logged_in(dash, dash.seeded.token_b) as client:
        page = client.get("/deliveries")
        assert client.get(f"/endpoints/{ours.id}/rotate-secret").status_code == 403
        response = client.post(
            f"/endpoints/{ours.id}/rotate-secret", data={"csrf": csrf_of(page.text)}
        )
    assert response.status_code == 403
    assert endpoint_of(dash, URL_B, CLIENT_B).signing_secret == ours.signing_secret


def test_replay_failed_since_confirms_the_count_then_replays_that_endpoints_dead(
    dash: Dashboard,
) -> None:
    ours = endpoint_of(dash, URL_B, CLIENT_B)
    with admin(dash) as client:
        confirm = client.get(
            f"/endpoints/{ours.id}/replay-failed", params={"since": "2026-11-24T09:22"}
        )
        assert "Replay 2 dead deliveries to this endpoint?" in confirm.text
        response = client.post(
            f"/endpoints/{ours.id}/replay-failed",
            data={"csrf": csrf_of(confirm.text), "since": "2026-11-24T09:22"},
        )
        page = follow(client, response)
    ids = dash.seeded.ids
    statuses = {
        key: dash.run(dash.store.get_delivery(ids[key])).status
        for key in ("nifty-pending", "nifty-part", "nifty-traded")
    }
    assert statuses == {
        "nifty-pending": DeliveryStatus.DEAD,
        "nifty-part": DeliveryStatus.PENDING,
        "nifty-traded": DeliveryStatus.PENDING,
    }
    assert len(dash.commits) == 1
    assert "Queued 2 dead deliveries to this endpoint again" in page


def test_replay_failed_needs_a_time(dash: Dashboard) -> None:
    ours = endpoint_of(dash, URL_B, CLIENT_B)
    with admin(dash) as client:
        missing = client.get(f"/endpoints/{ours.id}/replay-failed")
        bad = client.get(f"/endpoints/{ours.id}/replay-failed", params={"since": "yesterday"})
    assert missing.status_code == 400 and "Say since when" in missing.text
    assert bad.status_code == 400 and "2026-01-31T09:15" in bad.text


def test_replay_failed_without_csrf_token_changes_nothing(dash: Dashboard) -> None:
    ours = endpoint_of(dash, URL_B, CLIENT_B)
    with admin(dash) as client:
        response = client.post(
            f"/endpoints/{ours.id}/replay-failed",
            data={"csrf": "forged", "since": "2026-11-24T09:00"},
        )
    assert response.status_code == 403
    assert dash.run(dash.store.counts())[DeliveryStatus.DEAD] == 3
    assert dash.commits == []


def test_unknown_endpoint_is_a_friendly_404(dash: Dashboard) -> None:
    with admin(dash) as client:
        response = client.get("/endpoints/ep_nosuchendpoint")
    assert response.status_code == 404
    assert "No such endpoint" in response.text


# Pause and resume -----------------------------------------------------------------------------


def test_pause_asks_for_confirmation_then_pauses_and_resume_resumes(dash: Dashboard) -> None:
    ours = endpoint_of(dash, URL_B, CLIENT_B)
    with admin(dash) as client:
        confirm = client.get(f"/endpoints/{ours.id}/pause")
        assert "Pause this endpoint?" in confirm.text
        assert not endpoint_of(dash, URL_B, CLIENT_B).paused
        response = client.post(f"/endpoints/{ours.id}/pause", data={"csrf": csrf_of(confirm.text)})
        paused_page = follow(client, response)
        assert endpoint_of(dash, URL_B, CLIENT_B).paused
        confirm = client.get(f"/endpoints/{ours.id}/resume")
        assert "Resume this endpoint?" in confirm.text
        client.post(f"/endpoints/{ours.id}/resume", data={"csrf": csrf_of(confirm.text)})
        resumed_page = client.get(f"/endpoints/{ours.id}").text
    assert "Paused" in paused_page and "Resume…" in paused_page
    assert not endpoint_of(dash, URL_B, CLIENT_B).paused
    assert "Pause…" in resumed_page
    assert len(dash.commits) == 1  # resuming wakes the dispatcher


def test_pause_without_csrf_token_changes_nothing(dash: Dashboard) -> None:
    ours = endpoint_of(dash, URL_B, CLIENT_B)
    with admin(dash) as client:
        response = client.post(f"/endpoints/{ours.id}/pause", data={"csrf": "forged"})
    assert response.status_code == 403
    assert not endpoint_of(dash, URL_B, CLIENT_B).paused


def test_a_token_may_not_pause_its_endpoint(dash: Dashboard) -> None:
    ours = endpoint_of(dash, URL_B, CLIENT_B)
    with logged_in(dash, dash.seeded.token_b) as client:
        page = client.get("/deliveries")
        assert client.get(f"/endpoints/{ours.id}/pause").status_code == 403
        response = client.post(f"/endpoints/{ours.id}/pause", data={"csrf": csrf_of(page.text)})
    assert response.status_code == 403
    assert not endpoint_of(dash, URL_B, CLIENT_B).paused
