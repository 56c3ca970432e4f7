"""The operator's commands against a real service, on SQLite and on PostgreSQL.

``dhan-postback endpoints``, ``tokens list`` and ``deliveries`` call the admin API of a
service on loopback (uvicorn in a thread, no dispatcher, so deliveries wait in the outbox).
Each runs the real program, so that what a user sees on stdout and stderr is what is
checked.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.processes import clean_env, run_cli
from tests.helpers.servers import free_port
from tests.helpers.service import ADMIN_KEY, HOOK_URL, Service
from tests.helpers.updates import new_client_id, update


def run(service: Service, *args: str) -> str:
    """The command's standard output; it must succeed."""
    result = program(
        *args,
        DHAN_POSTBACK_ADMIN_KEY=ADMIN_KEY,
        DHAN_POSTBACK_SERVER=service.url,
        COLUMNS="250",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def run_json(service: Service, *args: str) -> Any:
    return json.loads(run(service, *args, "--json"))


def program(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real ``dhan-postback`` with only the given DHAN_POSTBACK_* variables."""
    return run_cli(*args, env=clean_env(**env))


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], *needles: str, code: int = 1
) -> None:
    """One ``Error:`` line holding every needle; exit 1, or 2 for a usage mistake."""
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def client_with_backlog(service: Service) -> tuple[str, dict[str, Any], list[str]]:
    """A new client's token and three pending deliveries (two orders)."""
    client = new_client_id()
    token = service.create_token(client)
    ids = service.delivery_ids(
        token["accessToken"], [update(client, "o1"), update(client, "o1"), update(client, "o2")]
    )
    return client, token, ids


# Endpoints -------------------------------------------------------------------------------------


def test_endpoints_list_shows_each_endpoint_with_its_backlog(
    service: Service, client_with_backlog: tuple[str, dict[str, Any], list[str]]
) -> None:
    client, token, _ = client_with_backlog
    [shown] = run_json(service, "endpoints", "list", "--client-id", client)["endpoints"]
    assert (shown["endpointId"], shown["backlog"]) == (token["endpointId"], 3)
    table = run(service, "endpoints", "list", "--client-id", client)
    assert token["endpointId"] in table and HOOK_URL in table and f"client {client}" in table
    assert token["signingSecret"] not in table


def test_endpoints_show_gives_the_secret_only_when_asked(service: Service) -> None:
    token = service.create_token()
    plain = run(service, "endpoints", "show", token["endpointId"])
    assert token["endpointId"] in plain and token["signingSecret"] not in plain
    with_secret = run(service, "endpoints", "show", token["endpointId"], "--include-secret")
    assert token["signingSecret"] in with_secret


def test_endpoints_rotate_secret_prints_the_new_secret_which_then_signs(
    service: Service,
) -> None:
    client = new_client_id()
    token = service.create_token(client)
    rotated = run_json(service, "endpoints", "rotate-secret", token["endpointId"])
    assert rotated["signingSecret"] != token["signingSecret"]
    shown = run_json(service, "endpoints", "show", token["endpointId"], "--include-secret")
    assert shown["signingSecret"] == rotated["signingSecret"]
    assert shown["previousSecrets"] == [token["signingSecret"]]
    text = run(service, "endpoints", "rotate-secret", token["endpointId"])
    assert "new signing secret:" in text


def test_endpoints_pause_and_resume_say_the_state_and_the_backlog(
    service: Service, client_with_backlog: tuple[str, dict[str, Any], list[str]]
) -> None:
    _, token, ids = client_with_backlog
    endpoint_id = token["endpointId"]
    paused = run(service, "endpoints", "pause", endpoint_id)
    assert paused.strip() == f"{endpoint_id} ({HOOK_URL}): paused, {len(ids)} pending"
    assert run_json(service, "endpoints", "show", endpoint_id)["paused"] is True
    assert run_json(service, "endpoints", "pause", endpoint_id)["paused"] is True  # idempotent
    resumed = run(service, "endpoints", "resume", endpoint_id)
    assert resumed.strip() == f"{endpoint_id} ({HOOK_URL}): sending, {len(ids)} pending"
    assert run_json(service, "endpoints", "show", endpoint_id)["paused"] is False


# Tokens --------------------------------------------------------------------------------------


def test_tokens_list_shows_ids_never_tokens(service: Service) -> None:
    client = new_client_id()
    first, renewed = service.create_token(client), service.create_token(client)
    listed = run_json(service, "tokens", "list", "--client-id", client)["accessTokens"]
    assert len(listed) == 2 and {t["endpointId"] for t in listed} == {first["endpointId"]}
    table = run(service, "tokens", "list", "--client-id", client)
    for token in listed:
        assert token["tokenId"] in table
    for secret in (first["accessToken"], renewed["accessToken"]):
        assert secret not in table


# Deliveries ----------------------------------------------------------------------------------


def test_deliveries_list_filters_like_the_api(
    service: Service, client_with_backlog: tuple[str, dict[str, Any], list[str]]
) -> None:
    client, _, ids = client_with_backlog
    page = run_json(service, "deliveries", "list", "--client-id", client, "--order-id", "o1")
    assert [d["deliveryId"] for d in page["deliveries"]] == [ids[1], ids[0]]
    oldest = run_json(service, "deliveries", "list", "--client-id", client, "--oldest-first")
    assert [d["deliveryId"] for d in oldest["deliveries"]] == ids
    first_page = run_json(service, "deliveries", "list", "--client-id", client, "--limit", "2")
    rest = run_json(
        service, "deliveries", "list", "--client-id", client, "--cursor", first_page["nextCursor"]
    )
    assert [d["deliveryId"] for d in rest["deliveries"]] == [ids[0]]
    table = run(service, "deliveries", "list", "--client-id", client, "--status", "pending")
    assert all(delivery_id in table for delivery_id in ids)


def test_deliveries_show_prints_the_delivery_and_its_attempts(
    service: Service, client_with_backlog: tuple[str, dict[str, Any], list[str]]
) -> None:
    _, _, ids = client_with_backlog
    shown = run_json(service, "deliveries", "show", ids[0])
    assert (shown["deliveryId"], shown["status"], shown["attempts"]) == (ids[0], "pending", [])
    assert f"delivery:     {ids[0]}" in run(service, "deliveries", "show", ids[0])


def test_deliveries_replay_sends_one_or_every_one_matching(
    service: Service, client_with_backlog: tuple[str, dict[str, Any], list[str]]
) -> None:
    client, _, ids = client_with_backlog
    assert run_json(service, "deliveries", "replay", ids[2])["deliveryIds"] == [ids[2]]
    matching = run_json(service, "deliveries", "replay", "--client-id", client, "--order-id", "o1")
    assert sorted(matching["deliveryIds"]) == sorted(ids[:2])
    assert "replayed 1 delivery" in run(service, "deliveries", "replay", ids[0])


# Mistakes: one line each -----------------------------------------------------------------------


def test_a_dead_server_is_one_line_naming_its_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("endpoints", "list"), ("tokens", "list"), ("deliveries", "list")):
        result = program(*args, "--server", url, DHAN_POSTBACK_ADMIN_KEY="k")
        assert_one_line_error(result, url, "cannot reach")


def test_a_wrong_admin_key_is_one_line(service: Service) -> None:
    result = program("endpoints", "list", "--server", service.url, DHAN_POSTBACK_ADMIN_KEY="bad")
    assert_one_line_error(result, "refused the admin key", "DHAN_POSTBACK_ADMIN_KEY")


def test_a_missing_admin_key_is_one_line(service: Service) -> None:
    assert_one_line_error(
        program("deliveries", "list", "--server", service.url), "DHAN_POSTBACK_ADMIN_KEY", code=2
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("endpoints", "show", "ep_nobody"), "no such endpoint"),
        (("endpoints", "rotate-secret", "ep_nobody"), "no such endpoint"),
        (("endpoints", "pause", "ep_nobody"), "no such endpoint"),
        (("endpoints", "resume", "ep_nobody"), "no such endpoint"),
        (("deliveries", "show", "msg_nobody"), "no such delivery"),
        (("deliveries", "replay", "msg_nobody"), "no such delivery"),
    ],
)
def test_an_unknown_id_is_one_line_with_the_404(
    service: Service, args: tuple[str, ...], needle: str
) -> None:
    result = program(*args, "--server", service.url, DHAN_POSTBACK_ADMIN_KEY=ADMIN_KEY)
    assert_one_line_error(result, "404", needle)


def test_replay_without_an_id_or_a_filter_is_one_line(service: Service) -> None:
    result = program("deliveries", "replay", "--server", service.url, DHAN_POSTBACK_ADMIN_KEY="k")
    assert_one_line_error(result, "at least one filter")


def test_a_server_that_is_not_http_is_one_line(tmp_path: Path) -> None:
    result = program("endpoints", "list", "--server", "ftp://x", DHAN_POSTBACK_ADMIN_KEY="k")
    assert_one_line_error(result, "--server", code=2)
