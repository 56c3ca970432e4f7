"""The delivery dashboard: a small server-rendered Starlette app, mountable at ``/dashboard``.

Pages read the store of the same :class:`~dhan_postback.service.node.ServiceNode` the API
uses; the two actions (replay one delivery, replay every dead delivery of a filter) call
``store.replay`` and then wake the node's dispatcher. Who may see what is
:class:`~dhan_postback.service.principal.Principal`'s to say, as for the API:

* the admin key sees every client;
* an access token sees only its own client's deliveries: every query is restricted with
  ``dhan_client_id`` and another client's delivery answers 404, as if it did not exist.

Every URL the app writes is relative to its mount point (``root_path``), so it works mounted
anywhere or served alone.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import quote, urlencode

import structlog
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from ..._version import __version__
from ...errors import DhanPostbackError, NotFound, PermissionDenied
from ..http import HttpMiddleware
from ..principal import Principal
from ..replaying import capped_page
from ..store.base import (
    Delivery,
    DeliveryQuery,
    DeliveryStatus,
    EndpointKind,
    EndpointRecord,
    OrderQuery,
    Store,
    Target,
)
from ..throttle import FailureThrottle, TooManyFailures
from .formatting import (
    display_url,
    format_ist,
    format_utc,
    parse_ist_input,
    pretty_payload,
    short_url,
    update_facts,
)
from .health import BACKLOG_CAP, summarise_endpoints
from .sessions import (
    COOKIE_NAME,
    LOGIN_COOKIE_NAME,
    Session,
    Sessions,
    new_login_token,
    same_token,
)
from .sparkline import sparkline

if TYPE_CHECKING:
    from ..node import ServiceNode

__all__ = [
    "FAILURES_SHOWN",
    "FAILURES_SINCE",
    "PAGE_SIZE",
    "RECENT_ORDERS",
    "SPARK_MINUTES",
    "Handler",
    "create_dashboard",
]

PAGE_SIZE = 50
"""Deliveries per page of the list."""
_LOGIN_FORM_LIFETIME = 3600
"""Seconds the login form's double-submit cookie lasts."""
RECENT_ORDERS = 50
"""Orders listed on the Orders page (from the newest deliveries)."""
SPARK_MINUTES = 60
"""Minutes an endpoint page charts."""
FAILURES_SHOWN = 20
"""Failed attempts an endpoint page lists (of the last :data:`FAILURES_SINCE` seconds)."""
FAILURES_SINCE = 86_400.0

_HERE = Path(__file__).parent
_log = structlog.get_logger(__name__)

Handler: TypeAlias = Callable[[Request, Session, Principal], Awaitable[Response]]

_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


class _SecurityHeaders(HttpMiddleware):
    """Adds the page-hardening headers (and ``no-store`` for HTML) to every response."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_SECURITY_HEADERS)
                if any(k == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _LoginRequired(Exception):
    """Raised by a page when nobody (or an expired token) is logged in."""


def _form_expired() -> PermissionDenied:
    return PermissionDenied(
        "This form has expired or did not come from this dashboard. "
        "Go back, reload the page and try again."
    )


class _Dashboard:
    """The state behind the routes: the node, sessions, templates."""

    def __init__(self, node: ServiceNode) -> None:
        self.node = node
        self.settings = node.settings
        self.templates = Environment(
            loader=FileSystemLoader(_HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            ist=format_ist, utc=format_utc, url=display_url, short_url=short_url, facts=update_facts
        )
        self.templates.globals.update(version=__version__, DeliveryStatus=DeliveryStatus)

    @property
    def store(self) -> Store:
        return self.node.store

    @property
    def sessions(self) -> Sessions:
        return self.node.sessions

    @property
    def throttle(self) -> FailureThrottle:
        return self.node.throttle

    # Rendering ----------------------------------------------------------------------------
    async def render(
        self,
        request: Request,
        template: str,
        *,
        session: Session | None = None,
        status_code: int = 200,
        csrf: str = "",
        flash: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """The page; a logged-in ``session`` gives its principal, its CSRF token and the
        messages kept for this page (which are then cleared)."""
        messages = list(flash)
        if session is not None and session.flash:
            messages += session.flash
            session.flash = []
            await self.sessions.save_flash(session)
        html = self.templates.get_template(template).render(
            base=_base(request),
            session=session,
            principal=session.principal if session else None,
            csrf=session.csrf if session else csrf,
            flash=messages,
            **context,
        )
        return HTMLResponse(html, status_code=status_code, headers=headers)

    def set_cookie(
        self, request: Request, response: Response, name: str, value: str, max_age: int
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=_base(request) + "/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    # Sessions -----------------------------------------------------------------------------
    async def session_of(self, request: Request) -> Session | None:
        return await self.sessions.get(request.cookies.get(COOKIE_NAME))

    async def logged_in(self, request: Request) -> tuple[Session, Principal]:
        """The session and who it belongs to, or :class:`_LoginRequired`."""
        session = await self.session_of(request)
        if session is None:
            raise _LoginRequired
        principal = session.principal
        if not await self.node.still_valid(principal):
            await self.sessions.end(session)
            raise _LoginRequired
        return session, principal

    def check_csrf(self, session: Session | None, form: FormData) -> Session:
        sent = form.get("csrf")
        if session is None or not isinstance(sent, str) or not same_token(sent, session.csrf):
            raise _form_expired()
        return session

    def check_login_csrf(self, request: Request, form: FormData) -> None:
        """The login form's double submit: the hidden field must repeat the cookie."""
        sent, expected = form.get("csrf"), request.cookies.get(LOGIN_COOKIE_NAME, "")
        if not isinstance(sent, str) or not same_token(sent, expected):
            raise _form_expired()

    async def flash(self, session: Session, message: str) -> None:
        session.flash.append(message)
        await self.sessions.save_flash(session)

    def commit(self) -> None:
        self.node.wake()

    async def visible_endpoints(self, principal: Principal) -> list[EndpointRecord]:
        """The endpoints the principal may see: every one for the admin, a token's client's
        own (never its partner's) for a token, as deliveries are shown."""
        every = await self.store.list_endpoints()
        if principal.is_admin:
            return every
        return [
            e
            for e in every
            if e.kind is EndpointKind.CLIENT and e.owner_id == principal.dhan_client_id
        ]

    async def visible_endpoint(self, principal: Principal, endpoint_id: str) -> EndpointRecord:
        """The endpoint, or 404 when it does not exist or the principal may not see it."""
        endpoint = await self.store.get_endpoint(endpoint_id)
        if endpoint is None or not (
            principal.is_admin
            or (
                endpoint.kind is EndpointKind.CLIENT
                and endpoint.owner_id == principal.dhan_client_id
            )
        ):
            raise NotFound("No such endpoint.")
        return endpoint

    async def visible_delivery(self, principal: Principal, delivery_id: str) -> Delivery:
        """The delivery, or 404 when it does not exist or belongs to another client."""
        delivery = await self.store.get_delivery(delivery_id)
        if delivery is None or not principal.may_see(delivery.dhan_client_id, delivery.target):
            raise NotFound("No such delivery.")
        return delivery


def _base(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _text(form: FormData | Mapping[str, str], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


@dataclasses.dataclass(frozen=True, slots=True)
class _Filter:
    """The deliveries filter as the list page, the replay page and their links share it."""

    status: str = ""
    client: str = ""
    order_id: str = ""
    since: str = ""
    until: str = ""

    @classmethod
    def read(cls, source: FormData | Mapping[str, str], principal: Principal) -> _Filter:
        status = _text(source, "status")
        if status and status not in DeliveryStatus.__members__.values():
            raise HTTPException(400, f"Unknown status {status!r}: use pending, delivered or dead.")
        found = cls(
            status=status,
            client=_text(source, "client"),
            order_id=_text(source, "order_id"),
            since=_text(source, "since"),
            until=_text(source, "until"),
        )
        found.query(principal)  # refuse bad times now, with a clear message
        return found

    def query(self, principal: Principal, **changes: Any) -> DeliveryQuery:
        try:
            since, until = parse_ist_input(self.since), parse_ist_input(self.until)
        except ValueError:
            raise HTTPException(400, "Times must look like 2026-01-31T09:15 (IST).") from None
        query = DeliveryQuery(
            status=DeliveryStatus(self.status) if self.status else None,
            order_id=self.order_id or None,
            dhan_client_id=self.client or None,
            since=since,
            until=until,
        )
        return principal.restrict(dataclasses.replace(query, **changes))

    def params(self, **extra: str | int) -> str:
        pairs = {k: v for k, v in dataclasses.asdict(self).items() if v}
        pairs.update({k: str(v) for k, v in extra.items()})
        return urlencode(pairs)

    @property
    def is_empty(self) -> bool:
        return not any(dataclasses.asdict(self).values())


def create_dashboard(node: ServiceNode) -> Starlette:
    """The dashboard on ``node`` as a Starlette app; mount it (``Mount("/dashboard", app)``)
    or serve it. The host app runs the node; replays wake its dispatcher, and the endpoints
    page shows the dispatcher's live view (breaker state, in-flight) when the node has one.
    Sessions live in the node's store, and wrong credentials count against the node's
    throttle, the same budget as the API's.
    """
    dash = _Dashboard(node)

    def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session, principal = await dash.logged_in(request)
            return await handler(request, session, principal)

        return endpoint

    async def index(request: Request) -> Response:
        return RedirectResponse(_base(request) + "/deliveries", status_code=303)

    async def login_page(
        request: Request, *, status_code: int = 200, flash: Sequence[str] = (), **extra: Any
    ) -> Response:
        """The login form with its double-submit token: the cookie's, or a fresh one."""
        token = request.cookies.get(LOGIN_COOKIE_NAME, "")
        if not 32 <= len(token) <= 64:
            token = new_login_token()
        response = await dash.render(
            request, "login.html", csrf=token, status_code=status_code, flash=flash, **extra
        )
        dash.set_cookie(request, response, LOGIN_COOKIE_NAME, token, _LOGIN_FORM_LIFETIME)
        return response

    async def login_form(request: Request) -> Response:
        if await dash.session_of(request) is not None:
            return RedirectResponse(_base(request) + "/deliveries", status_code=303)
        return await login_page(request)

    async def login(request: Request) -> Response:
        form = await request.form()
        dash.check_login_csrf(request, form)
        credential = _text(form, "credential")
        principal = await node.principal_for(credential)
        if principal is None and credential:
            client = request.client.host if request.client else None
            try:
                dash.throttle.failed(client, where="dashboard")
            except TooManyFailures as too_many:
                return await login_page(
                    request,
                    status_code=429,
                    flash=[f"Too many wrong attempts: try again in {too_many.retry_after} s."],
                    headers=too_many.headers,
                )
        if principal is None:
            _log.info("dashboard_login_refused")
            return await login_page(
                request,
                status_code=401,
                flash=["That admin key or access token is not valid (or has expired)."],
            )
        session = await dash.sessions.new(principal)  # always a fresh id: planting is useless
        _log.info("dashboard_login", who=principal.label)
        response = RedirectResponse(_base(request) + "/deliveries", status_code=303)
        max_age = int(session.expires_at - time.time())
        dash.set_cookie(request, response, COOKIE_NAME, session.id, max_age)
        response.delete_cookie(LOGIN_COOKIE_NAME, path=_base(request) + "/")
        return response

    async def logout(request: Request) -> Response:
        form = await request.form()
        session = dash.check_csrf(await dash.session_of(request), form)
        await dash.sessions.end(session)
        response = RedirectResponse(_base(request) + "/login", status_code=303)
        response.delete_cookie(COOKIE_NAME, path=_base(request) + "/")
        return response

    @page
    async def deliveries(request: Request, session: Session, principal: Principal) -> Response:
        filters = _Filter.read(request.query_params, principal)
        cursor_text = request.query_params.get("cursor", "")
        if cursor_text and not cursor_text.isdigit():
            raise HTTPException(400, "The page cursor is a number: follow the links.")
        cursor = int(cursor_text) if cursor_text else None
        rows = await dash.store.list_deliveries(
            filters.query(principal, cursor=cursor, limit=PAGE_SIZE + 1)
        )
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        counts = await dash.store.counts() if principal.is_admin else None
        return await dash.render(
            request,
            "deliveries.html",
            session=session,
            rows=rows,
            filters=filters,
            counts=counts,
            first_page=cursor is None,
            next_params=filters.params(cursor=rows[-1].seq) if more and rows else None,
        )

    @page
    async def delivery(request: Request, session: Session, principal: Principal) -> Response:
        found = await dash.visible_delivery(principal, request.path_params["delivery_id"])
        attempts = await dash.store.get_attempts(found.id)
        return await dash.render(
            request,
            "delivery.html",
            session=session,
            d=found,
            attempts=list(reversed(attempts)),
            last_attempt=attempts[-1] if attempts else None,
            payload_text=pretty_payload(found.payload),
        )

    @page
    async def replay_one(request: Request, session: Session, principal: Principal) -> Response:
        found = await dash.visible_delivery(principal, request.path_params["delivery_id"])
        if request.method == "GET":
            return await dash.render(request, "confirm_replay.html", session=session, d=found)
        dash.check_csrf(session, await request.form())
        replayed = await dash.store.replay(
            principal.restrict(DeliveryQuery(ids=[found.id])),
            now=time.time(),
        )
        dash.commit()
        _log.info("dashboard_replay", who=principal.label, deliveries=len(replayed))
        await dash.flash(
            session,
            "Queued again: the next attempt is due now."
            if replayed
            else "Not queued: this delivery is being sent right now.",
        )
        return RedirectResponse(f"{_base(request)}/deliveries/{found.id}", status_code=303)

    @page
    async def replay_dead(request: Request, session: Session, principal: Principal) -> Response:
        if not principal.is_admin:
            raise PermissionDenied("Replaying many deliveries at once needs the admin key.")
        if request.method == "GET":
            filters = dataclasses.replace(
                _Filter.read(request.query_params, principal), status=DeliveryStatus.DEAD.value
            )
            matching = await dash.store.list_deliveries(filters.query(principal, limit=BACKLOG_CAP))
            return await dash.render(
                request,
                "confirm_replay_dead.html",
                session=session,
                filters=filters,
                matching=len(matching),
                capped=len(matching) >= BACKLOG_CAP,
                sample=matching[:10],
            )
        form = await request.form()
        dash.check_csrf(session, form)
        filters = dataclasses.replace(
            _Filter.read(form, principal), status=DeliveryStatus.DEAD.value
        )
        page, more = await capped_page(
            dash.store, filters.query(principal), cursor=None, limit=dash.settings.max_replay
        )
        replayed = await dash.store.replay(page, now=time.time()) if page.ids else []
        dash.commit()
        _log.info("dashboard_replay", who=principal.label, deliveries=len(replayed))
        await dash.flash(
            session,
            f"Queued {len(replayed)} dead deliveries again."
            + (" More are dead: replay again for the next ones." if more else ""),
        )
        pending = dataclasses.replace(filters, status=DeliveryStatus.PENDING.value)
        return RedirectResponse(f"{_base(request)}/deliveries?{pending.params()}", status_code=303)

    @page
    async def endpoints(request: Request, session: Session, principal: Principal) -> Response:
        summaries = await summarise_endpoints(
            dash.store,
            scope=principal.restrict(DeliveryQuery()),
            live=node.endpoint_health(),
            breaker_of=node.breaker_state,
            endpoints=await dash.visible_endpoints(principal),
            now=time.time(),
        )
        return await dash.render(
            request,
            "endpoints.html",
            session=session,
            summaries=summaries,
            has_live=node.dispatches,
        )

    @page
    async def endpoint_page(request: Request, session: Session, principal: Principal) -> Response:
        endpoint = await dash.visible_endpoint(principal, request.path_params["endpoint_id"])
        now = time.time()
        minutes = await dash.store.endpoint_minutes(
            endpoint, since=now // 60 * 60 - (SPARK_MINUTES - 1) * 60, until=now + 60
        )
        failures = await dash.store.endpoint_failures(
            endpoint, since=now - FAILURES_SINCE, limit=FAILURES_SHOWN
        )
        return await dash.render(
            request,
            "endpoint.html",
            session=session,
            e=endpoint,
            activity=await dash.store.endpoint_activity(endpoint),
            breaker=node.breaker_state(endpoint.url),
            has_live=node.dispatches,
            chart=sparkline(minutes, until=now, minutes=SPARK_MINUTES),
            failures=failures,
            grace_until=endpoint.grace_until(now),
            replay_since=_text(request.query_params, "since"),
        )

    @page
    async def pause_or_resume(request: Request, session: Session, principal: Principal) -> Response:
        """``/pause`` and ``/resume``: the node's pause contract, after a confirmation."""
        endpoint = await dash.visible_endpoint(principal, request.path_params["endpoint_id"])
        action = request.url.path.rsplit("/", 1)[-1]
        _admin_only(principal, "Pausing or resuming an endpoint")
        if request.method == "GET":
            backlog = (await dash.store.endpoint_activity(endpoint)).backlog
            return await dash.render(
                request,
                "confirm_endpoint.html",
                session=session,
                e=endpoint,
                action=action,
                backlog=backlog,
            )
        dash.check_csrf(session, await request.form())
        if action == "pause":
            changed = await node.pause_endpoint(endpoint.id)
            message = "Paused: nothing is sent to this endpoint until you resume it."
        else:
            changed = await node.resume_endpoint(endpoint.id)
            message = "Resumed: its pending deliveries go out now, in order."
        _log.info(f"dashboard_{action}", who=principal.label, endpoint_id=changed.id)
        await dash.flash(session, message)
        return RedirectResponse(f"{_base(request)}/endpoints/{endpoint.id}", status_code=303)

    @page
    async def rotate_secret(request: Request, session: Session, principal: Principal) -> Response:
        endpoint = await dash.visible_endpoint(principal, request.path_params["endpoint_id"])
        _admin_only(principal, "Rotating a signing secret")
        if request.method == "GET":
            return await dash.render(
                request,
                "confirm_endpoint.html",
                session=session,
                e=endpoint,
                action="rotate-secret",
                grace=dash.settings.secret_rotation_grace,
            )
        dash.check_csrf(session, await request.form())
        rotated = await node.registry.rotate_secret(endpoint.id)
        _log.info("dashboard_rotate_secret", who=principal.label, endpoint_id=rotated.id)
        await dash.flash(
            session,
            "Rotated: the new secret signs first, the old one beside it until "
            f"{format_ist(rotated.grace_until(time.time()))}. The dashboard never shows "
            f"secrets: read it with 'dhan-postback endpoints show {rotated.id} "
            "--include-secret'.",
        )
        return RedirectResponse(f"{_base(request)}/endpoints/{endpoint.id}", status_code=303)

    @page
    async def replay_failed(request: Request, session: Session, principal: Principal) -> Response:
        endpoint = await dash.visible_endpoint(principal, request.path_params["endpoint_id"])
        _admin_only(principal, "Replaying an endpoint's failed deliveries")
        source: FormData | Mapping[str, str] = (
            request.query_params if request.method == "GET" else await request.form()
        )
        since_text = _text(source, "since")
        try:
            since = parse_ist_input(since_text)
        except ValueError:
            raise HTTPException(400, "Times must look like 2026-01-31T09:15 (IST).") from None
        if since is None:
            raise HTTPException(400, "Say since when: a time like 2026-01-31T09:15 (IST).")
        if request.method == "GET":
            matching, more = await _dead_of(dash.store, endpoint, since, BACKLOG_CAP)
            return await dash.render(
                request,
                "confirm_endpoint.html",
                session=session,
                e=endpoint,
                action="replay-failed",
                since=since_text,
                matching=len(matching),
                capped=more,
                sample=matching[:10],
            )
        form = await request.form()
        dash.check_csrf(session, form)
        found, more = await _dead_of(dash.store, endpoint, since, dash.settings.max_replay)
        replayed = (
            await dash.store.replay(DeliveryQuery(ids=[d.id for d in found]), now=time.time())
            if found
            else []
        )
        dash.commit()
        _log.info(
            "dashboard_replay",
            who=principal.label,
            endpoint_id=endpoint.id,
            deliveries=len(replayed),
        )
        await dash.flash(
            session,
            f"Queued {len(replayed)} dead deliveries to this endpoint again."
            + (" More are dead: replay again for the next ones." if more else ""),
        )
        return RedirectResponse(f"{_base(request)}/endpoints/{endpoint.id}", status_code=303)

    @page
    async def search(request: Request, session: Session, principal: Principal) -> Response:
        """One box for a ``webhook-id`` (a delivery) or an ``orderId`` (its updates)."""
        wanted = _text(request.query_params, "q")
        if wanted:
            found = await dash.store.get_delivery(wanted)
            if found is not None and principal.may_see(found.dhan_client_id, found.target):
                return RedirectResponse(f"{_base(request)}/deliveries/{found.id}", status_code=303)
            orders = await dash.store.list_deliveries(
                principal.restrict(DeliveryQuery(order_id=wanted, limit=1))
            )
            if orders:
                return RedirectResponse(
                    f"{_base(request)}/orders/{quote(wanted, safe='')}", status_code=303
                )
        return await dash.render(
            request,
            "search.html",
            session=session,
            q=wanted,
            status_code=404 if wanted else 200,
        )

    @page
    async def orders(request: Request, session: Session, principal: Principal) -> Response:
        order_id = request.path_params.get("order_id") or _text(request.query_params, "order_id")
        if "order_id" not in request.path_params and order_id:
            return RedirectResponse(f"{_base(request)}/orders/{order_id}", status_code=303)
        queues: dict[str, list[Delivery]] = {}
        if not order_id:
            recent = await dash.store.recent_orders(
                principal.restrict(OrderQuery(limit=RECENT_ORDERS))
            )
            return await dash.render(
                request, "orders.html", session=session, order_id="", recent=recent
            )
        if order_id:
            found = await dash.store.list_deliveries(
                principal.restrict(
                    DeliveryQuery(order_id=order_id, newest_first=False, limit=BACKLOG_CAP)
                )
            )
            for row in found:
                queues.setdefault(row.url, []).append(row)
        return await dash.render(
            request, "order.html", session=session, order_id=order_id, queues=queues
        )

    async def login_required(request: Request, exc: Exception) -> Response:
        return RedirectResponse(_base(request) + "/login", status_code=303)

    async def known_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, DhanPostbackError):
            status, message = exc.http_status, exc.message
        elif isinstance(exc, HTTPException):
            status = exc.status_code
            message = exc.detail if status == 400 else _STATUS_TEXT.get(status, exc.detail)
        else:  # pragma: no cover - registered only for the two types above
            raise exc
        try:
            session = await dash.session_of(request)
        except DhanPostbackError:  # the store is what failed: show the page without it
            session = None
        return await dash.render(
            request,
            "error.html",
            session=session,
            status_code=status,
            title=_STATUS_TITLE.get(status, "Something went wrong"),
            message=message,
        )

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        _log.error("dashboard_error", error_type=type(exc).__name__)
        return await dash.render(
            request,
            "error.html",
            session=None,
            status_code=500,
            title="Something went wrong",
            message="The dashboard hit an unexpected problem. Try again in a moment.",
        )

    routes = [
        Route("/", index),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/deliveries", deliveries),
        Route("/deliveries/{delivery_id}", delivery),
        Route("/deliveries/{delivery_id}/replay", replay_one, methods=["GET", "POST"]),
        Route("/replay-dead", replay_dead, methods=["GET", "POST"]),
        Route("/endpoints", endpoints),
        Route("/endpoints/{endpoint_id}", endpoint_page),
        Route("/endpoints/{endpoint_id}/pause", pause_or_resume, methods=["GET", "POST"]),
        Route("/endpoints/{endpoint_id}/resume", pause_or_resume, methods=["GET", "POST"]),
        Route("/endpoints/{endpoint_id}/rotate-secret", rotate_secret, methods=["GET", "POST"]),
        Route("/endpoints/{endpoint_id}/replay-failed", replay_failed, methods=["GET", "POST"]),
        Route("/search", search),
        Route("/orders", orders),
        Route("/orders/{order_id}", orders),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            _LoginRequired: login_required,
            DhanPostbackError: known_error,
            HTTPException: known_error,
            Exception: unexpected_error,
        },
    )
    app.add_middleware(_SecurityHeaders)
    return app


def _admin_only(principal: Principal, what: str) -> None:
    if not principal.is_admin:
        raise PermissionDenied(f"{what} needs the admin key.")


async def _dead_of(
    store: Store, endpoint: EndpointRecord, since: float, limit: int
) -> tuple[list[Delivery], bool]:
    """Up to ``limit`` dead deliveries to ``endpoint`` created at or after ``since``, oldest
    first, and whether more are left. The log is filtered by owner and target (indexed) and
    the URL checked here, reading at most :data:`BACKLOG_CAP` rows past ``limit``."""
    query = DeliveryQuery(
        status=DeliveryStatus.DEAD,
        since=since,
        target=endpoint.target,
        dhan_client_id=endpoint.owner_id if endpoint.target is Target.TOKEN else None,
        partner_id=endpoint.owner_id if endpoint.target is Target.PARTNER else None,
        newest_first=False,
        limit=min(limit + 1, BACKLOG_CAP),
    )
    found: list[Delivery] = []
    read = 0
    while True:
        page = await store.list_deliveries(query)
        read += len(page)
        found += [d for d in page if d.url == endpoint.url]
        if len(found) > limit:
            return found[:limit], True
        if len(page) < query.limit:
            return found, False
        if read >= limit + BACKLOG_CAP:
            return found, True
        query = dataclasses.replace(query, cursor=page[-1].seq)


_STATUS_TITLE = {
    400: "That request did not make sense",
    401: "Please log in",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    503: "The store is unavailable",
}
_STATUS_TEXT = {
    404: "There is nothing at this address.",
    405: "This page cannot be used that way.",
}
