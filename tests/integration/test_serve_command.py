"""``dhan-postback serve`` and ``dhan-postback tokens`` as real processes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dhan_postback.settings import ServiceSettings
from tests.helpers.processes import ServerProcess, clean_env, run_cli
from tests.helpers.servers import free_port
from tests.helpers.updates import new_client_id, update

ADMIN_KEY = "cli-admin-key-0123456789"


def _serve(db: Path, port: int, log: Path) -> ServerProcess:
    process = ServerProcess(
        ["serve", "--port", str(port), "--db", f"sqlite:///{db}", "--allow-loopback"],
        env=clean_env(DHAN_POSTBACK_ADMIN_KEY=ADMIN_KEY),
        health_url=f"http://127.0.0.1:{port}/healthz",
        log_path=log,
    )
    process.env = clean_env(DHAN_POSTBACK_ADMIN_KEY=ADMIN_KEY)  # ServerProcess adds os.environ back
    return process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    directory = tmp_path_factory.mktemp("serve")
    port = free_port()
    with _serve(directory / "service.db", port, directory / "serve.log"):
        yield f"http://127.0.0.1:{port}", directory / "serve.log"


def test_help_lists_every_setting_with_its_environment_variable() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # undo click's line wrapping
    for name in ServiceSettings.model_fields:
        assert "--" + name.replace("_", "-") in text
        assert "DHAN_POSTBACK_" + name.upper() in text


def test_serve_refuses_to_start_without_an_admin_key() -> None:
    result = run_cli("serve", "--port", str(free_port()))
    assert result.returncode == 2
    assert "admin key is required" in result.stderr
    assert "DHAN_POSTBACK_ADMIN_KEY" in result.stderr


def test_a_bad_setting_is_reported_by_its_flag() -> None:
    result = run_cli("serve", "--timeout", "soon", env=clean_env(DHAN_POSTBACK_ADMIN_KEY=ADMIN_KEY))
    assert result.returncode == 2
    assert "--timeout" in result.stderr


def test_a_post_timeout_longer_than_the_lease_is_a_valid_setting(tmp_path: Path) -> None:
    """The heartbeat renews the lease of a POST under way, so a slow receiver may have an
    hour under the default lease of 10 s."""
    port = free_port()
    process = _serve(tmp_path / "service.db", port, tmp_path / "serve.log")
    process.args += ["--timeout", "1h"]
    with process:
        health = httpx.get(f"http://127.0.0.1:{port}/healthz")
    assert health.status_code == 200


def test_the_sandbox_switch_is_announced_loudly(server: tuple[str, Path]) -> None:
    _, log = server
    assert "allow-loopback is on" in log.read_text()


def test_tokens_create_prints_the_token_and_secret_once_and_they_work(
    server: tuple[str, Path],
) -> None:
    url, _ = server
    client_id = new_client_id()
    env = clean_env(DHAN_POSTBACK_ADMIN_KEY=ADMIN_KEY)
    args = ["tokens", "create", "--client-id", client_id, "--server", url]
    result = run_cli(*args, "--url", "http://127.0.0.1:8999/hook", env=env)
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    token = fields["access token"].strip()
    assert fields["signing secret"].strip().startswith("whsec_")
    assert "not shown again" in result.stderr
    ingest = httpx.post(
        url + "/v2/order-updates", json=update(client_id), headers={"access-token": token}
    )
    assert ingest.status_code == 202

    revoked = run_cli("tokens", "revoke", token, "--server", url, env=env)
    assert revoked.returncode == 0, revoked.stderr
    again = httpx.post(
        url + "/v2/order-updates", json=update(client_id), headers={"access-token": token}
    )
    assert again.status_code == 401


def test_tokens_create_reports_the_services_refusal(server: tuple[str, Path]) -> None:
    url, _ = server
    result = run_cli(
        "tokens", "create", "--client-id", "1", "--url", "http://10.0.0.1/", "--server", url,
        env=clean_env(DHAN_POSTBACK_ADMIN_KEY=ADMIN_KEY),
    )  # fmt: skip
    assert result.returncode == 1
    assert "422" in result.stderr and "private" in result.stderr


async def _ingest_until_killed(
    url: str, token: str, client_id: str, process: subprocess.Popen[bytes], kill_after: int
) -> set[str]:
    """Keep 16 ingest requests in flight; SIGKILL the server once ``kill_after`` are acked.

    Returns every delivery id whose 202 arrived, including those after the kill signal.
    """
    acknowledged: set[str] = set()
    killed = asyncio.Event()
    counter = iter(range(10**9))

    async def worker(http: httpx.AsyncClient) -> None:
        while not killed.is_set():
            batch = [update(client_id, f"{client_id}-{next(counter)}") for _ in range(5)]
            try:
                response = await http.post("/v2/order-updates", json=batch)
            except httpx.TransportError:
                return
            if response.status_code == 202:
                acknowledged.update(response.json()["deliveryIds"])
            if len(acknowledged) >= kill_after and not killed.is_set():
                process.send_signal(signal.SIGKILL)
                killed.set()

    headers = {"access-token": token}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        await asyncio.gather(*(worker(http) for _ in range(16)))
    return acknowledged


def _all_delivery_ids(url: str) -> set[str]:
    found: set[str] = set()
    params: dict[str, Any] = {"limit": 1000}
    while True:
        page = httpx.get(url + "/v2/deliveries", params=params, headers={"admin-key": ADMIN_KEY})
        assert page.status_code == 200, page.text
        found.update(d["deliveryId"] for d in page.json()["deliveries"])
        if page.json()["nextCursor"] is None:
            return found
        params["cursor"] = page.json()["nextCursor"]


def test_every_acknowledged_update_survives_kill_9(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db, log = tmp_path / "crash.db", tmp_path / "serve.log"
    first = _serve(db, port, log).start()
    try:
        client_id = new_client_id()
        created = httpx.post(
            url + "/v2/access-tokens",
            headers={"admin-key": ADMIN_KEY},
            json={"dhanClientId": client_id, "postbackUrl": "http://127.0.0.1:8999/hook"},
        ).json()
        assert first.process is not None
        acknowledged = asyncio.run(
            _ingest_until_killed(url, created["accessToken"], client_id, first.process, 300)
        )
    finally:
        first.kill()
    assert first.process is not None and first.process.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 300

    with _serve(db, port, log):
        stored = _all_delivery_ids(url)
    assert acknowledged <= stored
