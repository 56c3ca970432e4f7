"""Fuzzing the whole API from its OpenAPI document: no input makes the service fail.

schemathesis generates valid and invalid requests for every operation of
``GET /openapi.json`` and checks that none gets a 5xx, and that every answer has a documented
status, content type and shape. Bounded: a few dozen examples per operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dhan_postback.service.openapi import openapi_document
from tests.helpers.service import ADMIN_KEY, Service, running_service


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, dict[str, Any]]]:
    # Fuzzed credentials are wrong by the hundred, all from one address: not throttled here.
    directory = tmp_path_factory.mktemp("fuzz")
    with running_service(directory, max_batch=20, auth_failures=100_000) as service:
        yield service, service.create_token()


# The document the service serves at GET /openapi.json (a test below checks they are equal);
# loaded at import because schemathesis makes one test per operation at collection time.
schema = schemathesis.openapi.from_dict(openapi_document())


def test_the_fuzzed_document_is_the_served_one(fuzzed: tuple[Service, dict[str, Any]]) -> None:
    service, _ = fuzzed
    assert service.http.get("/openapi.json").json() == openapi_document()


def _as_the_tokens_client(body: Any, client_id: str) -> None:
    """Give generated updates the token's client, so that valid ones get as far as the outbox."""
    items = body if isinstance(body, list) else [body]
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("dhanClientId"), str):
            item["dhanClientId"] = client_id


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error_or_an_undocumented_answer(
    case: Any, fuzzed: tuple[Service, dict[str, Any]]
) -> None:
    service, token = fuzzed
    headers = {"admin-key": ADMIN_KEY}
    if case.operation.path == "/v2/order-updates":
        _as_the_tokens_client(case.body, token["dhanClientId"])
        headers = {"access-token": token["accessToken"]}
    case.call_and_validate(
        base_url=service.url,
        headers=headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
