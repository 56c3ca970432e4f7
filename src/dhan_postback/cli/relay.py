"""``dhan-postback relay``: a Dhan account's live order updates, delivered as postbacks.

The relay logs in to the broker's order-update websocket and hands every update to a postback
service: a running one (``--service-url`` with that service's access token), or, with
``--postback-url``, one embedded in this process (its outbox in ``--service-db``, tuned by the
same ``DHAN_POSTBACK_*`` settings as ``serve``). Secrets come from flags or, better (flags show
in ``ps``), from ``DHAN_POSTBACK_RELAY_*`` variables; none is ever printed or logged. The
embedded service signs postbacks with ``--signing-secret``, or with a secret it generates once
and keeps in a file next to ``--db`` (readable by the owner only).

After every login and every ``--reconcile-interval`` the relay reads the broker's order book
(``--api-url``) and relays what the websocket missed. Exit status: 0 when stopped by SIGINT or
SIGTERM, 1 when the postback service refuses the relay, 3 when the broker refuses the access
token (expired or wrong), with one line saying how to pass a new one.
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
    DEFAULT_API_URL,
    Backoff,
    EmbeddedService,
    HttpIngest,
    Login,
    OrderBook,
    OrderUpdateStream,
    Reconciler,
    Relay,
    RelayLog,
    RelayStatus,
    Sink,
    SinkUnusable,
    TokenRefused,
)
from ..settings import DISPATCHER_FIELDS, RelaySettings, ServiceSettings
from ..signing import generate_secret
from ..urlpolicy import check_url, loopback_warning
from .options import settings_options
from .running import run

__all__ = [
    "EMBEDDED_SERVICE_FIELDS",
    "EXIT_TOKEN_REFUSED",
    "RelayOptions",
    "relay",
    "render_status",
    "run_relay",
    "signing_secret_beside",
    "token_refused_message",
]

_ENV = "DHAN_POSTBACK_RELAY_"

EMBEDDED_SERVICE_FIELDS: tuple[str, ...] = tuple(f for f in DISPATCHER_FIELDS if f != "db")
"""Service settings that tune the embedded service (its database is ``--service-db``)."""

EXIT_TOKEN_REFUSED = 3
"""The exit status when the broker refuses the access token: restarting will not help."""

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
    api_url: str = DEFAULT_API_URL
    reconcile_interval: float | None = 60.0


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
    api_url = settings.api_url
    if not api_url.startswith(("https://", "http://")):
        raise click.UsageError("--api-url must start with https:// (or http:// for a local test)")
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
        api_url=api_url,
        reconcile_interval=settings.reconcile_interval or None,
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
    """Run until SIGINT/SIGTERM (exit code 0), until the service refuses the relay (1) or
    until the broker refuses the access token (3)."""
    reconciler = _reconciler(options)
    stream = OrderUpdateStream(
        options.login,
        url=options.ws_url,
        idle_timeout=options.idle_timeout,
        ping_interval=options.ping_interval,
        ping_timeout=options.ping_timeout,
        backoff=Backoff(base=0.5, cap=options.backoff_cap),
        on_login=reconciler.logged_in if reconciler else None,
    )
    async with RelayLog(options.db) as relay_log:
        worker = Relay(stream, sink, relay_log, reconciler=reconciler)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        try:
            outcome = await _run_showing(worker, show_status)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        if outcome is not None:
            log.error("relay.stopped", reason=outcome.message)
        status = worker.status()
        log.info(
            "relay.summary",
            relayed=status.relayed,
            reconciled=status.reconciled,
            duplicates=status.duplicates,
            stale=status.stale,
            dead_letters=status.dead_letters,
            pending=status.pending,
            db=options.db,
        )
    if isinstance(outcome, TokenRefused):
        click.echo(f"Error: {token_refused_message(options.login, outcome)}", err=True)
        return EXIT_TOKEN_REFUSED
    return 1 if outcome else 0


def _reconciler(options: RelayOptions) -> Reconciler | None:
    """The order-book reconciler, unless it is turned off or the login cannot read the book
    (the order book needs an account's access token; a partner login has none)."""
    if options.reconcile_interval is None:
        log.info("relay.reconcile.off", reason="--reconcile-interval 0")
        return None
    login = options.login
    if login.user_type != "SELF" or login.token is None:
        log.warning(
            "relay.reconcile.off", reason="a partner login has no access token for the order book"
        )
        return None
    book = OrderBook(options.api_url, login.client_id, login.token)
    return Reconciler(book, interval=options.reconcile_interval)


def token_refused_message(login: Login, refusal: TokenRefused) -> str:
    """One line: what the broker refused, and how to pass a new credential."""
    if login.user_type == "PARTNER":
        return (
            f"the broker refused the partner login of {login.client_id} ({refusal.message}); "
            f"check --partner-id and --partner-secret ({_ENV}PARTNER_SECRET), then start the "
            "relay again"
        )
    return (
        f"the broker refused the access token of client {login.client_id}: it expired or is "
        f"wrong ({refusal.message}); generate a new one on web.dhan.co and pass it with "
        f"--access-token or {_ENV}ACCESS_TOKEN, then start the relay again"
    )


async def _run_showing(worker: Relay, show_status: bool) -> SinkUnusable | TokenRefused | None:
    """Run the relay, with the status line on a terminal; the refusal (of the service or the
    broker) that ended it, or None when it was stopped.

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
    except (SinkUnusable, TokenRefused) as exc:
        return exc
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
    if status.reconciled:
        line.append(f" ({status.reconciled} from the order book)")
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
    if status.reconcile_error:
        line.append(f"  order book: {status.reconcile_error}", style="yellow")
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
