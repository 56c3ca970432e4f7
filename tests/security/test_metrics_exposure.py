"""Vector: ``/metrics`` tells anyone every client's endpoint hosts and traffic (issue 20, 6).

Open by default only on a loopback bind; on any other bind it needs the metrics token as a
bearer token (``--metrics-token-file``), and without one configured it is refused.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from dhan_postback.service.app import create_app
from dhan_postback.service.node import ServiceNode
from dhan_postback.settings import ServiceSettings
from tests.helpers.processes import serve_process
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.service import assert_error

METRICS_TOKEN = "metrics-token-for-tests-0123456789"


def test_with_a_metrics_token_only_its_bearer_reads_metrics(tmp_path: Path) -> None:
    (tmp_path / "metrics.token").write_text(METRICS_TOKEN + "\n")
    port = free_port()
    process = serve_process(tmp_path / "service.db", port, "security-admin-key-0123456789")
    process.args += ["--metrics-token-file", str(tmp_path / "metrics.token")]
    with process, httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
        anonymous = http.get("/metrics")
        wrong = http.get("/metrics", headers={"authorization": "Bearer not-the-token"})
        bearer = http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
        health = http.get("/healthz")
    assert_error(anonymous, 401, "metrics token")
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert_error(wrong, 401)
    assert bearer.status_code == 200 and "dhan_postback" in bearer.text
    assert health.status_code == 200


def test_a_service_bound_beyond_loopback_refuses_metrics_without_a_token(tmp_path: Path) -> None:
    # The app is told it listens on every interface; the test still serves it on loopback.
    settings = ServiceSettings(
        db=f"sqlite:///{tmp_path / 'service.db'}",
        admin_key="security-admin-key-0123456789",
        host="0.0.0.0",
    )
    with UvicornThread(create_app(ServiceNode(settings))) as server:
        refused = httpx.get(f"{server.url}/metrics")
        health = httpx.get(f"{server.url}/healthz")
    assert_error(refused, 403, "--metrics-token")
    assert health.status_code == 200
