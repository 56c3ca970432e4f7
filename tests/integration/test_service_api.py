"""The service's HTTP API, driven over loopback against a real uvicorn and a SQLite file."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from dhan_postback import payload
from dhan_postback.service.app import create_app
from dhan_postback.service.node import ServiceNode
from dhan_postback.service.store import Attempt, DeliveryStatus, Outcome
from dhan_postback.service.store.sqlite import SQLiteStore, sqlite_path
from dhan_postback.settings import ServiceSettings
from tests.helpers.servers import UvicornThread
from tests.helpers.service import ADMIN_KEY, HOOK_URL, Service, assert_error, running_service
from tests.helpers.updates import new_client_id, update

PARTNER_URL = "http://127.0.0.1:8999/partner"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # Every test of this module refuses credentials on one service from one address: a
    # budget for all of them (tests/security/ checks the throttle itself).
    directory = tmp_path_factory.mktemp("service")
    with running_service(directory, max_batch=3, auth_failures=10_000) as running:
        yield running


@pytest.fixture
def token(service: Service) -> dict[str, Any]:
    """A fresh client with a token whose Postback URL is HOOK_URL."""
    return service.create_token()


def as_token(token: dict[str, Any]) -> dict[str, str]:
    return {"access-token": token["accessToken"]}


def detail(service: Service, delivery_id: str) -> dict[str, Any]:
    return service.admin_json("GET", f"/v2/deliveries/{delivery_id}")


# Access tokens and partners -------------------------------------------------------------------


def test_a_new_token_comes_once_with_its_url_signing_secret_and_expiry(service: Service) -> None:
    client_id = new_client_id()
    created = service.create_token(client_id)
    assert created["dhanClientId"] == client_id
    assert created["postbackUrl"] == HOOK_URL
    assert len(created["accessToken"]) >= 43
    assert created["signingSecret"].startswith("whsec_")
    expires = datetime.fromisoformat(created["expiresAt"])
    assert expires.utcoffset() is not None and expires.utcoffset().total_seconds() == 19800
    assert expires.timestamp() > time.time()


def test_the_store_keeps_only_a_hash_of_the_token(service: Service, token: dict[str, Any]) -> None:
    with sqlite3.connect(sqlite_path(service.db)) as conn:
        rows = conn.execute("SELECT token_hash FROM tokens").fetchall()
    hashes = {row[0] for row in rows}
    assert token["accessToken"] not in hashes
    assert all(len(value) == 64 for value in hashes)


@pytest.mark.parametrize("headers", [{}, {"admin-key": "wrong"}, {"admin-key": ""}])
def test_admin_endpoints_need_the_admin_key(service: Service, headers: dict[str, str]) -> None:
    body = {"dhanClientId": "1"}
    assert_error(service.http.post("/v2/access-tokens", json=body, headers=headers), 401)
    partner = {"partnerId": "p", "postbackUrl": PARTNER_URL}
    assert_error(service.http.post("/v2/partners", json=partner, headers=headers), 401)
    assert_error(service.http.delete("/v2/access-tokens/whatever", headers=headers), 401)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost/hook", "localhost"),
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest", "metadata"),
        ("http://169.254.1.1/hook", "link_local"),
        ("ftp://8.8.8.8/hook", "scheme"),
        ("http://user:pw@8.8.8.8/hook", "userinfo"),
    ],
)
def test_a_refused_postback_url_is_422_naming_the_reason(
    tmp_path: Path, url: str, reason: str
) -> None:
    with running_service(tmp_path, allow_loopback=False) as strict:
        response = strict.http.post(
            "/v2/access-tokens",
            headers=strict.admin,
            json={"dhanClientId": "1", "postbackUrl": url},
        )
    assert_error(response, 422, "postbackUrl", reason)


def test_loopback_urls_are_accepted_in_the_sandbox(service: Service) -> None:
    assert service.create_token(postback_url="http://127.0.0.1:1234/x")["postbackUrl"]


def test_a_token_for_an_unknown_partner_is_refused(service: Service) -> None:
    response = service.http.post(
        "/v2/access-tokens",
        headers=service.admin,
        json={"dhanClientId": "1", "partnerId": "nobody"},
    )
    assert_error(response, 400, "partnerId", "nobody")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "dhanClientId"),
        ({"dhanClientId": 5}, "dhanClientId"),
        ({"dhanClientId": "1", "extra": True}, "extra"),
        ([], "JSON object"),
    ],
)
def test_a_malformed_token_request_is_400_naming_the_field(
    service: Service, body: Any, needle: str
) -> None:
    response = service.http.post("/v2/access-tokens", headers=service.admin, json=body)
    assert_error(response, 400, needle)


def test_a_partner_gets_a_signing_secret(service: Service) -> None:
    response = service.http.post(
        "/v2/partners",
        headers=service.admin,
        json={"partnerId": "acme-1", "postbackUrl": PARTNER_URL},
    )
    assert response.status_code == 201
    assert response.json()["partnerId"] == "acme-1"
    assert response.json()["signingSecret"].startswith("whsec_")


def test_revoking_a_token_keeps_its_deliveries_visible_to_the_admin(
    service: Service, token: dict[str, Any]
) -> None:
    [delivery_id] = service.delivery_ids(token["accessToken"], update(token["dhanClientId"]))
    revoked = service.http.delete(
        f"/v2/access-tokens/{token['accessToken']}", headers=service.admin
    )
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    assert_error(service.ingest(token["accessToken"], update(token["dhanClientId"])), 401)
    assert_error(service.http.get("/v2/deliveries", headers=as_token(token)), 401)
    assert detail(service, delivery_id)["status"] == "pending"


def test_revoking_an_unknown_token_is_404(service: Service) -> None:
    assert_error(service.http.delete("/v2/access-tokens/nope", headers=service.admin), 404)


def test_an_expired_token_is_refused(tmp_path: Path) -> None:
    with running_service(tmp_path, token_ttl=0) as short_lived:
        created = short_lived.create_token()
        response = short_lived.ingest(created["accessToken"], update(created["dhanClientId"]))
    assert_error(response, 401, "expired")


# Ingest ---------------------------------------------------------------------------------------


def test_one_update_is_committed_and_kept_as_the_exact_payload(
    service: Service, token: dict[str, Any]
) -> None:
    sent = update(token["dhanClientId"], "order-1", price=250)
    before = len(service.commits)
    [delivery_id] = service.delivery_ids(token["accessToken"], sent)
    assert delivery_id.startswith("msg_")
    shown = detail(service, delivery_id)
    assert shown["payload"] == {**sent, "price": 250.0}
    assert list(shown["payload"]) == list(payload.FIELDS)
    assert (shown["status"], shown["orderId"], shown["postbackUrl"]) == (
        "pending",
        "order-1",
        HOOK_URL,
    )
    assert len(service.commits) == before + 1


def test_a_batch_gives_one_delivery_per_update_in_order(
    service: Service, token: dict[str, Any]
) -> None:
    client_id = token["dhanClientId"]
    batch = [update(client_id, f"order-{i}") for i in range(3)]
    ids = service.delivery_ids(token["accessToken"], batch)
    assert len(ids) == 3 == len(set(ids))
    assert [detail(service, i)["orderId"] for i in ids] == ["order-0", "order-1", "order-2"]


def test_a_batch_over_the_limit_is_refused_and_nothing_is_stored(
    service: Service, token: dict[str, Any]
) -> None:
    batch = [update(token["dhanClientId"], f"order-{i}") for i in range(4)]
    assert_error(service.ingest(token["accessToken"], batch), 400, "4 updates", "at most 3")
    listed = service.http.get("/v2/deliveries", headers=as_token(token)).json()
    assert listed["deliveries"] == []


def test_an_update_of_another_client_is_403_and_nothing_is_stored(
    service: Service, token: dict[str, Any]
) -> None:
    batch = [update(token["dhanClientId"], "a"), update(new_client_id(), "b")]
    assert_error(service.ingest(token["accessToken"], batch), 403, "update [1]", "dhanClientId")
    listed = service.http.get("/v2/deliveries", headers=as_token(token)).json()
    assert listed["deliveries"] == []


@pytest.mark.parametrize("headers", [{}, {"access-token": ""}, {"access-token": "not-a-token"}])
def test_ingest_without_a_valid_token_is_401(service: Service, headers: dict[str, str]) -> None:
    response = service.http.post("/v2/order-updates", headers=headers, json=update())
    assert_error(response, 401)


def test_a_token_with_no_url_and_no_partner_gets_202_with_nothing_to_send(
    service: Service,
) -> None:
    created = service.create_token(postback_url=None)
    response = service.ingest(created["accessToken"], update(created["dhanClientId"]))
    assert response.status_code == 202
    assert response.json()["deliveryIds"] == []
    assert "no Postback URL" in response.json()["note"]


def test_a_partner_token_sends_each_update_to_both_urls(service: Service) -> None:
    service.http.post(
        "/v2/partners",
        headers=service.admin,
        json={"partnerId": "acme-2", "postbackUrl": PARTNER_URL},
    )
    created = service.create_token(partner_id="acme-2")
    mine, partners = service.delivery_ids(created["accessToken"], update(created["dhanClientId"]))
    assert (detail(service, mine)["target"], detail(service, mine)["postbackUrl"]) == (
        "token",
        HOOK_URL,
    )
    assert (detail(service, partners)["target"], detail(service, partners)["partnerId"]) == (
        "partner",
        "acme-2",
    )
    own_view = service.http.get("/v2/deliveries", headers=as_token(created)).json()
    assert [d["deliveryId"] for d in own_view["deliveries"]] == [mine]


def _malformed_bodies() -> list[tuple[str, bytes, str]]:
    def encoded(value: Any) -> bytes:
        return httpx.Request("POST", "http://x", json=value).content

    good = update("CLIENT")
    without_quantity = {k: v for k, v in good.items() if k != "quantity"}
    return [
        ("not JSON", b"{dhanClientId: 1}", "not valid JSON"),
        ("empty body", b"", "not valid JSON"),
        ("a JSON string", b'"hello"', "not a JSON string"),
        ("a JSON number", b"42", "not a JSON number"),
        ("JSON null", b"null", "not a JSON null"),
        ("an empty array", b"[]", "empty"),
        ("an array of non-objects", b"[1, 2]", "update [0]"),
        ("a string for an int", encoded({**good, "quantity": "5"}), "quantity"),
        ("an int for a bool", encoded({**good, "afterMarketOrder": 1}), "afterMarketOrder"),
        ("an unknown enum value", encoded({**good, "orderStatus": "TRIGGERED"}), "orderStatus"),
        ("an unknown field", encoded({**good, "colour": "red"}), "colour"),
        ("a missing field", encoded(without_quantity), "quantity"),
        ("a malformed time", encoded({**good, "updateTime": "24/11/2021"}), "updateTime"),
        ("overfilled", encoded({**good, "quantity": 1, "filled_qty": 2}), "filled_qty"),
        ("a bad item in a batch", encoded([good, {**good, "price": "x"}]), "update [1]"),
    ]


@pytest.mark.parametrize(
    ("body", "needle"),
    [pytest.param(body, needle, id=name) for name, body, needle in _malformed_bodies()],
)
def test_a_malformed_update_is_400_naming_what_is_wrong(
    service: Service, body: bytes, needle: str
) -> None:
    created = service.create_token("CLIENT")
    response = service.http.post(
        "/v2/order-updates",
        content=body,
        headers={"access-token": created["accessToken"], "content-type": "application/json"},
    )
    assert_error(response, 400, needle)


def test_a_body_declared_as_something_else_than_json_is_415(
    service: Service, token: dict[str, Any]
) -> None:
    response = service.http.post(
        "/v2/order-updates",
        content=b"dhanClientId=1",
        headers={**as_token(token), "content-type": "application/x-www-form-urlencoded"},
    )
    assert_error(response, 415, "application/json")


def test_a_body_over_the_size_limit_is_413(tmp_path: Path) -> None:
    with running_service(tmp_path, max_body_bytes=2048) as small:
        created = small.create_token()
        batch = [update(created["dhanClientId"], f"o{i}") for i in range(5)]
        assert_error(small.ingest(created["accessToken"], batch), 413)

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            yield b"[" + b" " * 1500
            yield b" " * 1500 + b"]"

        streamed = small.http.post(
            "/v2/order-updates",
            content=chunks(),
            headers={**as_token(created), "content-type": "application/json"},
        )
        assert_error(streamed, 413)


# Delivery log ---------------------------------------------------------------------------------


def test_a_client_sees_only_its_own_deliveries(service: Service) -> None:
    alice, bob = service.create_token(), service.create_token()
    [alices] = service.delivery_ids(alice["accessToken"], update(alice["dhanClientId"]))
    [bobs] = service.delivery_ids(bob["accessToken"], update(bob["dhanClientId"]))
    listed = service.http.get("/v2/deliveries", headers=as_token(alice)).json()
    assert [d["deliveryId"] for d in listed["deliveries"]] == [alices]
    assert_error(service.http.get(f"/v2/deliveries/{bobs}", headers=as_token(alice)), 404)
    assert_error(service.http.post(f"/v2/deliveries/{bobs}/replay", headers=as_token(alice)), 404)
    other = {"dhanClientId": bob["dhanClientId"]}
    assert_error(service.http.get("/v2/deliveries", params=other, headers=as_token(alice)), 403)


def test_an_unknown_delivery_looks_the_same_as_another_clients(
    service: Service, token: dict[str, Any]
) -> None:
    missing = service.http.get("/v2/deliveries/msg_nope", headers=as_token(token))
    assert assert_error(missing, 404) == {
        "errorType": "Data_Error",
        "errorCode": "DH-907",
        "errorMessage": "no such delivery",
    }


def test_the_admin_sees_every_client_and_filters_by_one(service: Service) -> None:
    alice, bob = service.create_token(), service.create_token()
    [alices] = service.delivery_ids(alice["accessToken"], update(alice["dhanClientId"]))
    [bobs] = service.delivery_ids(bob["accessToken"], update(bob["dhanClientId"]))
    everything = service.http.get("/v2/deliveries", headers=service.admin).json()
    assert {alices, bobs} <= {d["deliveryId"] for d in everything["deliveries"]}
    only_bob = service.http.get(
        "/v2/deliveries", params={"dhanClientId": bob["dhanClientId"]}, headers=service.admin
    ).json()
    assert [d["deliveryId"] for d in only_bob["deliveries"]] == [bobs]


def test_the_log_filters_by_order_status_and_time(service: Service, token: dict[str, Any]) -> None:
    client_id = token["dhanClientId"]
    first = service.delivery_ids(token["accessToken"], update(client_id, "a"))
    cut = time.time()
    second = service.delivery_ids(token["accessToken"], update(client_id, "b"))

    def ids(**params: Any) -> list[str]:
        found = service.http.get("/v2/deliveries", params=params, headers=as_token(token))
        assert found.status_code == 200, found.text
        return [d["deliveryId"] for d in found.json()["deliveries"]]

    assert ids(orderId="a") == first
    assert ids(status="pending") == second + first
    assert ids(status="dead") == []
    assert ids(since=str(cut)) == second
    assert ids(until=str(cut)) == first
    iso_cut = datetime.fromtimestamp(cut).astimezone().isoformat()
    assert ids(since=iso_cut) == second


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"status": "lost"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "-1"}, "cursor"),
        ({"since": "yesterday"}, "since"),
        ({"order": "random"}, "order"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_log_query_is_400_naming_the_parameter(
    service: Service, token: dict[str, Any], params: dict[str, str], needle: str
) -> None:
    response = service.http.get("/v2/deliveries", params=params, headers=as_token(token))
    assert_error(response, 400, needle)


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_cursor_paging_visits_every_delivery_once(
    service: Service, token: dict[str, Any], order: str
) -> None:
    client_id = token["dhanClientId"]
    sent: list[str] = []
    for start in (0, 3):
        batch = [update(client_id, f"o{i}") for i in range(start, start + 3)]
        sent += service.delivery_ids(token["accessToken"], batch)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 4, "order": order}
    while True:
        page = service.http.get("/v2/deliveries", params=params, headers=as_token(token)).json()
        seen += [d["deliveryId"] for d in page["deliveries"]]
        if page["nextCursor"] is None:
            break
        params["cursor"] = page["nextCursor"]
    assert seen == (sent if order == "oldest" else sent[::-1])


@contextlib.asynccontextmanager
async def dispatcher_node(service: Service, delivery_id: str) -> AsyncIterator[SQLiteStore]:
    """A second store on the service's file, as a dispatcher node would open, holding a lease
    on ``delivery_id`` only (other tests' deliveries are given back at once)."""
    node = SQLiteStore(service.db)
    await node.open()
    try:
        claims = await node.claim(limit=10_000, now=time.time() + 1, lease=600)
        await node.release([c.id for c in claims if c.id != delivery_id])
        assert delivery_id in {c.id for c in claims}
        yield node
    finally:
        await node.close()


async def test_a_delivery_shows_every_attempt(service: Service, token: dict[str, Any]) -> None:
    [delivery_id] = service.delivery_ids(token["accessToken"], update(token["dhanClientId"]))
    async with dispatcher_node(service, delivery_id) as node:
        attempt = Attempt(delivery_id, 1, time.time(), 12.5, 503, "HTTP 503", "busy")
        await node.finish([Outcome(attempt, "retry", next_attempt_at=time.time() + 60)])
    shown = service.http.get(f"/v2/deliveries/{delivery_id}", headers=as_token(token)).json()
    assert shown["attemptCount"] == 1
    [seen] = shown["attempts"]
    assert (seen["number"], seen["statusCode"], seen["latencyMs"]) == (1, 503, 12.5)
    assert (seen["error"], seen["responsePrefix"]) == ("HTTP 503", "busy")
    assert datetime.fromisoformat(seen["time"]).utcoffset() is not None


# Replay ---------------------------------------------------------------------------------------


async def _kill(service: Service, delivery_id: str) -> None:
    """Let a dispatcher node give up on a delivery (dead after one failed attempt)."""
    async with dispatcher_node(service, delivery_id) as node:
        attempt = Attempt(delivery_id, 1, time.time(), 5.0, 500, "HTTP 500")
        await node.finish([Outcome(attempt, "dead")])


async def test_replaying_a_dead_delivery_makes_it_pending_again(
    service: Service, token: dict[str, Any]
) -> None:
    [delivery_id] = service.delivery_ids(token["accessToken"], update(token["dhanClientId"]))
    await _kill(service, delivery_id)
    assert detail(service, delivery_id)["status"] == DeliveryStatus.DEAD
    before = len(service.commits)
    response = service.http.post(f"/v2/deliveries/{delivery_id}/replay", headers=as_token(token))
    assert response.status_code == 202
    assert response.json() == {"deliveryIds": [delivery_id]}
    assert detail(service, delivery_id)["status"] == "pending"
    assert len(service.commits) == before + 1


async def test_replaying_a_delivery_being_sent_is_a_conflict(
    service: Service, token: dict[str, Any]
) -> None:
    [delivery_id] = service.delivery_ids(token["accessToken"], update(token["dhanClientId"]))
    async with dispatcher_node(service, delivery_id) as node:
        response = service.http.post(
            f"/v2/deliveries/{delivery_id}/replay", headers=as_token(token)
        )
        await node.release([delivery_id])
    assert_error(response, 409, "being sent")


async def test_replay_by_filter_sends_the_matching_dead_deliveries_again(
    service: Service, token: dict[str, Any]
) -> None:
    client_id = token["dhanClientId"]
    dead, alive = service.delivery_ids(
        token["accessToken"],
        [update(client_id, f"{client_id}-x"), update(client_id, f"{client_id}-y")],
    )
    await _kill(service, dead)
    response = service.http.post(
        "/v2/deliveries/replay", json={"status": "dead"}, headers=as_token(token)
    )
    assert response.status_code == 202
    assert response.json()["deliveryIds"] == [dead]
    assert detail(service, alive)["status"] == "pending"


@pytest.mark.parametrize(
    ("body", "needle"),
    [({}, "at least one filter"), ({"status": "lost"}, "status"), ({"x": 1}, "x")],
)
def test_a_bad_replay_filter_is_400(
    service: Service, token: dict[str, Any], body: dict[str, Any], needle: str
) -> None:
    response = service.http.post("/v2/deliveries/replay", json=body, headers=as_token(token))
    assert_error(response, 400, needle)


# Operations -----------------------------------------------------------------------------------


def test_health_is_ok_while_the_store_answers(service: Service) -> None:
    response = service.http.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_health_is_503_in_the_error_shape_when_the_store_is_down(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'down.db'}")
    try:
        with running_service(tmp_path, store=store) as running:
            assert running.http.get("/healthz").status_code == 200
            await store.close()
            assert_error(running.http.get("/healthz"), 503)
    finally:
        await store.close()


def test_metrics_show_ingested_updates_and_deliveries_by_status(
    service: Service, token: dict[str, Any]
) -> None:
    service.delivery_ids(token["accessToken"], update(token["dhanClientId"]))
    response = service.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    ingested = next(x for x in lines if x.startswith("dhan_postback_updates_ingested_total "))
    assert float(ingested.split()[1]) >= 1
    pending = next(x for x in lines if x.startswith('dhan_postback_deliveries{status="pending"}'))
    assert float(pending.split()[1]) >= 1


def test_an_unknown_path_is_404_in_the_error_shape(service: Service) -> None:
    assert_error(service.http.get("/v2/nothing-here"), 404)


def test_a_wrong_method_is_405_in_the_error_shape(service: Service) -> None:
    response = service.http.put("/v2/order-updates", json={})
    assert_error(response, 405, "PUT")
    assert "POST" in response.headers["allow"]


async def test_an_unexpected_error_is_a_clean_500(tmp_path: Path) -> None:
    class BrokenStore(SQLiteStore):
        async def list_deliveries(self, query: Any) -> Any:
            raise RuntimeError("boom with a secret inside")

    store = BrokenStore(f"sqlite:///{tmp_path / 'broken.db'}")
    try:
        with running_service(tmp_path, store=store) as running:
            response = running.http.get("/v2/deliveries", headers={"admin-key": ADMIN_KEY})
    finally:
        await store.close()
    body = assert_error(response, 500)
    assert body["errorMessage"] == "internal error"


def test_the_openapi_document_describes_every_route(service: Service) -> None:
    document = service.http.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert {
        "/v2/access-tokens",
        "/v2/access-tokens/{token}",
        "/v2/endpoints",
        "/v2/endpoints/{endpoint_id}",
        "/v2/endpoints/{endpoint_id}/rotate-secret",
        "/v2/endpoints/{endpoint_id}/pause",
        "/v2/endpoints/{endpoint_id}/resume",
        "/v2/partners",
        "/v2/order-updates",
        "/v2/deliveries",
        "/v2/deliveries/replay",
        "/v2/deliveries/{delivery_id}",
        "/v2/deliveries/{delivery_id}/replay",
        "/healthz",
        "/metrics",
    } == set(document["paths"])


def test_the_app_runs_its_node_for_its_lifespan(tmp_path: Path) -> None:
    settings = ServiceSettings(db=f"sqlite:///{tmp_path / 'node.db'}", admin_key=ADMIN_KEY)
    node = ServiceNode(settings)
    with UvicornThread(create_app(node)) as server:
        assert httpx.get(server.url + "/healthz").status_code == 200
        assert node.running and node.dispatcher is not None
    assert not node.running and node.dispatcher is None
