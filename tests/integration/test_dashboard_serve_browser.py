"""The operator's pages in real headless Chromium, against a real ``dhan-postback serve``
process delivering to real receivers on loopback (see ``tests/helpers/dashboard_live.py``).

Nothing is staged: the breaker the Endpoints page shows is the one the service's own
dispatcher opened when its receiver stopped answering, and closed when it came back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from dhan_postback.service.dashboard.formatting import IST
from tests.helpers.dashboard_live import Hook, live_service
from tests.helpers.receivers import RecordingReceiver, Reply, always
from tests.helpers.updates import update_body
from tests.helpers.waiting import wait_until

from .test_dashboard_browser import browser, log_in, page, pytestmark

__all__ = ["browser", "page", "pytestmark"]

ADMIN_KEY = "adm_" + "s" * 40
CLIENT_ID = "1100000999"
SLOW_RETRIES = ",".join(["0s"] + ["1s"] * 40)
"""Deliveries stay pending (retrying) long enough to outlive an outage of a few seconds."""
QUICK_DEATH = "0s,50ms,50ms"
"""Three attempts, then dead."""
TIMEOUT_MS = 40_000
"""How long the pages may take to show a change (they refresh themselves every 5 s)."""


@pytest.fixture
def hook() -> Iterator[Hook]:
    started = Hook(RecordingReceiver())
    started.up()
    yield started
    started.down()


def bodies(prefix: str, count: int) -> list[bytes]:
    return [update_body(f"{prefix}{n:04d}", client_id=CLIENT_ID) for n in range(count)]


def ist_minutes_ago(minutes: float) -> str:
    """A ``datetime-local`` value, in IST, ``minutes`` before now."""
    return datetime.fromtimestamp(time.time() - minutes * 60, IST).strftime("%Y-%m-%dT%H:%M")


def test_an_open_breaker_appears_when_the_receiver_goes_down_and_closes_when_it_is_back(
    page: Page, hook: Hook, tmp_path: Path
) -> None:
    flags = ["--breaker-min-attempts", "3", "--breaker-cooldown", "1s"]
    flags += ["--breaker-max-cooldown", "2s"]
    with live_service(tmp_path, ADMIN_KEY, retry_schedule=SLOW_RETRIES, flags=flags) as service:
        token = service.create_token(CLIENT_ID, hook.url())["accessToken"]
        service.ingest(token, bodies("5001", 1))
        log_in(page, service.dashboard, ADMIN_KEY)
        page.goto(f"{service.dashboard}/endpoints")
        row = page.locator("table.endpoints tbody tr").filter(has_text=hook.url())
        expect(row.locator(".breaker-closed")).to_be_visible(timeout=TIMEOUT_MS)
        expect(row.locator(".breaker-open")).to_have_count(0)

        hook.down()  # connections to its port are refused from now on
        service.ingest(token, bodies("5002", 6))
        expect(row.locator(".breaker-open")).to_be_visible(timeout=TIMEOUT_MS)
        expect(row).to_contain_text("no response")

        hook.up()
        expect(row.locator(".breaker-closed")).to_be_visible(timeout=TIMEOUT_MS)
        wait_until(lambda: len(service.deliveries(status="delivered")) == 7, timeout=30)
        expect(row.locator("td.num").nth(-2)).to_have_text("0")  # backlog


def test_the_endpoint_page_shows_its_hour_its_failures_and_rotates_and_replays(
    page: Page, hook: Hook, tmp_path: Path
) -> None:
    hook.receiver.plan = always(Reply(503, body=b"<h1>down for maintenance</h1>"))
    with live_service(tmp_path, ADMIN_KEY, retry_schedule=QUICK_DEATH) as service:
        created = service.create_token(CLIENT_ID, hook.url())
        ids = service.ingest(created["accessToken"], bodies("6001", 3))
        wait_until(lambda: len(service.deliveries(status="dead")) == 3, timeout=30)

        log_in(page, service.dashboard, ADMIN_KEY)
        page.goto(f"{service.dashboard}/endpoints")
        page.click(f"a.endpoint-link[href$='/endpoints/{created['endpointId']}']")
        expect(page).to_have_url(f"{service.dashboard}/endpoints/{created['endpointId']}")
        expect(page.locator("svg.sparkline polyline.failed")).to_have_count(1)
        expect(page.locator(".legend.failed")).to_have_text("failed 9")
        expect(page.locator(".legend.delivered")).to_have_text("delivered 0")
        failures = page.locator("tr.failure")
        expect(failures).to_have_count(9)
        expect(failures.first).to_contain_text("503")
        expect(failures.first).to_contain_text("down for maintenance")

        page.click("text=Rotate secret…")
        expect(page.locator("h1")).to_have_text("Rotate this endpoint's signing secret?")
        page.click("button:has-text('Rotate secret')")
        expect(page.locator(".flash")).to_contain_text("Rotated")
        [endpoint] = service.endpoints()
        assert endpoint["secretRotatedAt"] is not None

        hook.receiver.plan = always(Reply(200))
        page.fill("input[name=since]", ist_minutes_ago(10))
        page.click("button:has-text('Replay failed…')")
        expect(page.locator("h1")).to_have_text("Replay 3 dead deliveries to this endpoint?")
        page.click("button:has-text('Replay 3')")
        expect(page.locator(".flash")).to_contain_text("Queued 3 dead deliveries")
        wait_until(lambda: {r.webhook_id for r in hook.receiver.accepted()} == set(ids))
        expect(page.locator(".legend.delivered")).to_have_text("delivered 3", timeout=TIMEOUT_MS)


def test_the_search_box_finds_a_delivery_by_webhook_id_and_an_order_by_order_id(
    page: Page, hook: Hook, tmp_path: Path
) -> None:
    with live_service(tmp_path, ADMIN_KEY, retry_schedule=QUICK_DEATH) as service:
        token = service.create_token(CLIENT_ID, hook.url())["accessToken"]
        first, second = service.ingest(
            token,
            [
                update_body("7001000042", "TRANSIT", client_id=CLIENT_ID),
                update_body("7001000042", "TRADED", filled_qty=10, client_id=CLIENT_ID),
            ],
        )
        log_in(page, service.dashboard, ADMIN_KEY)

        page.fill("header input[name=q]", second)
        page.press("header input[name=q]", "Enter")
        expect(page).to_have_url(f"{service.dashboard}/deliveries/{second}")
        expect(page.locator("pre.payload")).to_contain_text('"orderStatus": "TRADED"')

        page.fill("header input[name=q]", "7001000042")
        page.press("header input[name=q]", "Enter")
        expect(page).to_have_url(f"{service.dashboard}/orders/7001000042")
        expect(page.locator("ol.timeline li")).to_have_count(2)
        expect(page.locator(f"a[href$='/deliveries/{first}']")).to_contain_text("TRANSIT")

        page.fill("header input[name=q]", "msg_not_a_delivery")
        page.press("header input[name=q]", "Enter")
        expect(page.locator(".not-found")).to_contain_text("msg_not_a_delivery")


def test_the_orders_page_lists_recent_orders(page: Page, hook: Hook, tmp_path: Path) -> None:
    with live_service(tmp_path, ADMIN_KEY, retry_schedule=QUICK_DEATH) as service:
        token = service.create_token(CLIENT_ID, hook.url())["accessToken"]
        service.ingest(token, bodies("8001", 3))
        log_in(page, service.dashboard, ADMIN_KEY)
        page.click("nav >> text=Orders")
        links = page.locator("a.order-link")
        expect(links).to_have_text(["80010002", "80010001", "80010000"])
        links.first.click()
        expect(page).to_have_url(f"{service.dashboard}/orders/80010002")


def test_pause_holds_an_endpoints_deliveries_and_resume_sends_them_in_order(
    page: Page, hook: Hook, tmp_path: Path
) -> None:
    other = Hook(RecordingReceiver())
    other.up()
    try:
        with live_service(tmp_path, ADMIN_KEY, retry_schedule=SLOW_RETRIES) as service:
            created = service.create_token(CLIENT_ID, hook.url())
            marker_token = service.create_token("1100000998", other.url())["accessToken"]
            log_in(page, service.dashboard, ADMIN_KEY)
            page.goto(f"{service.dashboard}/endpoints/{created['endpointId']}")
            page.click("text=Pause…")
            expect(page.locator("h1")).to_have_text("Pause this endpoint?")
            page.click("button:has-text('Pause')")
            expect(page.locator(".flash")).to_contain_text("Paused")
            expect(page.locator(".facts .badge.paused")).to_be_visible()

            steps = [("TRANSIT", 0), ("PENDING", 0), ("TRADED", 10)]
            ids = service.ingest(
                created["accessToken"],
                [
                    update_body("9001000001", status, filled_qty=filled, client_id=CLIENT_ID)
                    for status, filled in steps
                ],
            )
            service.ingest(marker_token, [update_body("9001000002", client_id="1100000998")])
            # The update ingested after them has gone out: the dispatcher passed them by.
            wait_until(lambda: len(other.receiver.accepted()) == 1, timeout=30)
            expect(page.locator(".backlog")).to_have_text("3 pending", timeout=TIMEOUT_MS)
            assert hook.receiver.snapshot() == []

            page.click("text=Resume…")
            expect(page.locator("h1")).to_have_text("Resume this endpoint?")
            page.click("button:has-text('Resume')")
            expect(page.locator(".flash")).to_contain_text("Resumed")
            wait_until(lambda: len(hook.receiver.accepted()) == 3, timeout=30)
            assert [r.webhook_id for r in hook.receiver.accepted()] == ids
            expect(page.locator(".backlog")).to_have_text("0 pending", timeout=TIMEOUT_MS)
    finally:
        other.down()
