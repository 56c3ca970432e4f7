"""A local stand-in for the broker's order-update websocket, and a recorder of the service's
ingest API, for the relay's tests. Both listen on 127.0.0.1 only; nothing here contacts the
real broker.

* :func:`to_order_alert` is the inverse of the relay's mapping: it writes a postback payload
  the way the websocket carries it (PascalCase by default, camelCase or Title-case statuses on
  request). :func:`expected_postback` says what the relay can give back: the websocket has no
  source for a few postback fields.
* :class:`DhanWsServer` speaks the documented protocol: it checks the login message, then
  streams the frames it is fed. It can drop a connection abruptly (after making sure the frames
  sent so far have reached the client), re-send the last frames after a reconnect, stay silent,
  stop answering pings, turn connections away (HTTP 503) or refuse logins (close code 4001).
* :class:`FakeBroker` is one account at the broker: the websocket above and the REST order
  book (``GET /v2/orders``), kept consistent: every change lands in the book when its frame
  is fed, or in the book alone while the relay is away (the frame is lost, as at the
  broker). :func:`to_book_row` writes an update as an order-book row.
* :class:`IngestRecorder` implements just ``POST /v2/order-updates`` of the service, strictly,
  and records what it accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from dhan_postback.errors import AuthenticationError, InvalidUpdate, PayloadError, error_body
from dhan_postback.lifecycle import order_key
from dhan_postback.payload import (
    ExchangeSegment,
    LegName,
    OptionType,
    OrderStatus,
    OrderType,
    OrderUpdate,
    ProductType,
    TransactionType,
    validate_strict,
)

from .servers import UvicornThread

__all__ = [
    "DhanWsServer",
    "FakeBroker",
    "IngestRecorder",
    "alert_frame",
    "docs_style_frame",
    "expected_postback",
    "individual_login",
    "partner_login",
    "to_book_row",
    "to_order_alert",
]


# --------------------------------------------------------------------------------------------
# Postback -> order_alert (the inverse of dhan_postback.relay.mapping).

_SEGMENT_CODES = {
    ExchangeSegment.NSE_EQ: ("NSE", "E"),
    ExchangeSegment.NSE_FNO: ("NSE", "D"),
    ExchangeSegment.NSE_CURRENCY: ("NSE", "C"),
    ExchangeSegment.BSE_EQ: ("BSE", "E"),
    ExchangeSegment.BSE_FNO: ("BSE", "D"),
    ExchangeSegment.BSE_CURRENCY: ("BSE", "C"),
    ExchangeSegment.MCX_COMM: ("MCX", "M"),
}
_PRODUCT_CODES = {
    ProductType.CNC: "C",
    ProductType.INTRADAY: "I",
    ProductType.MARGIN: "M",
    ProductType.MTF: "F",
    ProductType.CO: "V",
    ProductType.BO: "B",
}
_ORDER_TYPE_CODES = {
    OrderType.LIMIT: "LMT",
    OrderType.MARKET: "MKT",
    OrderType.STOP_LOSS: "SL",
    OrderType.STOP_LOSS_MARKET: "SLM",
}
_LEG_NUMBERS = {LegName.ENTRY_LEG: 1, LegName.STOP_LOSS_LEG: 2, LegName.TARGET_LEG: 3}
_OPTION_CODES = {OptionType.CALL: "CE", OptionType.PUT: "PE"}
_CAMEL_TWINS = {
    "Series": "series",
    "GoodTillDaysDate": "goodTillDaysDate",
    "RefLtp": "refLtp",
    "TickSize": "tickSize",
    "AlgoId": "algoId",
    "Multiplier": "multiplier",
}


def to_order_alert(
    update: OrderUpdate, *, camel: bool = False, title_status: bool = False
) -> dict[str, Any]:
    """The ``Data`` object of the ``order_alert`` the broker would send for ``update``."""
    exchange, segment = _SEGMENT_CODES[update.exchange_segment]
    is_leg_product = update.product_type in (ProductType.BO, ProductType.CO)
    super_order = update.leg_name is not None and not is_leg_product
    status = update.order_status.value
    derivative = update.drv_expiry_date is not None
    data: dict[str, Any] = {
        "Exchange": exchange,
        "Segment": segment,
        "Source": "P",
        "SecurityId": update.security_id,
        "ClientId": update.dhan_client_id,
        "ExchOrderNo": f"14{update.order_id[-12:]:0>14}",
        "OrderNo": update.order_id,
        "Product": _PRODUCT_CODES[update.product_type],
        "TxnType": "B" if update.transaction_type is TransactionType.BUY else "S",
        "OrderType": _ORDER_TYPE_CODES[update.order_type],
        "Validity": update.validity.value,
        "DiscQuantity": update.disclosed_quantity,
        "DiscQtyRem": update.disclosed_quantity,
        "RemainingQuantity": update.quantity - update.filled_qty,
        "Quantity": update.quantity,
        "TradedQty": update.filled_qty,
        "Price": update.price,
        "TriggerPrice": update.trigger_price,
        "TradedPrice": update.price if update.filled_qty else 0,
        "AvgTradedPrice": update.price if update.filled_qty else 0,
        "AlgoOrdNo": update.order_id if update.leg_name not in (None, LegName.ENTRY_LEG) else None,
        "OffMktFlag": "1" if update.after_market_order else "0",
        "OrderDateTime": update.create_time,
        "ExchOrderTime": update.exchange_time,
        "LastUpdatedTime": update.update_time,
        "Remarks": "Super Order" if super_order else "NR",
        "MktType": "NL",
        "ReasonDescription": (
            (update.oms_error_description or "") if status == "REJECTED" else "CONFIRMED"
        ),
        "LegNo": _LEG_NUMBERS[update.leg_name] if update.leg_name else 1,
        "Instrument": ("OPTIDX" if update.drv_option_type else "FUTIDX")
        if derivative
        else "EQUITY",
        "Symbol": update.trading_symbol,
        "ProductName": update.product_type.value,
        "Status": status.title() if title_status else status,
        "LotSize": 50 if derivative else 1,
        "StrikePrice": update.drv_strike_price if update.drv_option_type else None,
        "ExpiryDate": update.drv_expiry_date or "0001-01-01 00:00:00",
        "OptType": _OPTION_CODES[update.drv_option_type] if update.drv_option_type else "XX",
        "DisplayName": update.trading_symbol or "Vodafone Idea",
        "Isin": "INE669E01016",
        "Series": "EQ",
        "GoodTillDaysDate": update.create_time[:10],
        "RefLtp": 13.21,
        "TickSize": 0.05,
        "AlgoId": update.algo_id or "0",
        "Multiplier": 1,
        "CorrelationId": update.correlation_id or "",
    }
    if camel:
        return {key[0].lower() + key[1:]: value for key, value in data.items()}
    for pascal, twin in _CAMEL_TWINS.items():
        data[twin] = data[pascal]
    return data


def expected_postback(update: OrderUpdate) -> OrderUpdate:
    """What the relay can reproduce of ``update``: the websocket carries no BO values, no
    ``omsErrorCode``, and a reason text only on rejections."""
    rejected = update.order_status is OrderStatus.REJECTED
    return update.replace(
        bo_profit_value=0.0,
        bo_stop_loss_value=0.0,
        oms_error_code=None,
        oms_error_description=update.oms_error_description if rejected else None,
        correlation_id=update.correlation_id or None,
        algo_id=None if update.algo_id in (None, "", "0") else update.algo_id,
    )


def alert_frame(update: OrderUpdate, *, camel: bool = False, title_status: bool = False) -> str:
    """One ``order_alert`` frame as valid JSON."""
    data = to_order_alert(update, camel=camel, title_status=title_status)
    return json.dumps({"Data": data, "Type": "order_alert"})


def docs_style_frame(update: OrderUpdate) -> str:
    """An ``order_alert`` broken the way the documentation's example is: empty values for the
    null ``AlgoOrdNo`` and ``StrikePrice``, a missing comma, a trailing comma."""
    text = json.dumps({"Data": to_order_alert(update), "Type": "order_alert"})
    text = text.replace('"AlgoOrdNo": null', '"AlgoOrdNo": ')
    text = text.replace('"StrikePrice": null', '"StrikePrice": ')
    text = text.replace(', "Remarks"', ' "Remarks"')
    return text.replace('"multiplier": 1}', '"multiplier": 1,}')


# --------------------------------------------------------------------------------------------
# The websocket.


def individual_login(client_id: str, token: str) -> dict[str, Any]:
    return {"LoginReq": {"MsgCode": 42, "ClientId": client_id, "Token": token}, "UserType": "SELF"}


def partner_login(partner_id: str, secret: str) -> dict[str, Any]:
    return {
        "LoginReq": {"MsgCode": 42, "ClientId": partner_id},
        "UserType": "PARTNER",
        "Secret": secret,
    }


class DhanWsServer:
    """The broker's order-update websocket on ``ws://127.0.0.1:<port>``.

    Frames given to :meth:`feed` are sent in order to whichever client is logged in; the
    cursor survives reconnects, so nothing fed is skipped. ``drop_after`` lists feed positions
    after which the connection is dropped abruptly (TCP reset), once each; the next
    connection first re-sends the ``resend`` frames before the cursor (duplicates).
    """

    def __init__(
        self,
        login: dict[str, Any],
        *,
        resend: int = 3,
        drop_after: Iterable[int] = (),
        silent_connections: int = 0,
        frozen_connections: int = 0,
    ) -> None:
        self.expected_login = login
        self.resend = resend
        self.drop_after = set(drop_after)
        self.silent_connections = silent_connections
        self.frozen_connections = frozen_connections
        self.frames: list[str] = []
        self.cursor = 0
        self.connections = 0
        self.logins: list[dict[str, Any]] = []
        self.bad_logins: list[str] = []
        self.drops = 0
        self.close_codes: list[int | None] = []
        self.away = False
        self.turned_away = 0
        self.refusing_logins = False
        self._current: ServerConnection | None = None
        self._dropped = False
        self._more = asyncio.Event()
        self._closing = asyncio.Event()
        self._server: Server | None = None
        self.url = ""

    def feed(self, frames: Iterable[str]) -> None:
        self.frames.extend(frames)
        self._more.set()

    async def __aenter__(self) -> DhanWsServer:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            ping_interval=None,
            close_timeout=1,
            process_request=self._turn_away,
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._closing.set()
        self._server.close()
        await self._server.wait_closed()

    def _turn_away(self, ws: ServerConnection, request: WsRequest) -> WsResponse | None:
        """While ``away``, the handshake is answered 503: the relay cannot get back in."""
        if self.away:
            self.turned_away += 1
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "away for a while\n")
        return None

    def drop(self) -> None:
        """Cut the current connection abruptly (TCP reset), as a network failure would."""
        if self._current is not None:
            self._current.transport.abort()

    async def refuse_logins(self, reason: str = "token expired") -> None:
        """The token expired: close the current connection and refuse every login from now."""
        self.refusing_logins = True
        if self._current is not None:
            await self._current.close(4001, reason)

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        try:
            raw = await asyncio.wait_for(ws.recv(), 5)
        except Exception:
            return
        try:
            login = json.loads(raw)
        except ValueError:
            login = None
        if login != self.expected_login or self.refusing_logins:
            self.bad_logins.append(str(raw))
            await ws.close(4001, "login failed")
            return
        self.logins.append(login)
        if self.silent_connections > 0:
            self.silent_connections -= 1
            await ws.wait_closed()
            return
        if self.frozen_connections > 0:  # stops reading for a while: pings go unanswered
            self.frozen_connections -= 1
            ws.transport.pause_reading()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), 10.0)
            ws.transport.abort()
            return
        position = max(0, self.cursor - self.resend) if self._dropped else self.cursor
        self._dropped = False
        self._current = ws
        try:
            with contextlib.suppress(Exception):
                await self._stream(ws, position)
        finally:
            self._current = None
            received = ws.protocol.close_rcvd
            self.close_codes.append(received.code if received is not None else None)

    async def _stream(self, ws: ServerConnection, position: int) -> None:
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            while True:
                while position >= len(self.frames):
                    self._more.clear()
                    more = asyncio.ensure_future(self._more.wait())
                    await asyncio.wait({more, closed}, return_when=asyncio.FIRST_COMPLETED)
                    more.cancel()
                    if closed.done():
                        return
                await ws.send(self.frames[position])
                position += 1
                self.cursor = max(self.cursor, position)
                if position - 1 in self.drop_after:
                    self.drop_after.discard(position - 1)
                    await asyncio.wait_for(await ws.ping(), 10)  # the client has every frame
                    self._dropped = True
                    self.drops += 1
                    ws.transport.abort()
                    return
        finally:
            closed.cancel()


# --------------------------------------------------------------------------------------------
# The service's ingest API, just enough of it.


class IngestRecorder:
    """``POST /v2/order-updates`` as the service answers it, recording what it accepts.

    ``unavailable`` makes the next n requests fail with 503; ``refuse_order_ids`` makes any
    batch holding one of those orders fail with 400, as a strict ingest would.
    """

    def __init__(
        self,
        token: str = "service-token-for-tests",
        *,
        unavailable: int = 0,
        refuse_order_ids: Iterable[str] = (),
    ) -> None:
        self.token = token
        self.unavailable = unavailable
        self.refuse_order_ids = set(refuse_order_ids)
        self.received: list[OrderUpdate] = []
        self.requests = 0
        self.tokens_seen: list[str] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/v2/order-updates", self._ingest, methods=["POST"])])

    async def _ingest(self, request: Request) -> JSONResponse:
        with self._lock:
            self.requests += 1
            if self.unavailable > 0:
                self.unavailable -= 1
                return JSONResponse({"errorMessage": "try later"}, status_code=503)
        token = request.headers.get("access-token", "")
        self.tokens_seen.append(token)
        if token != self.token:
            error = AuthenticationError("invalid access token")
            return JSONResponse(error_body(error), status_code=error.http_status)
        try:
            body = json.loads(await request.body())
            items = body if isinstance(body, list) else [body]
            updates = [validate_strict(item) for item in items]
            for index, update in enumerate(updates):
                if update.order_id in self.refuse_order_ids:
                    raise InvalidUpdate("this order is refused by the test", index=index)
        except ValueError:
            error: PayloadError = PayloadError("body is not JSON")
            return JSONResponse(error_body(error), status_code=400)
        except InvalidUpdate as exc:
            return JSONResponse(error_body(exc), status_code=exc.http_status)
        with self._lock:
            self.received.extend(updates)
            ids = [f"msg_{next(self._ids)}" for _ in updates]
        return JSONResponse({"deliveryIds": ids}, status_code=202)


# --------------------------------------------------------------------------------------------
# The broker's REST order book, and the whole broker.


def to_book_row(update: OrderUpdate) -> dict[str, Any]:
    """The row the broker's order book shows for ``update`` (its names and extra fields; a
    partly filled order is ``PART_TRADED``, as the book says)."""
    wire = update.to_dict()
    filled = wire.pop("filled_qty")
    status = wire["orderStatus"]
    if status == OrderStatus.PENDING and filled > 0:
        status = "PART_TRADED"
    return {
        "dhanClientId": wire["dhanClientId"],
        "orderId": wire["orderId"],
        "exchangeOrderId": f"14{update.order_id[-12:]:0>14}",
        "correlationId": wire["correlationId"],
        "orderStatus": status,
        **{key: value for key, value in wire.items() if key not in _BOOK_HEAD},
        "remainingQuantity": update.quantity - filled,
        "averageTradedPrice": update.price if filled else 0.0,
        "filledQty": filled,
    }


_BOOK_HEAD = frozenset({"dhanClientId", "orderId", "correlationId", "orderStatus"})

INVALID_TOKEN = {
    "errorType": "Invalid_Authentication",
    "errorCode": "DH-901",
    "errorMessage": "Client ID or user generated access token is invalid or expired.",
}
RATE_LIMITED = {
    "errorType": "Rate_Limit",
    "errorCode": "DH-904",
    "errorMessage": "Too many requests on server from single user breaching rate limits.",
}

OrderKey = tuple[str, str | None]


class FakeBroker:
    """One account at the broker: the order-update websocket and the REST order book.

    :meth:`change` applies updates as the broker's OMS would: each becomes its order's row
    in the book and, unless ``stream=False`` (the relay is away and the frame is lost), a
    frame on the websocket, in that order, so the book never lags what was streamed.
    ``history`` keeps every state each order went through, to check the relay invents none.
    ``expire_token()`` makes the book answer 401 ``DH-901`` and the websocket refuse logins;
    ``rate_limit(n)`` answers the next n book requests 429 ``DH-904`` with ``Retry-After``.
    """

    def __init__(self, client_id: str, token: str, *, retry_after: float = 1.0) -> None:
        self.client_id = client_id
        self.token = token
        self.retry_after = retry_after
        self.ws = DhanWsServer(individual_login(client_id, token), resend=0)
        self.book: dict[OrderKey, OrderUpdate] = {}
        self.history: dict[OrderKey, list[OrderUpdate]] = {}
        self.book_requests: list[float] = []  # monotonic times
        self.token_expired = False
        self._rate_limited = 0
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/v2/orders", self._orders, methods=["GET"])])
        self._rest = UvicornThread(app)

    @property
    def ws_url(self) -> str:
        return self.ws.url

    @property
    def api_url(self) -> str:
        return f"{self._rest.url}/v2"

    async def __aenter__(self) -> FakeBroker:
        self._rest.start()
        await self.ws.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.ws.__aexit__(*exc_info)
        self._rest.stop()

    def change(self, updates: Iterable[OrderUpdate], *, stream: bool = True) -> None:
        for update in updates:
            key = order_key(update)
            with self._lock:
                self.book[key] = update
                self.history.setdefault(key, []).append(update)
            if stream:
                self.ws.feed([alert_frame(update)])

    def send_frame_only(self, update: OrderUpdate) -> None:
        """A frame the book does not change for: a late (or repeated) one."""
        self.ws.feed([alert_frame(update)])

    async def expire_token(self, *, websocket: bool = True) -> None:
        """From now on the book answers 401 ``DH-901``; and, unless ``websocket=False``, the
        websocket closes the connection and refuses every login."""
        with self._lock:
            self.token_expired = True
        if websocket:
            await self.ws.refuse_logins()

    def rate_limit(self, requests: int) -> None:
        with self._lock:
            self._rate_limited = requests

    async def _orders(self, request: Request) -> JSONResponse:
        with self._lock:
            self.book_requests.append(time.monotonic())
            authentic = (
                request.headers.get("access-token") == self.token
                and request.headers.get("client-id") == self.client_id
                and not self.token_expired
            )
            if not authentic:
                return JSONResponse(INVALID_TOKEN, status_code=401)
            if self._rate_limited > 0:
                self._rate_limited -= 1
                headers = {"Retry-After": f"{self.retry_after:g}"}
                return JSONResponse(RATE_LIMITED, status_code=429, headers=headers)
            rows = [to_book_row(update) for update in self.book.values()]
        return JSONResponse(rows)
