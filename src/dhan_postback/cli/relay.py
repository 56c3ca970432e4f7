"""``dhan-postback relay``: a Dhan account's live order updates, delivered as postbacks.

The relay logs in to the broker's order-update websocket and hands every update to a postback
service: a running one (``--service-url`` with that service's access token), or, with
``--postback-url``, one embedded in this process (its outbox in ``--service-db``, tuned by the
same ``DHAN_POSTBACK_*`` settings as ``serve``). Secrets come from flags or, better (flags show
in ``ps``), from ``DHAN_POSTBACK_RELAY_*`` variables; none is ever printed or logged. The
embedded service signs postbacks with ``--signing-secret``, or with a secret it generates once
and keeps in a file next to ``--db`` (readable by the owner only).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import structlog
from pydantic import SecretStr
from rich.console import Console
from rich.live import Live
from rich.text import Text

from ..errors import URLRefused
from ..logs import configure_logging
from ..relay import (
    Backoff,
    EmbeddedService,
    HttpIngest,
    Login,
    OrderUpdateStream,
    Relay,
    RelayLog,
    RelayStatus,
    Sink,
    SinkUnusable,
)
from ..settings import DISPATCHER_FIELDS, RelaySettings, ServiceSettings
from ..signing import generate_secret
from ..urlpolicy import check_url, loopback_warning
from .options import settings_options
from .running import run

__all__ = [
    "EMBEDDED_SERVICE_FIELDS",
    "RelayOptions",
    "relay",
    "render_status",
    "run_relay",
    "signing_secret_beside",
]

_ENV = "DHAN_POSTBACK_RELAY_"

EMBEDDED_SERVICE_FIELDS: tuple[str, ...] = tuple(f for f in DISPATCHER_FIELDS if f != "db")
"""Service settings that tune the embedded service (its database is ``--service-db``)."""

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RelayOptions:
    """Everything ``relay`` needs, checked; secrets live only in ``login`` and ``sink``."""

    login: Login
    ws_url: str
    db: str
    idle_timeout: float | None
    ping_interval: float
    ping_timeout: float
    backoff_cap: float


@click.command()
@settings_options(RelaySettings)
@settings_options(ServiceSettings, only=EMBEDDED_SERVICE_FIELDS, param="service")
def relay(settings: RelaySettings, service: ServiceSettings) -> None:
    """Relay a Dhan account's live order updates to its Postback URL, as postbacks.

    Either to a running postback service (--service-url, --service-token), or through one
    embedded here (--postback-url), tuned by the same settings as `serve`. SIGTERM or Ctrl-C
    stops it; what was not yet handed on stays in --db for the next run.

    \b
    Examples:
      DHAN_POSTBACK_RELAY_ACCESS_TOKEN=... dhan-postback relay --client-id 1000000001 \
        --postback-url https://example.com/postback
      dhan-postback relay --client-id 1000000001 --service-url http://127.0.0.1:8000 \
        --service-token ...
    """
    ws_url = settings.ws_url
    if not ws_url.startswith(("wss://", "ws://")):
        raise click.UsageError("--ws-url must start with wss:// (or ws:// for a local test)")
    login = _login(
        settings.client_id,
        _reveal(settings.access_token),
        settings.partner_id,
        _reveal(settings.partner_secret),
    )
    db = settings.db
    if settings.service_url:
        if settings.postback_url:
            raise click.UsageError(
                "--postback-url is for the embedded service; a running service delivers to "
                "the URL saved with --service-token"
            )
        sink: Sink = _http_sink(settings.service_url, _reveal(settings.service_token))
    elif settings.postback_url:
        sink = _embedded_sink(
            settings.postback_url,
            _reveal(settings.signing_secret),
            settings.service_db,
            settings.service_port,
            db,
            service,
        )
    else:
        raise click.UsageError(
            "give --postback-url (deliver through a service embedded here) or --service-url "
            "(hand updates to a running service)"
        )
    options = RelayOptions(
        login=login,
        ws_url=ws_url,
        db=db,
        idle_timeout=settings.idle_timeout or None,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        backoff_cap=settings.backoff_cap,
    )
    sys.exit(run(run_relay(options, sink, show_status=sys.stdout.isatty())))


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def _login(
    client_id: str | None,
    access_token: str | None,
    partner_id: str | None,
    partner_secret: str | None,
) -> Login:
    if partner_id or partner_secret:
        if not (partner_id and partner_secret):
            raise click.UsageError("a partner login needs both --partner-id and --partner-secret")
        return Login.partner(partner_id, partner_secret)
    if not (client_id and access_token):
        raise click.UsageError(
            f"give --client-id and --access-token (or {_ENV}CLIENT_ID and {_ENV}ACCESS_TOKEN), "
            "or a partner login"
        )
    return Login.individual(client_id, access_token)


def _http_sink(service_url: str, service_token: str | None) -> HttpIngest:
    if not service_token:
        raise click.UsageError(f"--service-url needs --service-token ({_ENV}SERVICE_TOKEN)")
    try:
        return HttpIngest(service_url, service_token)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _embedded_sink(
    postback_url: str,
    signing_secret: str | None,
    service_db: str | None,
    service_port: int,
    db: str,
    service: ServiceSettings,
) -> EmbeddedService:
    settings = service.model_copy(update={"db": service_db or _outbox_beside(db)})
    try:
        check_url(postback_url, allow_loopback=settings.allow_loopback)
    except URLRefused as refusal:
        raise click.UsageError(f"--postback-url refused: {refusal.message}") from None
    secret, where = (signing_secret, "given") if signing_secret else signing_secret_beside(db)
    try:
        sink = EmbeddedService(postback_url, secret, settings=settings, port=service_port)
    except ValueError as exc:
        raise click.UsageError(f"--signing-secret: {exc}") from None
    if settings.allow_loopback:
        click.echo(f"SANDBOX: {loopback_warning()}", err=True)
    click.echo(f"postbacks to {sink.postback_url} are signed with the secret {where}", err=True)
    return sink


def _outbox_beside(db: str) -> str:
    path = Path(db)
    return f"sqlite:///{path.with_name(path.stem + '-outbox.db')}"


def signing_secret_beside(db: str) -> tuple[str, str]:
    """The signing secret kept beside ``db`` (made on first use, owner-only), and where."""
    path = Path(db).with_suffix(".whsec")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(generate_secret() + "\n")
    return path.read_text().strip(), f"in {path}"


async def run_relay(options: RelayOptions, sink: Sink, *, show_status: bool) -> int:
    """Run until SIGINT/SIGTERM (exit code 0) or until the service refuses the relay (1)."""
    stream = OrderUpdateStream(
        options.login,
        url=options.ws_url,
        idle_timeout=options.idle_timeout,
        ping_interval=options.ping_interval,
        ping_timeout=options.ping_timeout,
        backoff=Backoff(base=0.5, cap=options.backoff_cap),
    )
    async with RelayLog(options.db) as relay_log:
        worker = Relay(stream, sink, relay_log)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        try:
            refused = await _run_showing(worker, show_status)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        if refused:
            log.error("relay.stopped", reason=refused)
        status = worker.status()
        log.info(
            "relay.summary",
            relayed=status.relayed,
            duplicates=status.duplicates,
            dead_letters=status.dead_letters,
            pending=status.pending,
            db=options.db,
        )
    return 1 if refused else 0


async def _run_showing(worker: Relay, show_status: bool) -> str | None:
    """Run the relay, with the status line on a terminal; why the service refused it, or
    None when it was stopped.

    When standard error is the same terminal, log lines are printed above the status line;
    otherwise they go to standard error as the other commands write them (JSON lines).
    """
    log_above_status = show_status and sys.stderr.isatty()
    if log_above_status:
        _log_to_current_stderr()
    else:
        configure_logging()
    try:
        if show_status:
            with Live(
                render_status(worker.status()),
                console=Console(),
                refresh_per_second=2,
                redirect_stderr=log_above_status,
            ) as live:
                await _with_status(worker, live)
        else:
            await worker.run()
    except SinkUnusable as exc:
        return exc.message
    return None


async def _with_status(worker: Relay, live: Live) -> None:
    task = asyncio.create_task(worker.run())
    while not task.done():
        live.update(render_status(worker.status()))
        await asyncio.wait({task}, timeout=0.5)
    live.update(render_status(worker.status()))
    task.result()


def render_status(status: RelayStatus, now: float | None = None) -> Text:
    """One line: link, counts, the last update, and what is wrong if anything is."""
    line = Text()
    if status.connected:
        line.append("● connected", style="bold green")
    else:
        line.append("○ disconnected", style="bold red")
        if status.link_error:
            line.append(f" ({status.link_error})", style="red")
    line.append(f"  relayed {status.relayed}")
    line.append(f"  duplicates skipped {status.duplicates}")
    if status.pending:
        line.append(f"  waiting {status.pending}", style="yellow")
    if status.dead_letters:
        line.append(f"  dead letters {status.dead_letters}", style="red")
    if status.last_update_time:
        ago = ""
        if status.last_relayed_at is not None:
            ago = f", {int((now or time.time()) - status.last_relayed_at)}s ago"
        line.append(f"  last update {status.last_update_time}{ago}")
    if status.sink_error:
        line.append(f"  service: {status.sink_error}", style="yellow")
    return line


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written: rich's proxy while the status line
    is shown (the line goes above it), the terminal again afterwards."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _log_to_current_stderr() -> None:
    """Readable, coloured ``key=value`` lines for a person watching the terminal."""
    stream: Any = _CurrentStderr()
    logging.basicConfig(level=logging.INFO, stream=stream, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=True),
        ],
        logger_factory=structlog.PrintLoggerFactory(stream),
    )
