"""Everything on one machine, then proof that it worked: the engine of ``dhan-postback demo``.

The run, in order:

1. start a postback service node (:class:`~dhan_postback.service.node.ServiceNode`, SQLite in
   the demo folder, its log in ``service.log`` there) with its HTTP API, in sandbox mode so
   that it may deliver to loopback;
2. start one receiver per client and one for the partner, in this process, each with its own
   signing secret and SQLite file, optionally behind :class:`~dhan_postback.chaos.ChaosMiddleware`;
3. register the partner and one access token per client (some clients trade through the
   partner's platform, so the partner gets their updates too);
4. simulate orders of every kind and submit their updates through the ingest API;
5. wait until every delivery has arrived, then check, for every receiver, what arrived against
   what was submitted (:class:`TargetReport`).

The checks read the receivers' own stores, so they prove what a trader would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import shutil
import socket
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import msgspec
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount

from .chaos import ChaosMiddleware
from .logs import configure_logging
from .payload import OrderUpdate, dumps
from .receiver import Receiver
from .service.app import create_app
from .service.node import ServiceNode
from .serving import BackgroundServer
from .settings import ServiceSettings
from .simulator import OrderKind, SimulatedOrder, Simulator, interleave
from .wire import DEFAULT_CLIENTS

__all__ = [
    "DEFAULT_CLIENTS",
    "PARTNER_ID",
    "DemoOptions",
    "DemoReport",
    "Endpoints",
    "Progress",
    "TargetReport",
    "kinds_covered",
    "run_demo",
]

PARTNER_ID: Final = "demo-partner"
_MARKER: Final = ".dhan-postback-demo"
_BATCH: Final = 100

# Delivery settings of the demo's service: retries come quickly, so a chaotic run still ends
# in seconds, and there are enough of them that chaos never exhausts one.
_SERVICE_SETTINGS: Final[dict[str, object]] = {
    "retry_schedule": "0s,50ms,100ms,200ms,400ms,800ms,1s,1s,2s,2s,3s,3s,5s,5s",
    "timeout": "500ms",
    "allow_loopback": True,
}
_CHAOS_HOLD: Final = 0.8
"""How long a chaos 'timeout' holds a request: longer than the service's 500 ms timeout."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """One demo run. The first five come from :class:`~dhan_postback.settings.DemoSettings`,
    whose defaults are the demo's (stated there once, shown by ``--help``); the rest are fixed
    for a command-line run."""

    orders: int
    seed: int
    rate: float
    """Updates submitted per second; 0 submits as fast as the service takes them."""
    chaos: float
    directory: Path
    service_port: int = 0
    receiver_port: int = 0
    clients: Sequence[str] = DEFAULT_CLIENTS
    partner_clients: int = 2
    """How many of the clients (the last ones) place their orders through the partner."""
    deadline: float = 120.0


@dataclass(slots=True)
class Progress:
    """What the screen shows while the demo runs."""

    updates_total: int = 0
    submitted: int = 0
    deliveries_total: int = 0
    delivered: int = 0
    retried: int = 0
    in_flight: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.delivered / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class TargetReport:
    """The checks for one receiver: a client's own URL, or the partner's."""

    name: str
    submitted: int
    delivered: int
    unique_received: int
    duplicates_absorbed: int
    out_of_order: int
    signatures_verified: int
    signatures_rejected: int
    book_matches: bool
    book_mismatches: int
    latency_p50_ms: float
    latency_p99_ms: float

    @property
    def ok(self) -> bool:
        return (
            self.delivered == self.submitted
            and self.unique_received == self.submitted
            and self.out_of_order == 0
            and self.signatures_rejected == 0
            and self.book_matches
        )


@dataclass(frozen=True, slots=True)
class DemoReport:
    targets: list[TargetReport]
    orders: int
    updates: int
    kinds: dict[str, int]
    retried: int
    chaos_injected: dict[str, int]
    elapsed: float
    timed_out: bool

    @property
    def ok(self) -> bool:
        return not self.timed_out and all(target.ok for target in self.targets)


@dataclass(slots=True)
class _Target:
    """One receiver and what it should end up with."""

    name: str
    path: str
    secret: str
    receiver: Receiver
    chaos: ChaosMiddleware | None
    expected: list[tuple[str, OrderUpdate]] = field(default_factory=list)
    """(delivery id, update) in submission order."""
    submitted_at: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the running demo can be explored (printed by ``--keep-running``)."""

    service: str
    receivers: dict[str, str]
    admin_key: str
    tokens: dict[str, str]


def _prepare_directory(directory: Path) -> None:
    """Empty the demo folder, refusing to touch a folder the demo did not create."""
    if directory.exists() and any(directory.iterdir()):
        if not (directory / _MARKER).exists():
            raise FileExistsError(
                f"{directory} exists and was not made by the demo; pass another --dir"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / _MARKER).write_text("made by dhan-postback demo; emptied at every run\n")


def _listen(port: int) -> socket.socket:
    """A loopback socket bound now, so that nothing can take the port before it serves."""
    try:
        return socket.create_server(("127.0.0.1", port))
    except OSError as exc:
        raise RuntimeError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None


@contextlib.asynccontextmanager
async def _service(directory: Path, port: int, admin_key: str) -> AsyncIterator[str]:
    """A service node with its API on ``port`` (0: any free one), logging to service.log;
    its URL."""
    settings = ServiceSettings.model_validate(
        {
            "db": f"sqlite:///{(directory / 'service.db').resolve()}",
            "admin_key": admin_key,
            "host": "127.0.0.1",
            "port": port,
            **_SERVICE_SETTINGS,
        }
    )
    listening = _listen(port)
    with (directory / "service.log").open("a") as log_file:
        configure_logging(json=True, stream=log_file)
        async with ServiceNode(settings) as node:
            server = BackgroundServer(create_app(node), host="127.0.0.1", port=port)
            await server.start(sockets=[listening])
            try:
                yield f"http://127.0.0.1:{server.port}"
            finally:
                await server.stop()


class _Api:
    """The few calls of the service's HTTP API the demo makes."""

    def __init__(self, session: aiohttp.ClientSession, base: str, admin_key: str) -> None:
        self.session = session
        self.base = base
        self.admin = {"admin-key": admin_key}

    async def _post(self, path: str, body: Any, headers: dict[str, str]) -> Any:
        data = msgspec.json.encode(body) if not isinstance(body, bytes) else body
        heads = {**headers, "Content-Type": "application/json"}
        async with self.session.post(self.base + path, data=data, headers=heads) as reply:
            answer = await reply.read()
            if reply.status >= 300:
                raise RuntimeError(f"POST {path} answered {reply.status}: {answer[:300]!r}")
            return msgspec.json.decode(answer)

    async def partner(self, partner_id: str, url: str) -> str:
        answer = await self._post(
            "/v2/partners", {"partnerId": partner_id, "postbackUrl": url}, self.admin
        )
        return str(answer["signingSecret"])

    async def token(self, client_id: str, url: str, partner_id: str | None) -> tuple[str, str]:
        body: dict[str, Any] = {"dhanClientId": client_id, "postbackUrl": url}
        if partner_id:
            body["partnerId"] = partner_id
        answer = await self._post("/v2/access-tokens", body, self.admin)
        return str(answer["accessToken"]), str(answer["signingSecret"])

    async def submit(self, token: str, updates: Sequence[OrderUpdate]) -> list[str]:
        body = b"[" + b",".join(dumps(update) for update in updates) + b"]"
        answer = await self._post("/v2/order-updates", body, {"access-token": token})
        return [str(item) for item in answer["deliveryIds"]]

    async def metrics(self) -> dict[str, float]:
        async with self.session.get(self.base + "/metrics") as reply:
            text = await reply.text()
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = sample.name
                if sample.name == "dhan_postback_deliveries":
                    key += ":" + sample.labels.get("status", "")
                totals[key] = totals.get(key, 0.0) + sample.value
        return totals


def _receiver_app(targets: Sequence[_Target]) -> Starlette:
    routes = [Mount(target.path, app=target.chaos or target.receiver) for target in targets]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for target in targets:
                await target.receiver.start()
                stack.push_async_callback(target.receiver.aclose)
            yield

    return Starlette(routes=routes, lifespan=lifespan)


def _percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def _check(target: _Target) -> TargetReport:
    """Compare what one receiver stored with what was submitted to it."""
    store = target.receiver.store
    arrived = store.history_all()
    expected_ids = {delivery_id for delivery_id, _ in target.expected}
    arrived_ids = [row.webhook_id for row in arrived]
    delivered = len(expected_ids.intersection(arrived_ids))

    # Out of order: an update that arrives after a later update of the same order.
    position = {delivery_id: index for index, (delivery_id, _) in enumerate(target.expected)}
    newest_seen: dict[str, int] = {}
    out_of_order = 0
    latencies: list[float] = []
    for row in arrived:
        index = position.get(row.webhook_id or "")
        if index is None:
            continue
        if index < newest_seen.get(row.order_id, -1):
            out_of_order += 1
        newest_seen[row.order_id] = max(index, newest_seen.get(row.order_id, -1))
        latencies.append((row.received_at - target.submitted_at[row.webhook_id or ""]) * 1000)

    finals: dict[tuple[str, str | None], OrderUpdate] = {}
    for _, update in target.expected:
        leg = update.leg_name.value if update.leg_name else None
        finals[(update.order_id, leg)] = update
    mismatches = 0
    for (order_id, leg), final in finals.items():
        book_row = store.order(order_id, leg)
        if book_row is None or book_row.update.to_update() != final:
            mismatches += 1

    stats = target.receiver.stats()
    latencies.sort()
    return TargetReport(
        name=target.name,
        submitted=len(target.expected),
        delivered=delivered,
        unique_received=len(arrived),
        duplicates_absorbed=stats.duplicates,
        out_of_order=out_of_order,
        signatures_verified=stats.unique + stats.duplicates,
        signatures_rejected=stats.rejected,
        book_matches=mismatches == 0,
        book_mismatches=mismatches,
        latency_p50_ms=_percentile(latencies, 0.50),
        latency_p99_ms=_percentile(latencies, 0.99),
    )


def _plan(options: DemoOptions) -> tuple[list[SimulatedOrder], list[OrderUpdate]]:
    simulator = Simulator(options.seed, clients=tuple(options.clients))
    orders = simulator.orders(options.orders)
    stream = interleave(orders, random.Random(options.seed))
    return orders, stream


async def run_demo(
    options: DemoOptions,
    *,
    on_progress: Callable[[Progress], None] = lambda progress: None,
    on_ready: Callable[[Endpoints], None] = lambda endpoints: None,
    keep_running: Callable[[DemoReport], Awaitable[object]] | None = None,
) -> DemoReport:
    """Run the whole demo and return the checks; see the module docstring for the steps.

    ``on_progress`` is called a few times a second; ``on_ready`` once everything is up. When
    ``keep_running`` is given, it is awaited with the report after the checks, with
    everything still up (show the report there, then wait).
    """
    _prepare_directory(options.directory)
    orders, stream = _plan(options)
    admin_key = secrets.token_urlsafe(24)
    receiver_listening = _listen(options.receiver_port)
    receiver_base = f"http://127.0.0.1:{receiver_listening.getsockname()[1]}"
    progress = Progress(updates_total=len(stream))

    partner_clients = set(options.clients[len(options.clients) - options.partner_clients :])
    paths = {name: f"/clients/{name}" for name in options.clients} | {"partner": "/partner"}
    urls = {name: f"{receiver_base}{path}/" for name, path in paths.items()}

    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=30)
    server: uvicorn.Server | None = None
    server_task: asyncio.Task[None] | None = None
    async with _service(options.directory, options.service_port, admin_key) as service_url:
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                api = _Api(session, service_url, admin_key)
                secrets_by_name = {"partner": await api.partner(PARTNER_ID, urls["partner"])}
                tokens: dict[str, str] = {}
                for client in options.clients:
                    partner = PARTNER_ID if client in partner_clients else None
                    tokens[client], secrets_by_name[client] = await api.token(
                        client, urls[client], partner
                    )
                targets = {
                    name: _target(name, paths[name], secrets_by_name[name], index, options)
                    for index, name in enumerate(paths)
                }
                server = uvicorn.Server(
                    uvicorn.Config(
                        _receiver_app(list(targets.values())),
                        log_level="critical",
                        access_log=False,
                        lifespan="on",
                    )
                )
                server_task = asyncio.create_task(server.serve(sockets=[receiver_listening]))
                while not server.started:
                    if server_task.done():
                        raise RuntimeError(f"the receivers could not start on {receiver_base}")
                    await asyncio.sleep(0.01)
                on_ready(
                    Endpoints(
                        service=service_url, receivers=urls, admin_key=admin_key, tokens=tokens
                    )
                )
                progress.deliveries_total = sum(
                    2 if update.dhan_client_id in partner_clients else 1 for update in stream
                )
                progress.started = time.monotonic()
                watcher = asyncio.create_task(_watch(api, targets.values(), progress, on_progress))
                try:
                    await _submit(api, stream, tokens, targets, partner_clients, options, progress)
                    timed_out = not await _wait_delivered(targets.values(), progress, options)
                finally:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
                final_metrics = await api.metrics()
                progress.retried = int(final_metrics.get("dhan_postback_failed_attempts_total", 0))
                on_progress(progress)
                report = DemoReport(
                    targets=[_check(target) for target in targets.values()],
                    orders=len(orders),
                    updates=len(stream),
                    kinds=dict(Counter(order.kind.value for order in orders)),
                    retried=progress.retried,
                    chaos_injected=dict(
                        sum(
                            (t.chaos.injected for t in targets.values() if t.chaos),
                            Counter[str](),
                        )
                    ),
                    elapsed=time.monotonic() - started,
                    timed_out=timed_out,
                )
                if keep_running is not None:
                    await keep_running(report)
                return report
        finally:
            if server is not None and server_task is not None:
                server.should_exit = True
                await server_task
            receiver_listening.close()


def _target(name: str, path: str, secret: str, index: int, options: DemoOptions) -> _Target:
    receiver = Receiver(secret=secret, db=options.directory / f"receiver-{name}.db")
    chaos = None
    if options.chaos > 0:
        chaos = ChaosMiddleware(
            receiver, rate=options.chaos, hold=_CHAOS_HOLD, seed=options.seed + index
        )
    return _Target(name, path, secret, receiver, chaos)


async def _submit(
    api: _Api,
    stream: Sequence[OrderUpdate],
    tokens: dict[str, str],
    targets: dict[str, _Target],
    partner_clients: set[str],
    options: DemoOptions,
    progress: Progress,
) -> None:
    """Submit in stream order, in batches of consecutive updates of one client, paced."""
    interval = 1.0 / options.rate if options.rate > 0 else 0.0
    begin = time.monotonic()
    index = 0
    while index < len(stream):
        client = stream[index].dhan_client_id
        batch = [stream[index]]
        limit = _BATCH if interval == 0 else max(1, min(_BATCH, int(options.rate / 20)))
        while (
            index + len(batch) < len(stream)
            and len(batch) < limit
            and stream[index + len(batch)].dhan_client_id == client
        ):
            batch.append(stream[index + len(batch)])
        sent_at = time.time()
        ids = await api.submit(tokens[client], batch)
        per_update = 2 if client in partner_clients else 1
        if len(ids) != per_update * len(batch):
            raise RuntimeError(f"expected {per_update * len(batch)} delivery ids, got {len(ids)}")
        for number, update in enumerate(batch):
            own, *partner = ids[number * per_update : (number + 1) * per_update]
            _expect(targets[client], own, update, sent_at)
            if partner:
                _expect(targets["partner"], partner[0], update, sent_at)
        index += len(batch)
        progress.submitted = index
        if interval:
            ahead = begin + index * interval - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)


def _expect(target: _Target, delivery_id: str, update: OrderUpdate, sent_at: float) -> None:
    target.expected.append((delivery_id, update))
    target.submitted_at[delivery_id] = sent_at


def _delivered(targets: Any) -> int:
    return sum(target.receiver.stats().unique for target in targets)


async def _watch(
    api: _Api, targets: Any, progress: Progress, on_progress: Callable[[Progress], None]
) -> None:
    while True:
        progress.delivered = _delivered(targets)
        with contextlib.suppress(aiohttp.ClientError, ValueError):
            metrics = await api.metrics()
            progress.retried = int(metrics.get("dhan_postback_failed_attempts_total", 0))
            progress.in_flight = int(metrics.get("dhan_postback_in_flight", 0))
        on_progress(progress)
        await asyncio.sleep(0.2)


async def _wait_delivered(targets: Any, progress: Progress, options: DemoOptions) -> bool:
    deadline = time.monotonic() + options.deadline
    while time.monotonic() < deadline:
        progress.delivered = _delivered(targets)
        if progress.delivered >= progress.deliveries_total:
            return True
        await asyncio.sleep(0.05)
    return False


def kinds_covered(report: DemoReport) -> list[str]:
    """The order kinds the run exercised, in the simulator's order."""
    return [kind.value for kind in OrderKind if kind.value in report.kinds]
