"""``dhan-postback send URL``: one realistic postback to any receiver, to test it.

The body is a simulated order update in the broker's exact format. With ``--secret`` it is
signed the way the postback service signs (Standard Webhooks); without, it is sent bare, as
the broker itself sends it. The URL goes through the same policy as a saved Postback URL.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from dataclasses import dataclass

import aiohttp
import click
from rich.console import Console
from rich.table import Table

from .._version import __version__
from ..errors import URLRefused
from ..payload import OrderStatus, OrderUpdate, dumps
from ..signing import Signer
from ..simulator import OrderKind, Simulator
from ..urlpolicy import GuardedResolver, check_url, loopback_warning, refusal_from
from ._secrets import secret_file_option

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
@click.option(
    "--secret",
    envvar="DHAN_POSTBACK_SEND_SECRET",
    show_envvar=True,
    help="whsec_ secret to sign with (prefer the variable or --secret-file).",
)
@secret_file_option("secret", "--secret-file", envvar="DHAN_POSTBACK_SEND_SECRET_FILE")
@click.option(
    "--status",
    type=click.Choice([status.value for status in OrderStatus]),
    default=OrderStatus.TRADED.value,
    show_default=True,
    help="Order status of the update sent.",
)
@click.option("--client-id", default=None, help="dhanClientId to put in the update.")
@click.option("--seed", default=1, show_default=True, help="Simulator seed (which order).")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for a reply.")
@click.option(
    "--allow-loopback",
    is_flag=True,
    envvar="DHAN_POSTBACK_ALLOW_LOOPBACK",
    help="Sandbox: allow a loopback URL (the broker refuses them).",
)
def send(
    url: str,
    secret: str | None,
    status: str,
    client_id: str | None,
    seed: int,
    timeout: float,
    allow_loopback: bool,
) -> None:
    """Send one realistic postback to URL and show what the receiver answered."""
    console = Console(stderr=True)
    try:
        checked = check_url(url, allow_loopback=allow_loopback)
    except URLRefused as refusal:
        console.print(f"[red]refused:[/red] {refusal.message}")
        sys.exit(2)
    if allow_loopback:
        console.print(f"[yellow]{loopback_warning()}[/yellow]")
    update = sample_update(OrderStatus(status), seed=seed, client_id=client_id)
    body = dumps(update)
    try:
        result = asyncio.run(
            post_once(
                checked, body, secret=secret, allow_loopback=allow_loopback, reply_within=timeout
            )
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        guard_refusal = refusal_from(exc)
        reason = guard_refusal.message if guard_refusal else f"{type(exc).__name__}: {exc}"
        console.print(f"[red]not delivered:[/red] {reason}")
        sys.exit(1)
    table = Table(title=f"postback to {checked}", show_header=False)
    table.add_row("order", f"{update.order_id} {update.order_status} ({update.order_type})")
    table.add_row("webhook-id", result.message_id)
    table.add_row("signed", "yes (Standard Webhooks v1)" if secret else "no (as the broker)")
    table.add_row("response", str(result.status))
    table.add_row("body", result.body[:200].decode("utf-8", "replace") or "(empty)")
    table.add_row("time", f"{result.elapsed_ms:.1f} ms")
    Console().print(table)
    ok = 200 <= result.status < 300
    console.print("[green]delivered[/green]" if ok else "[red]not accepted[/red]")
    sys.exit(0 if ok else 1)
