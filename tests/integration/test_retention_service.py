"""Retention in a running service (the app ``serve`` runs), on SQLite and PostgreSQL.

Retention is set to nothing and the pruner runs every 50 ms, so a delivery is pruned as soon
as it is finished: delivered and dead ones disappear (a 404, like any unknown id), pending
ones stay, and ``/metrics`` counts what went.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from dhan_postback.cli.serve import build_app
from tests.helpers.dispatching import fast_settings
from tests.helpers.receivers import RecordingReceiver, Reply, always
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.service import ADMIN_KEY
from tests.helpers.updates import new_client_id, update
from tests.helpers.waiting import wait_until

ADMIN = {"admin-key": ADMIN_KEY}


@dataclass
class Running:
    http: httpx.Client
    hooks: str

    def token(self, url: str) -> tuple[str, str]:
        client_id = new_client_id()
        created = self.http.post(
            "/v2/access-tokens", headers=ADMIN, json={"dhanClientId": client_id, "postbackUrl": url}
        ).json()
        return client_id, created["accessToken"]

    def ingest(self, token: str, body: Any) -> list[str]:
        response = self.http.post("/v2/order-updates", headers={"access-token": token}, json=body)
        assert response.status_code == 202, response.text
        ids: list[str] = response.json()["deliveryIds"]
        return ids

    def status(self, delivery_id: str) -> int:
        return self.http.get(f"/v2/deliveries/{delivery_id}", headers=ADMIN).status_code

    def detail(self, delivery_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v2/deliveries/{delivery_id}", headers=ADMIN)
        assert response.status_code == 200, response.text
        shown: dict[str, Any] = response.json()
        return shown

    def metric(self, name: str, **labels: str) -> float:
        text = self.http.get("/metrics").text
        wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
        pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "")
        match = re.search(rf"^{pattern} (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0


@pytest.fixture
def running(service_db: str) -> Callable[..., Any]:
    receiver = RecordingReceiver(always(Reply(200)))

    def start(**settings: Any) -> Any:
        options: dict[str, Any] = {
            "db": service_db,
            "admin_key": ADMIN_KEY,
            "retain_delivered": "0s",
            "retain_dead": "0s",
            "prune_interval": "50ms",
            "retry_schedule": "0s",
        }
        options.update(settings)
        return _Serving(options, receiver)

    return start


class _Serving:
    def __init__(self, options: dict[str, Any], receiver: RecordingReceiver) -> None:
        self.app = build_app(fast_settings(**options))
        self.receiver = receiver
        self._stack: list[Any] = []

    def __enter__(self) -> Running:
        hooks = UvicornThread(self.receiver.app).start()
        service = UvicornThread(self.app).start()
        http = httpx.Client(base_url=service.url, timeout=30)
        self._stack = [http, service, hooks]
        return Running(http, hooks.url)

    def __exit__(self, *exc_info: object) -> None:
        http, service, hooks = self._stack
        http.close()
        service.stop()
        hooks.stop()


def updates(client_id: str, orders: int) -> list[dict[str, Any]]:
    return [update(client_id, f"{client_id}-{number}") for number in range(orders)]


def test_delivered_deliveries_are_pruned_and_then_404(running: Callable[..., Any]) -> None:
    with running() as service:
        client_id, token = service.token(service.hooks + "/hook")
        ids = service.ingest(token, updates(client_id, 20))
        wait_until(lambda: all(service.status(i) == 404 for i in ids))
        assert service.metric("dhan_postback_pruned_total", kind="delivered") == 20
        assert service.metric("dhan_postback_pruned_total", kind="attempts") == 20
        assert service.metric("dhan_postback_deliveries", status="delivered") == 0
        replay = service.http.post(f"/v2/deliveries/{ids[0]}/replay", headers=ADMIN)
        assert replay.status_code == 404


def test_dead_deliveries_are_pruned_after_their_own_retention(
    running: Callable[..., Any],
) -> None:
    refused = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: one attempt, dead
    with running(retain_dead="1d") as service:
        client_id, token = service.token(refused)
        [dead] = service.ingest(token, update(client_id, f"{client_id}-dead"))
        wait_until(lambda: service.detail(dead)["status"] == "dead")
        other_client, other_token = service.token(service.hooks + "/hook")
        [delivered] = service.ingest(other_token, update(other_client, f"{other_client}-ok"))
        wait_until(lambda: service.status(delivered) == 404)  # pruned since it died
        assert service.detail(dead)["status"] == "dead"
    with running() as service:  # the same database, dead retention now nothing
        wait_until(lambda: service.status(dead) == 404)
        assert service.metric("dhan_postback_pruned_total", kind="dead") == 1


def test_pending_deliveries_are_never_pruned(running: Callable[..., Any]) -> None:
    waiting = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: retried for a day
    with running(retry_schedule="0s,1d") as service:
        client_id, token = service.token(waiting)
        [pending] = service.ingest(token, update(client_id, f"{client_id}-p"))
        wait_until(lambda: service.detail(pending)["attemptCount"] == 1)
        other_client, other_token = service.token(service.hooks + "/hook")
        [delivered] = service.ingest(other_token, update(other_client, f"{other_client}-ok"))
        wait_until(lambda: service.status(delivered) == 404)  # the pruner has run since
        assert service.detail(pending)["status"] == "pending"


def test_the_pruner_is_off_with_a_zero_interval(running: Callable[..., Any]) -> None:
    with running(prune_interval="0s") as service:
        client_id, token = service.token(service.hooks + "/hook")
        ids = service.ingest(token, updates(client_id, 3))
        wait_until(lambda: service.metric("dhan_postback_deliveries", status="delivered") == 3)
        assert [service.status(i) for i in ids] == [200, 200, 200]
        assert service.metric("dhan_postback_pruned_total", kind="delivered") == 0


def test_expired_idempotency_keys_are_pruned(running: Callable[..., Any]) -> None:
    with running(idempotency_window="0s") as service:
        client_id, token = service.token(service.hooks + "/hook")
        response = service.http.post(
            "/v2/order-updates",
            headers={"access-token": token, "Idempotency-Key": "k1"},
            json=update(client_id, f"{client_id}-k"),
        )
        assert response.status_code == 202
        wait_until(
            lambda: service.metric("dhan_postback_pruned_total", kind="idempotency_keys") == 1
        )
