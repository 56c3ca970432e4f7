"""A real postback service on a loopback port, and the few calls every API test makes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dhan_postback.service.app import create_app
from dhan_postback.service.node import ServiceNode
from dhan_postback.service.store import Store
from dhan_postback.settings import ServiceSettings

from .servers import UvicornThread
from .updates import new_client_id

__all__ = ["ADMIN_KEY", "HOOK_URL", "Service", "assert_error", "running_service"]

ADMIN_KEY = "test-admin-key-0123456789"
HOOK_URL = "http://127.0.0.1:8999/postback"
"""A loopback URL nothing listens on: deliveries to it wait in the outbox (no dispatcher)."""


@dataclass
class Service:
    url: str
    db: str
    http: httpx.Client
    commits: list[None] = field(default_factory=list)

    @property
    def admin(self) -> dict[str, str]:
        return {"admin-key": ADMIN_KEY}

    def create_token(
        self,
        client_id: str | None = None,
        *,
        postback_url: str | None = HOOK_URL,
        partner_id: str | None = None,
    ) -> dict[str, Any]:
        """A new token (the 201 body) for a new client unless one is given."""
        body: dict[str, Any] = {"dhanClientId": client_id or new_client_id()}
        if postback_url is not None:
            body["postbackUrl"] = postback_url
        if partner_id is not None:
            body["partnerId"] = partner_id
        response = self.http.post("/v2/access-tokens", headers=self.admin, json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def admin_json(self, method: str, path: str, **params: str) -> dict[str, Any]:
        """An admin call that must answer 200: its JSON body."""
        response = self.http.request(method, path, headers=self.admin, params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def ingest(self, token: str, body: Any) -> httpx.Response:
        return self.http.post("/v2/order-updates", headers={"access-token": token}, json=body)

    def delivery_ids(self, token: str, body: Any) -> list[str]:
        response = self.ingest(token, body)
        assert response.status_code == 202, response.text
        ids: list[str] = response.json()["deliveryIds"]
        return ids


def assert_error(response: httpx.Response, status: int, *needles: str) -> dict[str, str]:
    """The response is ``status`` in the broker's error shape, its message naming each needle."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, str] = response.json()
    assert set(body) == {"errorType", "errorCode", "errorMessage"}
    assert body["errorCode"].startswith("DH-9")
    for needle in needles:
        assert needle in body["errorMessage"], body["errorMessage"]
    return body


@contextlib.contextmanager
def running_service(
    directory: Path, *, store: Store | None = None, dispatch: bool = False, **settings: Any
) -> Iterator[Service]:
    """The service app on a SQLite file in ``directory``, served by uvicorn in a thread;
    with ``dispatch``, its node also sends the outbox."""
    db = f"sqlite:///{directory / 'service.db'}"
    options: dict[str, Any] = {"db": db, "admin_key": ADMIN_KEY, "allow_loopback": True}
    options.update(settings)
    commits: list[None] = []
    node = ServiceNode(ServiceSettings(**options), store=store, dispatch=dispatch)
    node.on_commit(lambda: commits.append(None))
    app = create_app(node)
    with UvicornThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield Service(server.url, db, http, commits)
