"""Endpoints, their secrets and the token list over HTTP, on SQLite and on PostgreSQL.

A real service (uvicorn on loopback) on each backend; no dispatcher runs, so deliveries to
HOOK_URL wait in the outbox and count as the endpoint's backlog.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from tests.helpers.service import HOOK_URL, Service, assert_error
from tests.helpers.updates import new_client_id, update

OTHER_URL = "http://127.0.0.1:8999/other"
PARTNER_URL = "http://127.0.0.1:8999/partner"
GRACE = 3600.0


SERVICE_SETTINGS = {"secret_rotation_grace": GRACE}  # of the module-wide ``service`` (conftest)


def get(service: Service, path: str, **params: str) -> dict[str, Any]:
    return service.admin_json("GET", path, **params)


def rotate(service: Service, endpoint_id: str) -> dict[str, Any]:
    return service.admin_json("POST", f"/v2/endpoints/{endpoint_id}/rotate-secret")


# Tokens share their endpoint's secret ---------------------------------------------------------


def test_a_renewed_token_gets_the_same_endpoint_and_signing_secret(service: Service) -> None:
    client = new_client_id()
    first = service.create_token(client)
    renewed = service.create_token(client)
    assert renewed["accessToken"] != first["accessToken"]
    assert renewed["endpointId"] == first["endpointId"]
    assert renewed["endpointId"].startswith("ep_")
    assert renewed["signingSecret"] == first["signingSecret"]


def test_a_token_for_another_url_gets_another_endpoint_and_secret(service: Service) -> None:
    client = new_client_id()
    first = service.create_token(client)
    moved = service.create_token(client, postback_url=OTHER_URL)
    assert moved["endpointId"] != first["endpointId"]
    assert moved["signingSecret"] != first["signingSecret"]


def test_a_token_without_a_url_has_no_endpoint_and_no_secret(service: Service) -> None:
    created = service.create_token(postback_url=None)
    assert (created["endpointId"], created["signingSecret"]) == (None, None)


def test_a_partner_put_again_at_its_url_keeps_its_endpoint_and_secret(service: Service) -> None:
    body = {"partnerId": f"p{new_client_id()}", "postbackUrl": PARTNER_URL}
    first = service.http.post("/v2/partners", headers=service.admin, json=body).json()
    again = service.http.post("/v2/partners", headers=service.admin, json=body).json()
    assert first["endpointId"] == again["endpointId"]
    assert first["signingSecret"] == again["signingSecret"]


# Listing and showing endpoints ----------------------------------------------------------------


def test_an_endpoint_shows_its_owner_backlog_and_state_but_not_its_secret(
    service: Service,
) -> None:
    client = new_client_id()
    token = service.create_token(client)
    service.delivery_ids(token["accessToken"], [update(client, "o1"), update(client, "o2")])
    shown = get(service, f"/v2/endpoints/{token['endpointId']}")
    assert shown["endpointId"] == token["endpointId"]
    assert (shown["postbackUrl"], shown["dhanClientId"], shown["partnerId"]) == (
        HOOK_URL,
        client,
        None,
    )
    assert shown["paused"] is False
    assert shown["backlog"] == 2
    assert shown["lastAnswer"] is None
    assert shown["breaker"] is None  # no dispatcher runs here
    assert datetime.fromisoformat(shown["createdAt"]).timestamp() <= time.time()
    assert "signingSecret" not in shown
    assert token["signingSecret"] not in str(shown)


def test_the_secret_is_shown_only_when_asked_for(service: Service) -> None:
    token = service.create_token()
    shown = get(service, f"/v2/endpoints/{token['endpointId']}", includeSecret="true")
    assert shown["signingSecret"] == token["signingSecret"]
    assert shown["previousSecrets"] == []
    listed = get(service, "/v2/endpoints", dhanClientId=token["dhanClientId"])
    assert token["signingSecret"] not in str(listed)


def test_endpoints_are_listed_and_filtered_by_owner(service: Service) -> None:
    client = new_client_id()
    own = service.create_token(client)
    other = service.create_token(client, postback_url=OTHER_URL)
    listed = get(service, "/v2/endpoints", dhanClientId=client)["endpoints"]
    assert [e["endpointId"] for e in listed] == [own["endpointId"], other["endpointId"]]
    everything = get(service, "/v2/endpoints")["endpoints"]
    assert {own["endpointId"], other["endpointId"]} <= {e["endpointId"] for e in everything}


def test_an_unknown_endpoint_is_404(service: Service) -> None:
    response = service.http.get("/v2/endpoints/ep_nobody", headers=service.admin)
    assert_error(response, 404, "no such endpoint")
    response = service.http.post("/v2/endpoints/ep_nobody/rotate-secret", headers=service.admin)
    assert_error(response, 404, "no such endpoint")


@pytest.mark.parametrize(
    ("path", "params", "needle"),
    [
        ("/v2/endpoints", {"includeSecret": "yes"}, "includeSecret"),
        ("/v2/endpoints", {"secret": "true"}, "secret"),
        ("/v2/access-tokens", {"status": "active"}, "status"),
    ],
)
def test_a_bad_query_parameter_is_400_naming_it(
    service: Service, path: str, params: dict[str, str], needle: str
) -> None:
    assert_error(service.http.get(path, headers=service.admin, params=params), 400, needle)


def test_endpoints_and_the_token_list_need_the_admin_key(service: Service) -> None:
    token = service.create_token()
    as_token = {"access-token": token["accessToken"]}
    for path in ("/v2/endpoints", f"/v2/endpoints/{token['endpointId']}", "/v2/access-tokens"):
        assert_error(service.http.get(path, headers=as_token), 401)
    rotate_path = f"/v2/endpoints/{token['endpointId']}/rotate-secret"
    assert_error(service.http.post(rotate_path, headers=as_token), 401)


# Rotation -------------------------------------------------------------------------------------


def test_a_rotation_answers_a_new_secret_and_keeps_the_old_one_for_the_grace_period(
    service: Service,
) -> None:
    token = service.create_token()
    before = time.time()
    rotated = rotate(service, token["endpointId"])
    assert rotated["signingSecret"].startswith("whsec_")
    assert rotated["signingSecret"] != token["signingSecret"]
    until = datetime.fromisoformat(rotated["previousSecretsUntil"]).timestamp()
    assert before + GRACE - 1 <= until <= time.time() + GRACE
    shown = get(service, f"/v2/endpoints/{token['endpointId']}", includeSecret="true")
    assert shown["signingSecret"] == rotated["signingSecret"]
    assert shown["previousSecrets"] == [token["signingSecret"]]


def test_a_token_renewed_after_a_rotation_gets_the_new_secret(service: Service) -> None:
    client = new_client_id()
    token = service.create_token(client)
    rotated = rotate(service, token["endpointId"])
    renewed = service.create_token(client)
    assert renewed["signingSecret"] == rotated["signingSecret"]


# The token list -------------------------------------------------------------------------------


def test_tokens_are_listed_by_a_non_secret_id_never_the_token(service: Service) -> None:
    client = new_client_id()
    first = service.create_token(client)
    renewed = service.create_token(client)
    revoked = service.http.delete(
        f"/v2/access-tokens/{first['accessToken']}", headers=service.admin
    )
    assert revoked.status_code == 200
    listed = get(service, "/v2/access-tokens", dhanClientId=client)["accessTokens"]
    assert [t["status"] for t in listed] == ["active", "revoked"]
    assert {t["endpointId"] for t in listed} == {first["endpointId"]}
    assert all(t["tokenId"].startswith("tok_") for t in listed)
    assert listed[0]["tokenId"] != listed[1]["tokenId"]
    text = str(listed)
    for secret in (first["accessToken"], renewed["accessToken"], first["signingSecret"]):
        assert secret not in text
    assert datetime.fromisoformat(listed[0]["expiresAt"]).timestamp() > time.time()
