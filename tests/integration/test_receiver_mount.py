"""The receiver mounted inside a Starlette app, served by uvicorn."""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from dhan_postback.receiver import Receiver
from tests.helpers.servers import UvicornThread
from tests.helpers.updates import update_body


def parent_app(receiver: Receiver, *, with_lifespan: bool) -> Starlette:
    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the trader's own app")

    return Starlette(
        routes=[Route("/", home), Mount("/postback", app=receiver)],
        lifespan=receiver.lifespan if with_lifespan else None,
    )


def test_a_mounted_receiver_accepts_postbacks_below_its_mount_path(tmp_path: Path) -> None:
    receiver = Receiver(db=tmp_path / "r.db")
    with UvicornThread(parent_app(receiver, with_lifespan=True)) as server:
        response = httpx.post(server.url + "/postback/", content=update_body("1"))
        assert response.status_code == 200
        assert httpx.get(server.url + "/postback/healthz").json() == {"status": "ok"}
        assert httpx.get(server.url + "/").text == "the trader's own app"
        assert httpx.post(server.url + "/postback/other", content=b"{}").status_code == 404
    row = receiver.store.order("1")
    assert row is not None and row.status == "PENDING"


def test_a_mounted_receiver_starts_on_its_first_request_without_a_lifespan(
    tmp_path: Path,
) -> None:
    receiver = Receiver(db=tmp_path / "r.db", path_secret="hidden")
    with UvicornThread(parent_app(receiver, with_lifespan=False)) as server:
        assert httpx.post(server.url + "/postback/", content=update_body("1")).status_code == 404
        response = httpx.post(server.url + "/postback/hidden", content=update_body("1"))
        assert response.status_code == 200
    assert receiver.store.order("1") is not None
