"""The postback service's HTTP API (Starlette): registry, ingest, delivery log, health, metrics.

Routes are thin: they authenticate, read the request, and hand the work to the registry
(:mod:`.registry`), the ingest rules (:mod:`.ingest`) and the store. The order system hands
updates to ``POST /v2/order-updates`` and gets its 202 only once the outbox has committed
them; the node (:mod:`.node`) wakes its dispatcher after each commit.

Every error is the broker's shape ``{"errorType", "errorCode", "errorMessage"}`` with a 4xx
(or 503 when the store is down); an unexpected exception is a 500 in the same shape, logged
without the request path, headers or body.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from ..errors import (
    AuthenticationError,
    Conflict,
    DhanPostbackError,
    NotFound,
    PayloadError,
)
from . import shapes
from .dashboard import create_dashboard
from .http import (
    ErrorShield,
    error_response,
    from_iso,
    handle_error,
    handle_http_exception,
    json_response,
    read_body,
    require_json,
)
from .ingest_endpoint import INGEST_PATH, IngestEndpoint
from .models import PartnerRequest, ReplayRequest, TokenRequest, parse_body
from .node import ServiceNode
from .openapi import openapi_document
from .operations import operations_routes
from .principal import Principal
from .registry import Registry
from .replaying import capped_page
from .store import (
    Delivery,
    DeliveryQuery,
    DeliveryStatus,
    EndpointRecord,
    Store,
    Target,
)
from .throttle import TooManyFailures

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "create_app"]

log = structlog.get_logger(__name__)

DEFAULT_PAGE_SIZE = shapes.DEFAULT_PAGE_SIZE
MAX_PAGE_SIZE = shapes.MAX_PAGE_SIZE
_ADMIN_BODY_LIMIT = 64 * 1024
_LIST_PARAMETERS = frozenset(
    field.encode_name for field in msgspec.structs.fields(shapes.DeliveryListParameters)
)
_ENDPOINT_PARAMETERS = frozenset({"dhanClientId", "partnerId", "includeSecret"})
_TOKEN_PARAMETERS = frozenset({"dhanClientId"})


class _Service:
    """The routes' view of the node: its parts, and who is asking."""

    def __init__(self, node: ServiceNode) -> None:
        self.node = node
        self.settings = node.settings
        self.metrics = node.metrics
        self.admin_key = node.admin_key

    @property
    def store(self) -> Store:
        return self.node.store

    @property
    def registry(self) -> Registry:
        return self.node.registry

    def committed(self) -> None:
        """Tell the dispatcher there is new work; its failure must not fail the request."""
        self.node.wake()

    async def viewer(self, request: Request) -> Principal:
        return await self.node.authenticate(
            admin_key=request.headers.get("admin-key"),
            access_token=request.headers.get("access-token"),
        )

    async def admin_body(self, request: Request) -> bytes:
        self.admin_key.check(request.headers.get("admin-key"))
        require_json(request)
        return await read_body(request, min(_ADMIN_BODY_LIMIT, self.settings.max_body_bytes))

    # Registry -------------------------------------------------------------------------------
    async def create_token(self, request: Request) -> Response:
        body = parse_body(TokenRequest, await self.admin_body(request))
        issued = await self.registry.issue_token(
            body.dhanClientId, postback_url=body.postbackUrl, partner_id=body.partnerId
        )
        return json_response(shapes.TokenCreated.of(issued), 201)

    async def list_tokens(self, request: Request) -> Response:
        self.admin_key.check(request.headers.get("admin-key"))
        params = _known_parameters(request, _TOKEN_PARAMETERS)
        tokens = await self.store.list_tokens(params.get("dhanClientId"))
        now = time.time()
        shown = [shapes.TokenInfo.of(token, now=now) for token in tokens]
        return json_response(shapes.TokenList(access_tokens=shown))

    async def revoke_token(self, request: Request) -> Response:
        self.admin_key.check(request.headers.get("admin-key"))
        record = await self.registry.revoke_token(request.path_params["token"])
        return json_response(shapes.TokenRevoked.of(record))

    async def create_partner(self, request: Request) -> Response:
        body = parse_body(PartnerRequest, await self.admin_body(request))
        partner, endpoint = await self.registry.put_partner(body.partnerId, body.postbackUrl)
        return json_response(shapes.PartnerCreated.of(partner, endpoint), 201)

    # Endpoints ------------------------------------------------------------------------------
    async def _endpoint_shown(
        self, endpoint: EndpointRecord, *, now: float, include_secret: bool
    ) -> shapes.Endpoint:
        activity = await self.store.endpoint_activity(endpoint)
        breaker = self.node.breaker_state(endpoint.url)
        return shapes.Endpoint.of(
            endpoint, activity, breaker=breaker, now=now, include_secret=include_secret
        )

    async def list_endpoints(self, request: Request) -> Response:
        self.admin_key.check(request.headers.get("admin-key"))
        params = _known_parameters(request, _ENDPOINT_PARAMETERS)
        include_secret = _boolean(params.get("includeSecret"), "includeSecret")
        client, partner = params.get("dhanClientId"), params.get("partnerId")
        now = time.time()
        shown = [
            await self._endpoint_shown(endpoint, now=now, include_secret=include_secret)
            for endpoint in await self.store.list_endpoints()
            if (client is None or (endpoint.kind, endpoint.owner_id) == ("client", client))
            and (partner is None or (endpoint.kind, endpoint.owner_id) == ("partner", partner))
        ]
        return json_response(shapes.EndpointList(endpoints=shown))

    async def known_endpoint(self, request: Request) -> EndpointRecord:
        endpoint = await self.store.get_endpoint(request.path_params["endpoint_id"])
        if endpoint is None:
            raise NotFound("no such endpoint")
        return endpoint

    async def get_endpoint(self, request: Request) -> Response:
        self.admin_key.check(request.headers.get("admin-key"))
        params = _known_parameters(request, frozenset({"includeSecret"}))
        include_secret = _boolean(params.get("includeSecret"), "includeSecret")
        endpoint = await self.known_endpoint(request)
        shown = await self._endpoint_shown(endpoint, now=time.time(), include_secret=include_secret)
        return json_response(shown)

    async def rotate_secret(self, request: Request) -> Response:
        self.admin_key.check(request.headers.get("admin-key"))
        rotated = await self.registry.rotate_secret(request.path_params["endpoint_id"])
        now = time.time()
        log.info("signing secret rotated", endpoint_id=rotated.id)
        return json_response(shapes.SecretRotated.of(rotated, now=now))

    async def pause_endpoint(self, request: Request) -> Response:
        self.admin_key.check(request.headers.get("admin-key"))
        paused = await self.node.pause_endpoint(request.path_params["endpoint_id"])
        return json_response(
            await self._endpoint_shown(paused, now=time.time(), include_secret=False)
        )

    async def resume_endpoint(self, request: Request) -> Response:
        self.admin_key.check(request.headers.get("admin-key"))
        resumed = await self.node.resume_endpoint(request.path_params["endpoint_id"])
        return json_response(
            await self._endpoint_shown(resumed, now=time.time(), include_secret=False)
        )

    # Delivery log ---------------------------------------------------------------------------
    async def list_deliveries(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        query = viewer.restrict(_list_query(request))
        found = await self.store.list_deliveries(query)
        next_cursor = str(found[-1].seq) if len(found) == query.limit else None
        shown = [shapes.Delivery.of(delivery) for delivery in found]
        return json_response(shapes.DeliveryPage(deliveries=shown, next_cursor=next_cursor))

    async def visible_delivery(self, request: Request) -> tuple[Principal, Delivery]:
        viewer = await self.viewer(request)
        delivery = await self.store.get_delivery(request.path_params["delivery_id"])
        if delivery is None or not viewer.may_see(delivery.dhan_client_id, delivery.target):
            raise NotFound("no such delivery")
        return viewer, delivery

    async def get_delivery(self, request: Request) -> Response:
        _, delivery = await self.visible_delivery(request)
        attempts = await self.store.get_attempts(delivery.id)
        return json_response(shapes.DeliveryDetail.with_attempts(delivery, attempts))

    async def replay_one(self, request: Request) -> Response:
        viewer, delivery = await self.visible_delivery(request)
        query = viewer.restrict(DeliveryQuery(ids=[delivery.id]))
        replayed = await self.store.replay(query, now=time.time())
        if not replayed:
            raise Conflict("the delivery is being sent right now; replay it once it is done")
        self.committed()
        return json_response(shapes.Accepted(delivery_ids=replayed), 202)

    async def replay_many(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        require_json(request)
        body = parse_body(ReplayRequest, await read_body(request, _ADMIN_BODY_LIMIT))
        filters = body.model_dump(exclude={"cursor"})
        if all(value is None for value in filters.values()):
            raise PayloadError(
                "name at least one filter (status, orderId, since, until, dhanClientId): "
                "replaying everything is not done by accident"
            )
        query = viewer.restrict(
            DeliveryQuery(
                status=body.status,
                order_id=body.orderId,
                dhan_client_id=body.dhanClientId,
                since=None if body.since is None else from_iso(body.since, "since"),
                until=None if body.until is None else from_iso(body.until, "until"),
            )
        )
        limit = self.settings.max_replay
        cursor = None if body.cursor is None else int(body.cursor)
        page, next_cursor = await capped_page(self.store, query, cursor=cursor, limit=limit)
        replayed = await self.store.replay(page, now=time.time()) if page.ids else []
        if replayed:
            self.committed()
        answer = shapes.ReplayAccepted(delivery_ids=replayed, next_cursor=next_cursor)
        if next_cursor is not None:
            answer.note = (
                f"more than {limit} deliveries match: send the same request with "
                f'"cursor": "{next_cursor}" to replay the next ones'
            )
        return json_response(answer, 202)

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_document())


def _known_parameters(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    """The query parameters, or a 400 naming the first one this route does not take."""
    params = request.query_params
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise PayloadError(f"unknown query parameter `{unknown[0]}`")
    return dict(params)


def _boolean(text: str | None, name: str) -> bool:
    if text is None or text == "false":
        return False
    if text == "true":
        return True
    raise PayloadError(f"`{name}` must be true or false")


def _list_query(request: Request) -> DeliveryQuery:
    """A DeliveryQuery from ``GET /v2/deliveries`` query parameters; 400 names a bad one."""
    params = _known_parameters(request, _LIST_PARAMETERS)
    status = params.get("status")
    if status is not None and status not in DeliveryStatus.__members__.values():
        allowed = ", ".join(DeliveryStatus)
        raise PayloadError(f"`status` must be one of {allowed}")
    target = params.get("target")
    if target is not None and target not in Target.__members__.values():
        raise PayloadError(f"`target` must be one of {', '.join(Target)}")
    order = params.get("order", "newest")
    if order not in ("newest", "oldest"):
        raise PayloadError("`order` must be newest or oldest")
    since, until = params.get("since"), params.get("until")
    return DeliveryQuery(
        status=DeliveryStatus(status) if status is not None else None,
        order_id=params.get("orderId"),
        dhan_client_id=params.get("dhanClientId"),
        target=Target(target) if target is not None else None,
        partner_id=params.get("partnerId"),
        since=from_iso(since, "since") if since is not None else None,
        until=from_iso(until, "until") if until is not None else None,
        cursor=_integer(params.get("cursor"), "cursor", 0, 2**63 - 1),
        limit=_integer(params.get("limit"), "limit", 1, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE,
        newest_first=order == "newest",
    )


def _integer(text: str | None, name: str, low: int, high: int) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise PayloadError(f"`{name}` must be an integer") from None
    if not low <= value <= high:
        raise PayloadError(f"`{name}` must be between {low} and {high}")
    return value


class _ServiceApp(Starlette):
    """Starlette, but ``POST /v2/order-updates`` goes straight to its raw ASGI app
    (:mod:`.ingest_endpoint`), before the middleware stack and the router: the route every
    update takes pays for none of them. Any other method on that path, and the path under a
    root path (the app mounted in another), go through Starlette as every other route."""

    def __init__(self, ingest: IngestEndpoint, **options: Any) -> None:
        super().__init__(**options)
        self._ingest = ingest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == INGEST_PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
        ):
            await self._ingest(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(node: ServiceNode) -> Starlette:
    """The service's ASGI app on ``node``: the API, ``/healthz``, ``/metrics`` and the
    delivery dashboard at ``/dashboard``.

    Its lifespan runs the node, unless the node already runs (``serve`` starts it before it
    binds nothing else, so that a database error is one line and not a server traceback).
    """
    service = _Service(node)
    ingest = IngestEndpoint(node)
    dashboard = create_dashboard(node)
    throttle = node.throttle

    async def refused_credential(request: Request, exc: Exception) -> Response:
        """A wrong credential: 401, or 429 once its address is over budget. A request that
        offers none (no header) is not a guess: 401, uncounted."""
        assert isinstance(exc, AuthenticationError)
        refusal = throttle.refusal(
            exc,
            host=request.client.host if request.client else None,
            offered=bool(request.headers.get("admin-key") or request.headers.get("access-token")),
            where="api",
        )
        return error_response(
            refusal, refusal.headers if isinstance(refusal, TooManyFailures) else None
        )

    routes = [
        Route("/v2/access-tokens", service.create_token, methods=["POST"]),
        Route("/v2/access-tokens", service.list_tokens, methods=["GET"]),
        Route("/v2/endpoints", service.list_endpoints, methods=["GET"]),
        Route("/v2/endpoints/{endpoint_id}", service.get_endpoint, methods=["GET"]),
        Route("/v2/endpoints/{endpoint_id}/rotate-secret", service.rotate_secret, methods=["POST"]),
        Route("/v2/endpoints/{endpoint_id}/pause", service.pause_endpoint, methods=["POST"]),
        Route("/v2/endpoints/{endpoint_id}/resume", service.resume_endpoint, methods=["POST"]),
        Route("/v2/access-tokens/{token}", service.revoke_token, methods=["DELETE"]),
        Route("/v2/partners", service.create_partner, methods=["POST"]),
        Route(INGEST_PATH, ingest, methods=["POST"]),  # mounted below a root path
        Route("/v2/deliveries", service.list_deliveries, methods=["GET"]),
        Route("/v2/deliveries/replay", service.replay_many, methods=["POST"]),
        Route("/v2/deliveries/{delivery_id}", service.get_delivery, methods=["GET"]),
        Route("/v2/deliveries/{delivery_id}/replay", service.replay_one, methods=["POST"]),
        *operations_routes(node),
        Route("/openapi.json", service.openapi, methods=["GET"]),
        Mount("/dashboard", app=dashboard),
    ]
    app = _ServiceApp(
        ingest,
        routes=routes,
        middleware=[Middleware(ErrorShield)],
        exception_handlers={
            AuthenticationError: refused_credential,
            DhanPostbackError: handle_error,
            HTTPException: handle_http_exception,
        },
        lifespan=node.lifespan,
    )
    app.state.node = node
    return app
