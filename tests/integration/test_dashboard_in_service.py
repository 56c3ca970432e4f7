"""The dashboard as ``dhan-postback serve`` serves it: mounted at /dashboard in the service app.

A token made through the API logs into the dashboard (both hash it the same way), sees the
delivery the API committed, and a replay from the dashboard wakes the dispatcher hook.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.service import ADMIN_KEY, Service, running_service
from tests.helpers.updates import update


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with running_service(tmp_path) as running:
        yield running


@contextlib.contextmanager
def log_in(service: Service, credential: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{service.url}/dashboard", timeout=10) as client:
        form = client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        response = client.post("/login", data={"credential": credential, "csrf": csrf.group(1)})
        assert response.status_code == 303, response.text
        yield client


def test_service_serves_the_dashboard_at_slash_dashboard(service: Service) -> None:
    response = service.http.get("/dashboard/deliveries")
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login"
    assert service.http.get("/dashboard/login").status_code == 200


def test_a_token_from_the_api_sees_its_delivery_in_the_dashboard(service: Service) -> None:
    token = service.create_token()
    body = update(token["dhanClientId"])
    [delivery_id] = service.delivery_ids(token["accessToken"], body)
    with log_in(service, token["accessToken"]) as client:
        listing = client.get("/deliveries").text
        page = client.get(f"/deliveries/{delivery_id}").text
    assert delivery_id in listing
    assert body["orderId"] in page
    assert token["accessToken"] not in page and token["signingSecret"] not in page


def test_a_replay_from_the_dashboard_wakes_the_dispatcher(service: Service) -> None:
    token = service.create_token()
    [delivery_id] = service.delivery_ids(token["accessToken"], update(token["dhanClientId"]))
    commits_before = len(service.commits)
    with log_in(service, ADMIN_KEY) as client:
        confirm = client.get(f"/deliveries/{delivery_id}/replay").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', confirm)
        assert csrf is not None
        response = client.post(f"/deliveries/{delivery_id}/replay", data={"csrf": csrf.group(1)})
    assert response.status_code == 303
    assert len(service.commits) == commits_before + 1
