"""The dashboard in a real headless Chromium (Debian's ``chromium``) driven by Playwright.

No browser is ever downloaded: Playwright launches ``/usr/bin/chromium``. When that binary or the
``playwright`` package is missing, these tests skip with a loud reason (``make test`` installs
chromium via apt when it runs as root).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dhan_postback.service.dashboard import EndpointHealth
from dhan_postback.service.store.base import Attempt, Outcome
from dhan_postback.service.store.memory import MemoryStore
from tests.helpers.dashboard_seed import CLIENT_A, CLIENT_B, URL_B, Seeded, dashboard_app, seed
from tests.helpers.servers import UvicornThread

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_KEY = "adm_" + "z" * 40

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extras install it
    sync_playwright = None  # type: ignore[assignment]

_MISSING = (
    "playwright is not installed (pip install -e '.[dev]')"
    if sync_playwright is None
    else f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
    if not os.access(CHROMIUM, os.X_OK)
    else None
)
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=f"BROWSER TESTS SKIPPED: {_MISSING}")


class FakeDispatcher:
    """Stands in for the dispatcher: on commit, sends every due delivery and records a 200.

    It waits a moment first, so that the page shows the queued state and the new attempt
    arrives through the page's live refresh, as it would with the real dispatcher.
    """

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.tasks: set[asyncio.Task[None]] = set()

    def on_commit(self) -> None:
        task = asyncio.get_running_loop().create_task(self._send_due())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send_due(self) -> None:
        await asyncio.sleep(0.5)
        now = time.time()
        claims = await self.store.claim(limit=100, now=now, lease=60.0)
        await self.store.finish(
            [
                Outcome(
                    Attempt(claim.id, claim.attempts + 1, now, 41.0, 200, None, '{"ok":true}'),
                    "delivered",
                )
                for claim in claims
            ]
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def site() -> Iterator[tuple[str, Seeded]]:
    store = MemoryStore()
    # Playwright's sync API keeps an event loop in this thread: seed from another one.
    with ThreadPoolExecutor(1) as pool:
        seeded = pool.submit(lambda: asyncio.run(seed(store))).result()
    dispatcher = FakeDispatcher(store)
    app = dashboard_app(
        store,
        admin_key=ADMIN_KEY,
        live=[EndpointHealth(URL_B, "open", 0, 7)],
        on_commit=dispatcher.on_commit,
    )
    with UvicornThread(app) as server:
        yield f"{server.url}/dashboard", seeded


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


def log_in(page: Page, base: str, credential: str) -> None:
    page.goto(f"{base}/deliveries")
    expect(page).to_have_url(f"{base}/login")
    page.fill("#credential", credential)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/deliveries")


def test_admin_logs_in_filters_opens_and_replays_a_delivery(
    page: Page, site: tuple[str, Seeded]
) -> None:
    base, seeded = site
    log_in(page, base, ADMIN_KEY)
    expect(page.locator("table.deliveries tbody tr")).to_have_count(22)

    page.select_option("select[name=status]", "dead")
    page.fill("input[name=client]", CLIENT_B)
    page.click("form.filters button[type=submit]")
    rows = page.locator("table.deliveries tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("dead")

    page.click(f"a[href='/dashboard/deliveries/{seeded.ids['nifty-traded']}']")
    expect(page.locator("pre.payload")).to_contain_text('"orderStatus": "TRADED"')
    expect(page.locator("tr.attempt")).to_have_count(3)

    page.click("text=Replay…")
    expect(page.locator("h1")).to_have_text("Send this update again?")
    page.click("button:has-text('Replay')")
    expect(page.locator(".flash")).to_contain_text("Queued again")
    # The fake dispatcher answers after the page rendered: live refresh brings the attempt in.
    expect(page.locator("tr.attempt")).to_have_count(4)
    expect(page.locator("tr.attempt").first).to_contain_text("200")
    expect(page.locator(".facts")).to_contain_text("delivered")


def test_token_cannot_see_another_clients_delivery(page: Page, site: tuple[str, Seeded]) -> None:
    base, seeded = site
    log_in(page, base, seeded.token_b)
    expect(page.locator("table.deliveries")).not_to_contain_text(CLIENT_A)
    expect(page.locator("input[name=client]")).to_have_count(0)

    response: Any = page.goto(f"{base}/deliveries/{seeded.ids['rel-traded']}")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator("body")).not_to_contain_text("112611240001")


def test_logout_returns_to_login(page: Page, site: tuple[str, Seeded]) -> None:
    base, _ = site
    log_in(page, base, ADMIN_KEY)
    page.click("text=Log out")
    expect(page).to_have_url(f"{base}/login")
    page.goto(f"{base}/endpoints")
    expect(page).to_have_url(f"{base}/login")
