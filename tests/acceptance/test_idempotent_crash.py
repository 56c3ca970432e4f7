"""``dhan-postback serve`` killed with SIGKILL after committing a request and before answering.

The order system never got its 202, so it sends the same request again, with the same
``Idempotency-Key``, to the restarted service. It must get the answer it missed (the
``deliveryIds`` committed before the kill), and the receiver must get one set of deliveries,
not two.

How the kill lands in that window: the service reads a test-only variable,
``DHAN_POSTBACK_TEST_HOLD_ANSWER_AFTER_COMMIT``, and holds each ingest answer that long after
its commit. The test sends the request, watches the database until the key's row is
committed (so the kill is after the commit, seen from outside), then kills the process while
the answer is held (so it is before the answer: the client's request fails).
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.helpers.processes import serve_process
from tests.helpers.receivers import RecordingReceiver
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.updates import order_updates

pytestmark = pytest.mark.timeout(120)

ADMIN_KEY = "idempotent-crash-admin-key"
CLIENT_ID = "1100000999"
HOLD = "DHAN_POSTBACK_TEST_HOLD_ANSWER_AFTER_COMMIT"
KEY = "order-system-request-0001"


def _keys_in(db: str) -> Callable[[], int]:
    """Counts the committed idempotency keys of ``db`` (read from outside the service)."""
    if db.startswith("sqlite:///"):
        path = db.removeprefix("sqlite:///")

        def count() -> int:
            with sqlite3.connect(path) as conn:
                return int(conn.execute("SELECT count(*) FROM idempotency_keys").fetchone()[0])

        return count

    def count_pg() -> int:
        with psycopg.connect(db) as conn:
            row = conn.execute("SELECT count(*) FROM idempotency_keys").fetchone()
            return int(row[0]) if row else 0

    return count_pg


def _wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def test_a_request_retried_after_a_kill_between_commit_and_answer_is_delivered_once(
    db: str,
) -> None:
    bodies = order_updates(10, 3, client_id=CLIENT_ID)
    batch = b"[" + b",".join(bodies) + b"]"
    receiver = RecordingReceiver()
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    holding = serve_process(db, port, ADMIN_KEY)
    holding.env[HOLD] = "600"
    with UvicornThread(receiver.app) as hooks, httpx.Client(base_url=api, timeout=30) as http:
        holding.start()
        try:
            created = http.post(
                "/v2/access-tokens",
                headers={"admin-key": ADMIN_KEY},
                json={"dhanClientId": CLIENT_ID, "postbackUrl": hooks.url + "/hook"},
            ).json()
            headers = {
                "access-token": created["accessToken"],
                "content-type": "application/json",
                "Idempotency-Key": KEY,
            }
            keys = _keys_in(db)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                lost = pool.submit(http.post, "/v2/order-updates", content=batch, headers=headers)
                _wait_for(lambda: keys() == 1, timeout=30)
                assert not lost.done()  # committed, and the answer is not out yet
                holding.kill()  # SIGKILL
                with pytest.raises(httpx.TransportError):
                    lost.result()
        finally:
            holding.kill()

        with serve_process(db, port, ADMIN_KEY):
            retried = http.post("/v2/order-updates", content=batch, headers=headers)
            assert retried.status_code == 202, retried.text
            assert retried.headers["Idempotent-Replayed"] == "true"
            ids = retried.json()["deliveryIds"]
            assert len(ids) == len(bodies)

            def listed() -> list[dict[str, str]]:
                found: list[dict[str, str]] = http.get(
                    "/v2/deliveries",
                    params={"dhanClientId": CLIENT_ID, "limit": 1000},
                    headers={"admin-key": ADMIN_KEY},
                ).json()["deliveries"]
                return found

            _wait_for(lambda: {d["status"] for d in listed()} == {"delivered"}, timeout=60)
            assert sorted(d["deliveryId"] for d in listed()) == sorted(ids)
    # one set of deliveries: every body arrived under one of the committed ids, none twice
    # under two ids (a re-send after the kill repeats its webhook-id)
    arrived = {r.webhook_id: r.body for r in receiver.snapshot()}
    assert set(arrived) == set(ids)
    assert sorted(arrived.values()) == sorted(bodies)
