"""Screenshots of the dashboard for docs/img, from a real run: a ``dhan-postback serve``
process delivering simulated order updates to three real receivers on loopback.

Client A's receiver is healthy; the partner's fails one request in five with a 500; client
B's receiver answers for the first rounds, then goes down (connections refused), then comes
back answering only 503 (maintenance). Its breaker opens, its deliveries retry and die, and
the next updates of the same orders carry *after dead*. The pages are captured while B still
answers 503.

Run: ``.venv/bin/python -m tests.make_dashboard_screenshots`` (needs Debian's chromium; takes
about five minutes, since the run is real time). The service's log goes to
``$TMPDIR/dhan-postback-screenshots.log``.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

from dhan_postback import payload
from dhan_postback.simulator import Simulator, interleave
from tests.helpers.dashboard_live import Hook, LiveService, live_service
from tests.helpers.receivers import RecordingReceiver, Reply, always, flaky
from tests.integration.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"
ADMIN_KEY = "adm_screenshots_only_" + "x" * 24
CLIENT_A, CLIENT_B = "1100482931", "1100551207"
PARTNER_ID = "tradebot"
ROUNDS = 10
ROUND_SECONDS = 25.0
B_DOWN_FROM, B_FAILING_FROM = 4, 7
"""Rounds at which client B's receiver goes down, then comes back answering only 503."""
FLAGS = [
    "--breaker-min-attempts", "5",
    "--breaker-cooldown", "2s",
    "--breaker-max-cooldown", "4s",
    "--timeout", "2s",
]  # fmt: skip
RETRIES = "0s,2s,4s,8s"


def _updates() -> list[bytes]:
    simulator = Simulator(11, clients=(CLIENT_A, CLIENT_B))
    orders = simulator.orders(40)
    return [payload.dumps(update) for update in interleave(orders, random.Random(11))]


def _client_of(body: bytes) -> str:
    return str(payload.parse(body).dhan_client_id)


def _run_traffic(service: LiveService, hooks: dict[str, Hook], tokens: dict[str, str]) -> None:
    bodies = _updates()
    per_round = len(bodies) // ROUNDS + 1
    for number in range(ROUNDS):
        if number == B_DOWN_FROM:
            hooks["b"].down()
        if number == B_FAILING_FROM:
            hooks["b"].receiver.plan = always(
                Reply(503, body=b"<html><title>503 Service Unavailable</title>maintenance")
            )
            hooks["b"].up()
        batch = bodies[number * per_round : (number + 1) * per_round]
        for client in (CLIENT_A, CLIENT_B):
            mine = [body for body in batch if _client_of(body) == client]
            if mine:
                service.ingest(tokens[client], mine)
        print(f"round {number + 1}/{ROUNDS}: {len(batch)} updates", flush=True)
        time.sleep(ROUND_SECONDS)


def _shoot(page: Page, url: str, name: str, *, full_page: bool = True) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=OUT / name, full_page=full_page)
    print(OUT / name, flush=True)


def _pick(deliveries: list[dict[str, Any]]) -> tuple[str, str]:
    """A dead delivery with several attempts, and an order with an *after dead* update."""
    dead = [d for d in deliveries if d["status"] == "dead"]
    failing = dead or [d for d in deliveries if d["attemptCount"] > 1]
    delivery = max(failing, key=lambda d: d["attemptCount"])
    gap = next((d for d in deliveries if d.get("afterDead")), delivery)
    return delivery["deliveryId"], gap["orderId"]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    hooks = {
        "a": Hook(RecordingReceiver(always(Reply(200, body=b'{"status":"ok"}', delay=0.04)))),
        "partner": Hook(
            RecordingReceiver(flaky(0.2, [Reply(500, body=b'{"error":"db timeout"}')], seed=3))
        ),
        "b": Hook(RecordingReceiver(always(Reply(200, body=b'{"received":true}', delay=0.2)))),
    }
    for hook in hooks.values():
        hook.up()
    log = Path(tempfile.gettempdir()) / "dhan-postback-screenshots.log"
    log.unlink(missing_ok=True)
    try:
        with (
            tempfile.TemporaryDirectory() as directory,
            live_service(
                Path(directory), ADMIN_KEY, retry_schedule=RETRIES, flags=FLAGS, log_path=log
            ) as service,
        ):
            service.put_partner(PARTNER_ID, hooks["partner"].url("/v1/postback"))
            tokens = {
                CLIENT_A: service.create_token(CLIENT_A, hooks["a"].url("/hooks/dhan"), PARTNER_ID)[
                    "accessToken"
                ],
                CLIENT_B: service.create_token(CLIENT_B, hooks["b"].url("/postback/dhan"))[
                    "accessToken"
                ],
            }
            _run_traffic(service, hooks, tokens)
            delivery_id, order_id = _pick(service.deliveries())
            [b_endpoint] = [
                e for e in service.endpoints() if e["postbackUrl"].endswith("/postback/dhan")
            ]
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1360, "height": 820})
                base = service.dashboard
                _shoot(page, f"{base}/login", "dashboard-login.png")
                page.fill("#credential", ADMIN_KEY)
                page.click("button[type=submit]")
                page.wait_for_url(f"{base}/deliveries")
                _shoot(page, f"{base}/deliveries", "dashboard-deliveries.png", full_page=False)
                _shoot(page, f"{base}/deliveries/{delivery_id}", "dashboard-delivery.png")
                _shoot(page, f"{base}/endpoints", "dashboard-endpoints.png")
                _shoot(
                    page, f"{base}/endpoints/{b_endpoint['endpointId']}", "dashboard-endpoint.png"
                )
                _shoot(page, f"{base}/orders", "dashboard-orders.png", full_page=False)
                _shoot(page, f"{base}/orders/{order_id}", "dashboard-order.png")
                browser.close()
    finally:
        for hook in hooks.values():
            hook.down()


if __name__ == "__main__":
    sys.exit(main())
