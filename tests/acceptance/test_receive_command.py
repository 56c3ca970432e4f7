"""``dhan-postback receive`` as a real process: durable before 2xx, even under ``kill -9``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import httpx

from dhan_postback import signing
from dhan_postback.receiver import ReceiverStore
from tests.helpers.processes import ServerProcess
from tests.helpers.servers import free_port
from tests.helpers.updates import signed, update_body

SECRET = signing.generate_secret()


def receiver_process(db: Path, port: int, *extra: str) -> ServerProcess:
    return ServerProcess(
        ["receive", "--port", str(port), "--db", str(db), "--quiet", *extra],
        env={"DHAN_POSTBACK_RECEIVER_SECRET": SECRET},
        health_url=f"http://127.0.0.1:{port}/healthz",
    )


def orders_command(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dhan_postback", "orders", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def test_an_update_acknowledged_just_before_kill_9_is_there_after_restart(
    tmp_path: Path,
) -> None:
    db, port = tmp_path / "receiver.db", free_port()
    body = update_body("800001", "TRADED", filled_qty=10)
    process = receiver_process(db, port).start()
    response = httpx.post(
        f"http://127.0.0.1:{port}/", content=body, headers=signed(SECRET, body, "msg_k9")
    )
    process.kill()  # SIGKILL, right after the 2xx
    assert response.status_code == 200

    with receiver_process(db, port):
        again = httpx.post(
            f"http://127.0.0.1:{port}/", content=body, headers=signed(SECRET, body, "msg_k9")
        )
        assert again.json() == {"status": "duplicate"}
    assert "800001" in orders_command("--db", str(db), "--status", "TRADED")


def test_every_update_acknowledged_in_a_burst_survives_kill_9(tmp_path: Path) -> None:
    db, port = tmp_path / "receiver.db", free_port()
    process = receiver_process(db, port).start()
    acknowledged = asyncio.run(_burst_then_kill(port, process, count=300, kill_after=150))
    assert len(acknowledged) >= 150
    store = ReceiverStore(db)
    try:
        stored = {update.order_id for update in store.history_all()}
    finally:
        store.close()
    assert acknowledged <= stored


async def _burst_then_kill(
    port: int, process: ServerProcess, *, count: int, kill_after: int
) -> set[str]:
    acknowledged: set[str] = set()
    killed = asyncio.Event()

    async def send(session: aiohttp.ClientSession, index: int) -> None:
        order_id = f"9{index:05d}"
        body = update_body(order_id)
        try:
            async with session.post(
                f"http://127.0.0.1:{port}/", data=body, headers=signed(SECRET, body, order_id)
            ) as response:
                if response.status == 200:
                    acknowledged.add(order_id)
        except aiohttp.ClientError:
            return
        if len(acknowledged) >= kill_after and not killed.is_set():
            killed.set()
            process.kill()

    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(send(session, i) for i in range(count)))
    process.kill()
    return acknowledged


def test_orders_prints_the_book_filtered_by_status_and_client(tmp_path: Path) -> None:
    db, port = tmp_path / "receiver.db", free_port()
    with receiver_process(db, port):
        for order_id, status, client in (
            ("1", "TRADED", "A"),
            ("2", "PENDING", "A"),
            ("3", "TRADED", "B"),
        ):
            body = update_body(order_id, status, client_id=client)
            httpx.post(
                f"http://127.0.0.1:{port}/", content=body, headers=signed(SECRET, body, order_id)
            )
    traded_by_a = orders_command("--db", str(db), "--status", "traded", "--client", "A")
    assert "TRADED" in traded_by_a and "PENDING" not in traded_by_a
    assert "1 of 3 orders" in traded_by_a


def test_orders_refuses_a_missing_database(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dhan_postback", "orders", "--db", str(tmp_path / "none.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "no receiver database" in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_receive_refuses_a_malformed_secret_without_echoing_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dhan_postback", "receive", "--secret", "whsec_%%%bad%%%"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "whsec_" in result.stderr and "%%%bad%%%" not in result.stderr


def test_a_comma_separated_secret_variable_accepts_a_postback_signed_by_any_of_them(
    tmp_path: Path,
) -> None:
    old, new, stranger = (signing.generate_secret() for _ in range(3))
    port = free_port()
    process = ServerProcess(
        ["receive", "--port", str(port), "--db", str(tmp_path / "r.db"), "--quiet"],
        env={"DHAN_POSTBACK_RECEIVER_SECRET": f"{new},{old}"},
        health_url=f"http://127.0.0.1:{port}/healthz",
    )
    answers = []
    with process:
        for number, secret in enumerate((old, new, stranger)):
            body = update_body(f"81000{number}", "TRADED", filled_qty=1)
            response = httpx.post(
                f"http://127.0.0.1:{port}/",
                content=body,
                headers=signed(secret, body, f"msg_rot{number}"),
            )
            answers.append(response.status_code)
    assert answers == [200, 200, 401]
