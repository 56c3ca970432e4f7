"""Screenshots of the dashboard for docs/img, from a simulated day
(``tests/helpers/dashboard_seed.py``).

Run: ``.venv/bin/python -m tests.make_dashboard_screenshots`` (needs Debian's chromium).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from playwright.sync_api import sync_playwright

from dhan_postback.service.dashboard import EndpointHealth
from dhan_postback.service.store.base import DeliveryQuery, DeliveryStatus
from dhan_postback.service.store.memory import MemoryStore
from tests.helpers.dashboard_seed import PARTNER_URL, URL_A, URL_B, dashboard_app, seed_simulated
from tests.helpers.servers import UvicornThread
from tests.integration.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"
ADMIN_KEY = "adm_screenshots_only"


def main() -> None:
    store = MemoryStore()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(seed_simulated(store))).result()
        everything = pool.submit(
            lambda: asyncio.run(store.list_deliveries(DeliveryQuery(limit=10_000)))
        ).result()
    gap = next(d for d in everything if d.after_dead)
    dead = next(d for d in everything if d.status is DeliveryStatus.DEAD and d.attempts > 2)
    live = [
        EndpointHealth(URL_A, "closed", 2),
        EndpointHealth(PARTNER_URL, "closed", 1, 0),
        EndpointHealth(URL_B, "open", 0, 7),
    ]
    app = dashboard_app(store, admin_key=ADMIN_KEY, live=live)
    OUT.mkdir(parents=True, exist_ok=True)
    with (
        UvicornThread(app) as server,
        sync_playwright() as playwright,
    ):
        base = f"{server.url}/dashboard"
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 820})
        page.goto(f"{base}/login")
        page.screenshot(path=OUT / "dashboard-login.png")
        page.fill("#credential", ADMIN_KEY)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/deliveries")
        shots = {
            "dashboard-deliveries.png": f"{base}/deliveries",
            "dashboard-delivery.png": f"{base}/deliveries/{dead.id}",
            "dashboard-endpoints.png": f"{base}/endpoints",
            "dashboard-order.png": f"{base}/orders/{gap.order_id}",
        }
        for name, url in shots.items():
            page.goto(url)
            page.screenshot(path=OUT / name, full_page=name != "dashboard-deliveries.png")
            print(OUT / name)
        browser.close()


if __name__ == "__main__":
    main()
