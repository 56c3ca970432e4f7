"""The broker's REST order book client against a local server answering as the broker does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dhan_postback.relay import Backoff, OrderBook, OrderBookUnavailable, TokenRefused
from tests.helpers.broker import INVALID_TOKEN, RATE_LIMITED
from tests.helpers.relay import CLIENT_ID, TOKEN
from tests.helpers.servers import UvicornThread

ROWS = [{"orderId": "1", "orderStatus": "PENDING"}]


class Answers:
    """Answers ``GET /v2/orders`` with the given responses in turn, then the rows."""

    def __init__(self, *answers: Response) -> None:
        self.answers = list(answers)
        self.headers: list[dict[str, str]] = []
        self.app = Starlette(routes=[Route("/v2/orders", self._orders)])

    async def _orders(self, request: Request) -> Response:
        self.headers.append(dict(request.headers))
        return self.answers.pop(0) if self.answers else JSONResponse(ROWS)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[UvicornThread] = []

    def start(answers: Answers) -> OrderBook:
        server = UvicornThread(answers.app).start()
        servers.append(server)
        return OrderBook(f"{server.url}/v2", CLIENT_ID, TOKEN, backoff=Backoff(base=0.01, cap=0.02))

    yield start
    for server in servers:
        server.stop()


async def test_the_rows_are_fetched_with_the_accounts_token_and_client_id(serve: Any) -> None:
    answers = Answers()
    book = serve(answers)
    try:
        assert await book.orders() == ROWS
    finally:
        await book.close()
    assert answers.headers[0]["access-token"] == TOKEN
    assert answers.headers[0]["client-id"] == CLIENT_ID


@pytest.mark.parametrize(
    "answer",
    [
        JSONResponse(INVALID_TOKEN, status_code=401),
        JSONResponse(INVALID_TOKEN, status_code=400),
        Response("Unauthorized", status_code=401),
    ],
    ids=["401-DH-901", "400-DH-901", "401-no-body"],
)
async def test_a_refused_token_is_token_refused(serve: Any, answer: Response) -> None:
    book = serve(Answers(answer))
    try:
        with pytest.raises(TokenRefused) as raised:
            await book.orders()
    finally:
        await book.close()
    assert TOKEN not in raised.value.message


async def test_rate_limits_and_server_errors_are_retried(serve: Any) -> None:
    answers = Answers(
        JSONResponse(RATE_LIMITED, status_code=429),
        JSONResponse(RATE_LIMITED, status_code=400),
        Response("bad gateway", status_code=502),
    )
    book = serve(answers)
    try:
        assert await book.orders() == ROWS
    finally:
        await book.close()
    assert book.requests == 4


async def test_another_broker_error_is_reported_not_retried(serve: Any) -> None:
    no_access = {"errorType": "Access_Error", "errorCode": "DH-902", "errorMessage": "no access"}
    book = serve(Answers(JSONResponse(no_access, status_code=403)))
    try:
        with pytest.raises(OrderBookUnavailable) as raised:
            await book.orders()
    finally:
        await book.close()
    assert "DH-902 no access" in raised.value.message and book.requests == 1
