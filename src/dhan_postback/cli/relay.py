"""``dhan-postback relay``: a Dhan account's live order updates, delivered as postbacks.

The relay logs in to the broker's order-update websocket and hands every update to a postback
service: a running one (``--service-url`` with that service's access token), or, with
``--postback-url``, one embedded in this process. Secrets come from flags or, better (flags
show in ``ps``), from ``DHAN_POSTBACK_RELAY_*`` variables; none is ever printed or logged.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

import click
import structlog
from rich.console import Console
from rich.live import Live
from rich.text import Text

from ..durations import parse_duration
from ..errors import URLRefused
from ..relay import (
    DEFAULT_WS_URL,
    Backoff,
    HttpIngest,
    Login,
    OrderUpdateStream,
    Relay,
    RelayLog,
    RelayStatus,
    Sink,
    SinkUnusable,
)
from ..urlpolicy import check_url

__all__ = ["RelayOptions", "relay", "render_status", "run_relay"]

_ENV = "DHAN_POSTBACK_RELAY_"

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


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


_F = TypeVar("_F", bound=Callable[..., Any])


def _option(name: str, env: str, help: str, **kwargs: Any) -> Callable[[_F], _F]:
    """A click option that may also come from ``DHAN_POSTBACK_RELAY_<env>``."""
    return click.option(name, envvar=f"{_ENV}{env}", show_envvar=True, help=help, **kwargs)


@click.command()
@_option("--client-id", "CLIENT_ID", "Dhan client id of the account to listen to.")
@_option(
    "--access-token",
    "ACCESS_TOKEN",
    "Dhan access token of that account (prefer the variable: flags show in `ps`).",
)
@_option("--partner-id", "PARTNER_ID", "Log in as a partner instead (all its users' orders).")
@_option("--partner-secret", "PARTNER_SECRET", "The partner's secret.")
@_option(
    "--postback-url",
    "POSTBACK_URL",
    "Deliver to this URL through a postback service embedded in this process.",
)
@click.option(
    "--allow-loopback",
    is_flag=True,
    envvar="DHAN_POSTBACK_ALLOW_LOOPBACK",
    show_envvar=True,
    help="Sandbox: allow a loopback Postback URL (the broker refuses them).",
)
@_option(
    "--service-url",
    "SERVICE_URL",
    "Hand updates to a running postback service at this URL instead of embedding one.",
)
@_option("--service-token", "SERVICE_TOKEN", "That service's access token for this client.")
@_option(
    "--ws-url",
    "WS_URL",
    "The broker's order-update websocket.",
    default=DEFAULT_WS_URL,
    show_default=True,
)
@_option(
    "--db",
    "DB",
    "The relay's own SQLite log (de-duplication, unsent updates, dead letters).",
    default="relay.db",
    show_default=True,
)
@_option(
    "--idle-timeout",
    "IDLE_TIMEOUT",
    "Redial when no frame arrives for this long (0: never).",
    default="15m",
    show_default=True,
    callback=_duration,
)
@_option(
    "--ping-interval",
    "PING_INTERVAL",
    "Send a websocket ping this often.",
    default="20s",
    show_default=True,
    callback=_duration,
)
@_option(
    "--ping-timeout",
    "PING_TIMEOUT",
    "Redial when a ping gets no answer within this.",
    default="20s",
    show_default=True,
    callback=_duration,
)
@_option(
    "--backoff-cap",
    "BACKOFF_CAP",
    "Longest wait between two redials.",
    default="30s",
    show_default=True,
    callback=_duration,
)
def relay(
    client_id: str | None,
    access_token: str | None,
    partner_id: str | None,
    partner_secret: str | None,
    postback_url: str | None,
    allow_loopback: bool,
    service_url: str | None,
    service_token: str | None,
    ws_url: str,
    db: str,
    idle_timeout: float | None,
    ping_interval: float,
    ping_timeout: float,
    backoff_cap: float,
) -> None:
    """Relay a Dhan account's live order updates to its Postback URL, as postbacks."""
    if not ws_url.startswith(("wss://", "ws://")):
        raise click.UsageError("--ws-url must start with wss:// (or ws:// for a local test)")
    login = _login(client_id, access_token, partner_id, partner_secret)
    sink = _sink(postback_url, allow_loopback, service_url, service_token)
    options = RelayOptions(
        login=login,
        ws_url=ws_url,
        db=db,
        idle_timeout=idle_timeout or None,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        backoff_cap=backoff_cap,
    )
    sys.exit(asyncio.run(run_relay(options, sink, show_status=sys.stdout.isatty())))


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


def _sink(
    postback_url: str | None,
    allow_loopback: bool,
    service_url: str | None,
    service_token: str | None,
) -> Sink:
    if service_url:
        if postback_url:
            raise click.UsageError(
                "--postback-url is for the embedded service; a running service delivers to "
                "the URL saved with --service-token"
            )
        if not service_token:
            raise click.UsageError(f"--service-url needs --service-token ({_ENV}SERVICE_TOKEN)")
        try:
            return HttpIngest(service_url, service_token)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    if not postback_url:
        raise click.UsageError("give --postback-url (embedded service) or --service-url")
    try:
        check_url(postback_url, allow_loopback=allow_loopback)
    except URLRefused as refusal:
        raise click.UsageError(f"--postback-url refused: {refusal.message}") from None
    raise click.UsageError(
        "the embedded postback service is not in this build yet; run `dhan-postback serve` "
        "and pass --service-url and --service-token"
    )


async def run_relay(options: RelayOptions, sink: Sink, *, show_status: bool) -> int:
    """Run until SIGINT/SIGTERM (exit code 0) or until the service refuses the relay (1)."""
    console = Console()
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
            if show_status:
                with Live(
                    render_status(worker.status()),
                    console=console,
                    refresh_per_second=2,
                    redirect_stderr=True,
                    transient=False,
                ) as live:
                    _configure_logging(sys.stderr, colors=True)
                    await _with_status(worker, live)
            else:
                _configure_logging(sys.stderr, colors=False)
                await worker.run()
        except SinkUnusable as exc:
            log.error("relay.stopped", reason=exc.message)
            return 1
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            status = worker.status()
            log.info(
                "relay.summary",
                relayed=status.relayed,
                duplicates=status.duplicates,
                dead_letters=status.dead_letters,
                pending=status.pending,
                db=options.db,
            )
    return 0


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


def _configure_logging(stream: TextIO, *, colors: bool) -> None:
    """structlog to ``stream`` (standard error, or rich's proxy above the status line)."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=colors),
        ],
        logger_factory=structlog.PrintLoggerFactory(stream),
    )
