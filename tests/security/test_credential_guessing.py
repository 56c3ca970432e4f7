"""Vector: admin keys and access tokens guessed at full speed (issue 20, item 4).

300 wrong admin keys took 1.6 s with no back-off. Now each client address may fail 10 times a
minute (the default); after that its wrong credentials get 429 in the broker's shape with
``Retry-After``, one log line says so (never the credential), and a caller that presents a
valid credential is served at once, even from the throttled address.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.dashboard_login import try_login
from tests.helpers.processes import ServerProcess, serve_process
from tests.helpers.servers import free_port
from tests.helpers.service import assert_error
from tests.helpers.updates import new_client_id

ADMIN_KEY = "security-admin-key-0123456789"
GUESSES = 300
BUDGET = 10


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    port, log = free_port(), tmp_path / "serve.log"
    process: ServerProcess = serve_process(tmp_path / "service.db", port, ADMIN_KEY)
    process.log_path = log
    with process, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        yield http, log


def _guesses(http: httpx.Client, header: str) -> tuple[Counter[int], httpx.Response]:
    answers: Counter[int] = Counter()
    last = None
    for guess in range(GUESSES):
        last = http.get("/v2/deliveries", headers={header: f"guess-{guess:04d}-xxxxxxxxxxxx"})
        answers[last.status_code] += 1
    assert last is not None
    return answers, last


def test_wrong_admin_keys_are_throttled_and_the_right_one_still_works(
    service: tuple[httpx.Client, Path],
) -> None:
    http, log = service
    answers, last = _guesses(http, "admin-key")
    right = http.get("/v2/deliveries", headers={"admin-key": ADMIN_KEY})

    assert answers == {401: BUDGET, 429: GUESSES - BUDGET}
    assert_error(last, 429, "too many wrong credentials")
    assert 1 <= int(last.headers["retry-after"]) <= 60
    assert right.status_code == 200
    text = log.read_text()
    assert text.count("credential failures throttled") == 1
    assert "guess-" not in text


def test_wrong_access_tokens_are_throttled_and_a_valid_token_still_works(
    service: tuple[httpx.Client, Path],
) -> None:
    http, _ = service
    created = http.post(
        "/v2/access-tokens",
        headers={"admin-key": ADMIN_KEY},
        json={"dhanClientId": new_client_id()},
    )
    token = created.json()["accessToken"]
    answers, last = _guesses(http, "access-token")
    valid = http.get("/v2/deliveries", headers={"access-token": token})

    assert answers == {401: BUDGET, 429: GUESSES - BUDGET}
    assert_error(last, 429)
    assert "retry-after" in last.headers
    assert valid.status_code == 200


def test_wrong_dashboard_logins_are_throttled_and_the_right_key_still_logs_in(
    service: tuple[httpx.Client, Path],
) -> None:
    http, log = service
    answers: Counter[int] = Counter()
    for guess in range(GUESSES // 10):
        refused = try_login(http, f"guess-{guess:04d}-xxxxxxxxxxxx")
        answers[refused.status_code] += 1
    accepted = try_login(http, ADMIN_KEY)

    assert answers == {401: BUDGET, 429: GUESSES // 10 - BUDGET}
    assert "retry-after" in refused.headers and "Too many wrong attempts" in refused.text
    assert accepted.status_code == 303
    assert "guess-" not in log.read_text()


def test_requests_without_any_credential_are_not_counted_as_guesses(
    service: tuple[httpx.Client, Path],
) -> None:
    http, _ = service
    bare = Counter(http.get("/v2/deliveries").status_code for _ in range(GUESSES))
    answers, _ = _guesses(http, "admin-key")

    assert bare == {401: GUESSES}
    assert answers == {401: BUDGET, 429: GUESSES - BUDGET}
