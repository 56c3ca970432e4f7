"""A signing secret rotated under a running service: no receiver ever refuses a postback.

Real processes over loopback: ``dhan-postback serve`` (on SQLite, then on PostgreSQL) and
``dhan-postback receive``. The receiver first knows only the old secret; after the rotation,
while both signatures travel, it is restarted knowing only the new one. Every postback sent
before, during and after is accepted at its first attempt. The official ``standardwebhooks``
package verifies the two-signature header with either secret.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks

from dhan_postback.receiver import ReceiverStore
from dhan_postback.signing import Signer
from tests.helpers.processes import ServerProcess, serve_process
from tests.helpers.receivers import RecordingReceiver, Reply, always
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.updates import simulated_bodies
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.timeout(180)

ADMIN_KEY = "rotation-test-admin-key"
ADMIN = {"admin-key": ADMIN_KEY}
CLIENT_ID = "1100000888"
TAPPED_CLIENT_ID = "1100000889"
ORDERS_PER_PHASE = 8
GRACE = ("--secret-rotation-grace", "1h")


class Api:
    """The service's admin API, as an operator's script calls it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def token(self, client_id: str, postback_url: str) -> dict[str, Any]:
        body = {"dhanClientId": client_id, "postbackUrl": postback_url}
        response = httpx.post(f"{self.url}/v2/access-tokens", headers=ADMIN, json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def rotate(self, endpoint_id: str) -> str:
        response = httpx.post(f"{self.url}/v2/endpoints/{endpoint_id}/rotate-secret", headers=ADMIN)
        assert response.status_code == 200, response.text
        secret: str = response.json()["signingSecret"]
        return secret

    def submit(self, token: str, bodies: list[bytes]) -> list[str]:
        response = httpx.post(
            f"{self.url}/v2/order-updates",
            content=b"[" + b",".join(bodies) + b"]",
            headers={"access-token": token, "content-type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        ids: list[str] = response.json()["deliveryIds"]
        return ids

    def deliveries(self, client_id: str) -> list[dict[str, Any]]:
        params = {"dhanClientId": client_id, "limit": "1000"}
        response = httpx.get(f"{self.url}/v2/deliveries", headers=ADMIN, params=params)
        found: list[dict[str, Any]] = response.json()["deliveries"]
        return found

    def delivered(self, ids: list[str], client_id: str) -> bool:
        status = {d["deliveryId"]: d["status"] for d in self.deliveries(client_id)}
        return all(status.get(delivery_id) == "delivered" for delivery_id in ids)


def receiver_process(db: Path, port: int, secret: str) -> ServerProcess:
    return ServerProcess(
        ["receive", "--port", str(port), "--db", str(db), "--quiet", "--secret", secret],
        health_url=f"http://127.0.0.1:{port}/healthz",
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_server").new_database()
        return url
    return tmp_path / "service.db"


async def test_a_receiver_with_only_the_old_then_only_the_new_secret_accepts_every_postback(
    tmp_path: Path, database: Path | str
) -> None:
    port, hook_port = free_port(), free_port()
    api = Api(f"http://127.0.0.1:{port}")
    receiver_db = tmp_path / "receiver.db"
    phases = [
        simulated_bodies(ORDERS_PER_PHASE, seed=seed, client_id=CLIENT_ID) for seed in (1, 2, 3)
    ]
    sent: list[str] = []
    with serve_process(database, port, ADMIN_KEY, flags=GRACE):
        token = api.token(CLIENT_ID, f"http://127.0.0.1:{hook_port}/")
        old_secret = token["signingSecret"]

        with receiver_process(receiver_db, hook_port, old_secret):
            # Before the rotation: one signature, the old secret's.
            sent += api.submit(token["accessToken"], phases[0])
            await eventually(lambda: api.delivered(sent, CLIENT_ID), timeout=60)
            new_secret = api.rotate(token["endpointId"])
            # During the grace period, to a receiver that knows only the old secret.
            sent += api.submit(token["accessToken"], phases[1])
            await eventually(lambda: api.delivered(sent, CLIENT_ID), timeout=60)

        with receiver_process(receiver_db, hook_port, new_secret):
            # The receiver now knows only the new secret; a renewed token changes nothing.
            renewed = api.token(CLIENT_ID, f"http://127.0.0.1:{hook_port}/")
            assert renewed["signingSecret"] == new_secret
            sent += api.submit(renewed["accessToken"], phases[2])
            await eventually(lambda: api.delivered(sent, CLIENT_ID), timeout=60)

        deliveries = {d["deliveryId"]: d for d in api.deliveries(CLIENT_ID)}
        endpoint = httpx.get(f"{api.url}/v2/endpoints/{token['endpointId']}", headers=ADMIN).json()

    total = sum(len(phase) for phase in phases)
    assert len(sent) == total
    # Accepted at the first attempt, every one: no receiver ever answered 401.
    assert {deliveries[i]["attemptCount"] for i in sent} == {1}
    assert {deliveries[i]["lastStatusCode"] for i in sent} == {200}
    counts = ReceiverStore(receiver_db).counts()
    assert counts.updates == total
    # serve's dispatcher tells the endpoints API its breaker state; the log its last answer.
    assert (endpoint["breaker"], endpoint["backlog"]) == ("closed", 0)
    assert endpoint["lastAnswer"]["statusCode"] == 200
    assert endpoint["lastAnswer"]["deliveryId"] in sent


async def test_the_official_standardwebhooks_package_verifies_both_signatures(
    tmp_path: Path, database: Path | str
) -> None:
    port = free_port()
    api = Api(f"http://127.0.0.1:{port}")
    tap = RecordingReceiver(always(Reply()))
    bodies = simulated_bodies(3, seed=7, client_id=TAPPED_CLIENT_ID)
    with (
        UvicornThread(tap.app) as hooks,
        serve_process(database, port, ADMIN_KEY, flags=GRACE),
    ):
        token = api.token(TAPPED_CLIENT_ID, hooks.url + "/hook")
        old_secret = token["signingSecret"]
        new_secret = api.rotate(token["endpointId"])
        ids = api.submit(token["accessToken"], bodies)
        await eventually(lambda: api.delivered(ids, TAPPED_CLIENT_ID), timeout=60)

    requests = tap.first_arrivals()
    assert {r.webhook_id for r in requests} == set(ids)
    for request in requests:
        headers = dict(request.headers)
        signatures = headers["webhook-signature"].split(" ")
        stamp = int(headers["webhook-timestamp"])
        expected = [
            Signer(secret).signature(request.webhook_id, stamp, request.body)
            for secret in (new_secret, old_secret)
        ]
        assert signatures == expected  # the new secret's first
        for secret in (old_secret, new_secret):
            verified = standardwebhooks.Webhook(secret).verify(request.body, headers)
            assert verified == json.loads(request.body)
