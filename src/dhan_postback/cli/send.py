"""``dhan-postback send URL``: one realistic postback to any receiver, to test it.

The body is a simulated order update in the broker's exact format. With ``--secret`` it is
signed the way the postback service signs (Standard Webhooks); without, it is sent bare, as
the broker itself sends it. The URL goes through the same policy as a saved Postback URL.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass

import aiohttp
import click
from rich.console import Console
from rich.table import Table

from .._version import __version__
from ..durations import format_duration
from ..errors import URLRefused
from ..payload import OrderStatus, OrderUpdate, dumps
from ..settings import SendSettings
from ..signing import Signer
from ..simulator import OrderKind, Simulator
from ..urlpolicy import GuardedResolver, check_url, loopback_warning, refusal_from
from .options import settings_options
from .running import run

__all__ = ["SendResult", "post_once", "sample_update", "send"]

_KINDS_BY_STATUS: dict[OrderStatus, tuple[OrderKind, ...]] = {
    OrderStatus.TRADED: (OrderKind.MARKET, OrderKind.LIMIT),
    OrderStatus.CANCELLED: (OrderKind.CANCELLED,),
    OrderStatus.REJECTED: (OrderKind.REJECTED,),
    OrderStatus.EXPIRED: (OrderKind.LIMIT_EXPIRED,),
    OrderStatus.PENDING: (OrderKind.LIMIT, OrderKind.STOP_LOSS),
    OrderStatus.TRANSIT: (OrderKind.MARKET, OrderKind.LIMIT),
}


def sample_update(
    status: OrderStatus | str, *, seed: int, client_id: str | None = None
) -> OrderUpdate:
    """The first simulated update with ``status``, from an order kind that reaches it."""
    status = OrderStatus(status)
    clients = (client_id,) if client_id else ("1000000001",)
    simulator = Simulator(seed, clients=clients)
    for _ in range(50):
        for kind in _KINDS_BY_STATUS[status]:
            for update in simulator.order(kind).updates:
                if update.order_status is status:
                    return update
    raise LookupError(f"the simulator produced no {status} update")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class SendResult:
    status: int
    body: bytes
    elapsed_ms: float
    message_id: str


async def post_once(
    url: str,
    body: bytes,
    *,
    secret: str | None,
    allow_loopback: bool,
    reply_within: float,
) -> SendResult:
    """POST ``body`` once, signed when ``secret`` is given; redirects are not followed."""
    message_id = "msg_" + secrets.token_hex(12)
    headers = {"Content-Type": "application/json", "User-Agent": f"dhan-postback/{__version__}"}
    if secret:
        headers.update(Signer(secret).headers(message_id, body))
    guard = GuardedResolver(allow_loopback=allow_loopback)
    connector = aiohttp.TCPConnector(**guard.guard_connector_kwargs())
    client_timeout = aiohttp.ClientTimeout(total=reply_within)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        started = time.perf_counter()
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as reply:
            content = await reply.read()
        elapsed = (time.perf_counter() - started) * 1000
    return SendResult(reply.status, content, elapsed, message_id)


@click.command()
@click.argument("url")
@settings_options(SendSettings)
def send(url: str, settings: SendSettings) -> None:
    """Send one realistic postback to URL and show what the receiver answered.

    \b
    Examples:
      dhan-postback send https://example.com/postback --status CANCELLED
      dhan-postback send http://127.0.0.1:8001/ --allow-loopback --secret whsec_...
    """
    console = Console(stderr=True)
    allow_loopback = settings.allow_loopback
    try:
        checked = check_url(url, allow_loopback=allow_loopback)
    except URLRefused as refusal:
        raise click.UsageError(_refusal(url, refusal, allow_loopback)) from None
    secret = settings.secret.get_secret_value() if settings.secret else None
    if secret:
        try:
            Signer(secret)
        except ValueError as exc:
            raise click.UsageError(f"--secret: {exc}") from None
    if allow_loopback:
        console.print(f"[yellow]{loopback_warning()}[/yellow]")
    update = sample_update(settings.status, seed=settings.seed, client_id=settings.client_id)
    body = dumps(update)
    try:
        result = run(
            post_once(
                checked,
                body,
                secret=secret,
                allow_loopback=allow_loopback,
                reply_within=settings.timeout,
            )
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        guard_refusal = refusal_from(exc)
        if guard_refusal is not None:
            reason = _refusal(url, guard_refusal, allow_loopback)
        elif isinstance(exc, aiohttp.ClientConnectorError):
            error = exc.os_error
            why = os.strerror(error.errno).lower() if error.errno else str(error)
            reason = f"cannot connect: {why}; is a receiver listening there?"
        elif isinstance(exc, TimeoutError):
            reason = f"no answer within {format_duration(settings.timeout)} (see --timeout)"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        raise click.ClickException(f"not delivered to {checked}: {reason}") from None
    # No terminal: no width to fit, so nothing is cut (the receiver's answer least of all).
    out = Console() if Console().is_terminal else Console(width=1000)
    table = Table(title=f"postback to {checked}", show_header=False)
    table.add_column(overflow="fold")
    table.add_column(overflow="fold")
    table.add_row("order", f"{update.order_id} {update.order_status} ({update.order_type})")
    table.add_row("webhook-id", result.message_id)
    table.add_row("signed", "yes (Standard Webhooks v1)" if secret else "no (as the broker)")
    table.add_row("response", str(result.status))
    table.add_row("body", result.body[:200].decode("utf-8", "replace") or "(empty)")
    table.add_row("time", f"{result.elapsed_ms:.1f} ms")
    out.print(table)
    if not 200 <= result.status < 300:
        answer = " ".join(result.body[:2000].decode("utf-8", "replace").split())
        raise click.ClickException(
            f"not accepted: {checked} answered {result.status}" + (f": {answer}" if answer else "")
        )
    console.print("[green]delivered[/green]")


def _refusal(url: str, refusal: URLRefused, allow_loopback: bool) -> str:
    """Why ``url`` is refused, and, when only the sandbox switch would allow it, that switch."""
    message = f"{url} refused: {refusal.message}"
    if not allow_loopback:
        try:
            check_url(url, allow_loopback=True)
        except URLRefused:
            return message
        return message + "; for a receiver on this machine, pass --allow-loopback"
    return message
