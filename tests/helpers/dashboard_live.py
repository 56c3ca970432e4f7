"""A real ``dhan-postback serve`` process with real receivers, for the dashboard's browser tests
and its screenshots: nothing on the pages comes from a stand-in.

Each receiver is a :class:`~tests.helpers.receivers.RecordingReceiver` served by uvicorn on its
own loopback port, so that one can be taken down (its server stopped: connections are refused) and
brought back on the same port while the others keep answering.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.processes import serve_process
from tests.helpers.receivers import RecordingReceiver
from tests.helpers.servers import UvicornThread, free_port

__all__ = ["Hook", "LiveService", "live_service"]


@dataclass
class Hook:
    """One receiver on its own port; ``down()`` stops its server, ``up()`` starts it again."""

    receiver: RecordingReceiver
    port: int = field(default_factory=free_port)
    _server: UvicornThread | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def up(self) -> None:
        if self._server is None:
            self._server = UvicornThread(self.receiver.app, port=self.port).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@dataclass
class LiveService:
    """The service's base URL and what a test does through its API."""

    api: str
    admin_key: str
    http: httpx.Client

    @property
    def dashboard(self) -> str:
        return f"{self.api}/dashboard"

    def create_token(
        self, client_id: str, postback_url: str, partner_id: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"dhanClientId": client_id, "postbackUrl": postback_url}
        if partner_id is not None:
            body["partnerId"] = partner_id
        response = self.http.post(
            "/v2/access-tokens", headers={"admin-key": self.admin_key}, json=body
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def put_partner(self, partner_id: str, postback_url: str) -> None:
        response = self.http.post(
            "/v2/partners",
            headers={"admin-key": self.admin_key},
            json={"partnerId": partner_id, "postbackUrl": postback_url},
        )
        assert response.status_code == 201, response.text

    def ingest(self, access_token: str, bodies: Sequence[bytes]) -> list[str]:
        response = self.http.post(
            "/v2/order-updates",
            content=b"[" + b",".join(bodies) + b"]",
            headers={"access-token": access_token, "content-type": "application/json"},
        )
        assert response.status_code == 202, response.text
        ids: list[str] = response.json()["deliveryIds"]
        return ids

    def deliveries(self, **params: str) -> list[dict[str, Any]]:
        response = self.http.get(
            "/v2/deliveries",
            params={"limit": "1000", **params},
            headers={"admin-key": self.admin_key},
        )
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["deliveries"]
        return found

    def endpoints(self) -> list[dict[str, Any]]:
        response = self.http.get("/v2/endpoints", headers={"admin-key": self.admin_key})
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["endpoints"]
        return found


@contextlib.contextmanager
def live_service(
    directory: Path,
    admin_key: str,
    *,
    retry_schedule: str,
    flags: Sequence[str] = (),
    log_path: Path | None = None,
) -> Iterator[LiveService]:
    """``dhan-postback serve`` on a SQLite file in ``directory`` (loopback receivers allowed),
    until the block ends."""
    port = free_port()
    process = serve_process(
        directory / "service.db",
        port,
        admin_key,
        retry_schedule=retry_schedule,
        flags=flags,
        log_path=log_path,
    )
    api = f"http://127.0.0.1:{port}"
    with process, httpx.Client(base_url=api, timeout=30) as http:
        yield LiveService(api, admin_key, http)
