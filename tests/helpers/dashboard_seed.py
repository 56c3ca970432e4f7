"""A realistic delivery log for the dashboard's httpx and seeded-browser tests.

Two clients trade through one service on a morning of 2026-11-24 (IST). Client A's own
receiver is healthy, its partner's receiver fails once in a while; client B's receiver is down
(503s, then refused connections), so B's first update dies and the next one carries the
``after_dead`` flag. The log is made by the store's own rules: every delivery is enqueued, and a
scripted dispatch loop claims and finishes them with the answers each endpoint would give.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import Mount

from dhan_postback.payload import OrderUpdate, dumps
from dhan_postback.service.dashboard import EndpointHealth, create_dashboard
from dhan_postback.service.node import ServiceNode
from dhan_postback.service.registry import register_partner, register_token
from dhan_postback.service.store.base import (
    Attempt,
    Claim,
    NewDelivery,
    Outcome,
    PartnerRecord,
    Store,
    Target,
    TokenRecord,
)
from dhan_postback.settings import ServiceSettings
from dhan_postback.signing import generate_secret
from dhan_postback.wire import IST, TIME_FORMAT

__all__ = [
    "CLIENT_A",
    "CLIENT_B",
    "PARTNER_URL",
    "URL_A",
    "URL_B",
    "LiveNode",
    "Seeded",
    "dashboard_app",
    "ist",
    "seed",
]

CLIENT_A = "1100482931"
CLIENT_B = "1100551207"
URL_A = "https://algo.ravi-trades.in/hooks/dhan"
URL_B = "https://api.meera-quant.in/postback/dhan"
PARTNER_URL = "https://hooks.tradebot.example/v1/postback"
PARTNER_ID = "tradebot"
RETRY_DELAYS = (5.0, 30.0)
"""Delays before attempts 2 and 3; after the third failure a delivery is dead."""


def ist(text: str) -> float:
    """Epoch seconds of ``YYYY-MM-DD HH:MM:SS`` in IST (the payload's clock)."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=IST).timestamp()


@dataclass
class Seeded:
    """What a test needs to know about the seeded log (tokens in clear, ids by meaning)."""

    token_a: str
    token_b: str
    secrets: list[str]
    token_hashes: list[str]
    ids: dict[str, str] = field(default_factory=dict)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _message_id(key: str) -> str:
    """A ``msg_`` id that looks like the service's (base62), but is the same on every run."""
    number = int.from_bytes(hashlib.sha256(key.encode()).digest(), "big")
    digits = ""
    while len(digits) < 24:
        number, digit = divmod(number, 62)
        digits += _BASE62[digit]
    return "msg_" + digits


_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _update(client: str, order_id: str, status: str, when: str, **fields: object) -> OrderUpdate:
    base: dict[str, object] = {
        "dhan_client_id": client,
        "order_id": order_id,
        "correlation_id": f"strat-{order_id[-4:]}",
        "order_status": status,
        "transaction_type": "BUY",
        "exchange_segment": "NSE_EQ",
        "product_type": "INTRADAY",
        "order_type": "MARKET",
        "validity": "DAY",
        "trading_symbol": "RELIANCE",
        "security_id": "2885",
        "quantity": 10,
        "create_time": "2026-11-24 09:15:02",
        "update_time": when,
        "exchange_time": when,
    }
    base.update(fields)
    return OrderUpdate(**base)  # type: ignore[arg-type]


def _lifecycles() -> list[tuple[str, OrderUpdate]]:
    """(label, update) in the order the OMS produced them."""
    a, b = CLIENT_A, CLIENT_B
    infy = {
        "transaction_type": "SELL",
        "order_type": "LIMIT",
        "trading_symbol": "INFY",
        "security_id": "1594",
        "quantity": 100,
        "price": 1874.5,
        "create_time": "2026-11-24 09:16:40",
    }
    nifty = {
        "exchange_segment": "NSE_FNO",
        "product_type": "MARGIN",
        "order_type": "LIMIT",
        "trading_symbol": "NIFTY-Nov2026-24500-CE",
        "security_id": "48215",
        "quantity": 75,
        "price": 112.35,
        "drv_expiry_date": "2026-11-26",
        "drv_option_type": "CALL",
        "drv_strike_price": 24500.0,
        "create_time": "2026-11-24 09:21:10",
    }
    hdfc = {
        "trading_symbol": "HDFCBANK",
        "security_id": "1333",
        "quantity": 25,
        "product_type": "CNC",
        "create_time": "2026-11-24 09:24:31",
    }
    tata = {
        "transaction_type": "SELL",
        "order_type": "STOP_LOSS",
        "trading_symbol": "TATAMOTORS",
        "security_id": "3456",
        "quantity": 50,
        "price": 911.0,
        "trigger_price": 912.5,
        "create_time": "2026-11-24 09:30:05",
    }
    return [
        ("rel-transit", _update(a, "112611240001", "TRANSIT", "2026-11-24 09:15:02")),
        ("rel-pending", _update(a, "112611240001", "PENDING", "2026-11-24 09:15:02")),
        (
            "rel-traded",
            _update(a, "112611240001", "TRADED", "2026-11-24 09:15:03", filled_qty=10),
        ),
        ("infy-pending", _update(a, "112611240002", "PENDING", "2026-11-24 09:16:40", **infy)),
        (
            "infy-part",
            _update(a, "112611240002", "PENDING", "2026-11-24 09:18:12", filled_qty=40, **infy),
        ),
        (
            "infy-traded",
            _update(a, "112611240002", "TRADED", "2026-11-24 09:19:55", filled_qty=100, **infy),
        ),
        ("nifty-pending", _update(b, "112611240003", "PENDING", "2026-11-24 09:21:10", **nifty)),
        (
            "nifty-part",
            _update(b, "112611240003", "PENDING", "2026-11-24 09:22:48", filled_qty=50, **nifty),
        ),
        (
            "nifty-traded",
            _update(b, "112611240003", "TRADED", "2026-11-24 09:22:49", filled_qty=75, **nifty),
        ),
        ("hdfc-pending", _update(a, "112611240004", "PENDING", "2026-11-24 09:24:31", **hdfc)),
        (
            "hdfc-cancelled",
            _update(a, "112611240004", "CANCELLED", "2026-11-24 09:26:02", **hdfc),
        ),
        (
            "tata-rejected",
            _update(
                a,
                "112611240005",
                "REJECTED",
                "2026-11-24 09:30:05",
                oms_error_code="RMS-EX-1001",
                oms_error_description="Insufficient margin for the order",
                **tata,
            ),
        ),
        ("b-sbin-pending", _update(b, "112611240006", "PENDING", "2026-11-24 09:31:44")),
    ]


Answer = Callable[[Claim, float], tuple[int | None, str | None, str | None, float]]
"""What an endpoint answers a claim at a time: (status, error, body prefix, latency ms)."""


def _answer(claim: Claim, now: float) -> tuple[int | None, str | None, str | None, float]:
    """Client B's receiver is down all morning (see the module docstring)."""
    jitter = (claim.seq * 37 + claim.attempts * 11) % 40
    if claim.url == URL_A:
        return 200, None, '{"status":"ok"}', 38.0 + jitter
    if claim.url == PARTNER_URL:
        if claim.attempts == 0 and claim.seq % 3 == 0:
            return 500, "HTTP 500", '{"error":"db timeout"}', 1450.0 + jitter
        return 204, None, "", 120.0 + jitter * 3
    if claim.attempts == 0:
        return 503, "HTTP 503", "<html><head><title>503 Service Unavailable</title>", 9.0 + jitter
    return None, "connection refused (ECONNREFUSED)", None, 2.0 + jitter / 10


async def _dispatch_until(store: Store, start: float, end: float, answer: Answer = _answer) -> None:
    """Claim and finish whatever is due, jumping from one due time to the next."""
    now = start
    while now <= end:
        claims = await store.claim(limit=100, now=now, lease=60.0)
        outcomes = []
        for claim in claims:
            status, error, body, latency = answer(claim, now)
            attempt = Attempt(
                delivery_id=claim.id,
                number=claim.attempts + 1,
                started_at=now,
                latency_ms=latency,
                status_code=status,
                error=error,
                response_prefix=body,
            )
            if status is not None and 200 <= status < 300:
                outcomes.append(Outcome(attempt, "delivered"))
            elif claim.round_attempts >= len(RETRY_DELAYS):
                outcomes.append(Outcome(attempt, "dead"))
            else:
                delay = RETRY_DELAYS[claim.round_attempts]
                outcomes.append(Outcome(attempt, "retry", next_attempt_at=now + delay))
        await store.finish(outcomes)
        due = await store.next_due()
        if due is None:
            break
        now = max(due, now + 1.0)


async def _register(store: Store) -> Seeded:
    """Client A's token (with the partner), client B's token, and the partner."""
    token_a, token_b = "tok_A_" + "a" * 40, "tok_B_" + "b" * 40
    day = ist("2026-11-24 00:00:00")
    secrets = [generate_secret() for _ in range(3)]
    for token, client, url, partner, secret in (
        (token_a, CLIENT_A, URL_A, PARTNER_ID, secrets[0]),
        (token_b, CLIENT_B, URL_B, None, secrets[1]),
    ):
        record = TokenRecord(
            token_hash=_token_hash(token),
            dhan_client_id=client,
            postback_url=url,
            partner_id=partner,
            created_at=day,
            expires_at=day + 10 * 365 * 86400,
        )
        await register_token(store, record, secret)
    await register_partner(store, PartnerRecord(PARTNER_ID, PARTNER_URL, day), secrets[2])
    return Seeded(token_a, token_b, secrets, [_token_hash(token_a), _token_hash(token_b)])


async def _enqueue(store: Store, seeded: Seeded, updates: list[tuple[str, OrderUpdate]]) -> None:
    """One delivery per update and URL (client A's also go to the partner), oldest first."""
    news: list[NewDelivery] = []
    for label, update in updates:
        created = ist(update.update_time)
        client = update.dhan_client_id
        targets = [(Target.TOKEN, None, URL_A if client == CLIENT_A else URL_B)]
        if client == CLIENT_A:
            targets.append((Target.PARTNER, PARTNER_ID, PARTNER_URL))
        for target, partner_id, url in targets:
            key = label if target is Target.TOKEN else f"{label}@partner"
            delivery_id = _message_id(key)
            seeded.ids[key] = delivery_id
            news.append(
                NewDelivery(
                    id=delivery_id,
                    dhan_client_id=client,
                    token_hash=seeded.token_hashes[0 if client == CLIENT_A else 1],
                    target=target,
                    partner_id=partner_id,
                    url=url,
                    order_id=update.order_id,
                    payload=dumps(update),
                    created_at=created,
                )
            )
    news.sort(key=lambda new: new.created_at)
    await store.enqueue(news)


async def seed(store: Store) -> Seeded:
    """Fill ``store`` with the morning described in the module docstring."""
    seeded = await _register(store)
    await _enqueue(store, seeded, _lifecycles())
    # Dispatch until 09:31:50: the last update of client B is still being retried then.
    await _dispatch_until(store, ist("2026-11-24 09:15:02"), ist("2026-11-24 09:31:50"))
    return seeded


class LiveNode(ServiceNode):
    """A node on a seeded store, without a dispatcher, that reports the given live endpoint
    states as if its dispatcher saw them (a breaker that stays open, for the pages to show)."""

    def __init__(self, settings: ServiceSettings, store: Store, live: list[EndpointHealth]):
        super().__init__(settings, store=store, dispatch=False)
        self._live = live

    @property
    def dispatches(self) -> bool:
        return bool(self._live)

    def endpoint_health(self) -> list[EndpointHealth]:
        return list(self._live)


def dashboard_app(
    store: Store,
    *,
    admin_key: str | None,
    live: list[EndpointHealth] | None = None,
    on_commit: Callable[[], None] | None = None,
) -> Starlette:
    """The dashboard alone, mounted at ``/dashboard``, on a node over ``store``."""
    settings = ServiceSettings(admin_key=SecretStr(admin_key) if admin_key else None)
    node = LiveNode(settings, store, live or [])
    if on_commit is not None:
        node.on_commit(on_commit)
    return Starlette(
        routes=[Mount("/dashboard", app=create_dashboard(node))], lifespan=node.lifespan
    )
