"""The receiver served by uvicorn on loopback, spoken to over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dhan_postback import signing
from dhan_postback.receiver import Postback, Receiver, ReceiverStore, parse_and_verify
from tests.helpers.servers import UvicornThread
from tests.helpers.updates import signed, update_body
from tests.helpers.waiting import wait_until

SECRET = signing.generate_secret()

Serve = Callable[..., tuple[Receiver, httpx.Client]]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start a receiver (``Receiver(**options)`` on a fresh file) and a client for it."""
    started: list[tuple[UvicornThread, httpx.Client]] = []

    def start(receiver: Receiver | None = None, **options: Any) -> tuple[Receiver, httpx.Client]:
        if receiver is None:
            options.setdefault("db", tmp_path / f"receiver{len(started)}.db")
            receiver = Receiver(**options)
        server = UvicornThread(receiver).start()
        client = httpx.Client(base_url=server.url, timeout=10)
        started.append((server, client))
        return receiver, client

    yield start
    for server, client in started:
        client.close()
        server.stop()


def post(
    client: httpx.Client, body: bytes, msg_id: str | None = None, path: str = "/"
) -> httpx.Response:
    headers = signed(SECRET, body, msg_id) if msg_id else {"content-type": "application/json"}
    return client.post(path, content=body, headers=headers)


# ------------------------------------------------------------------------- acceptance


def test_the_docs_example_is_accepted_and_stored(serve: Serve, docs_example: bytes) -> None:
    receiver, client = serve()
    response = client.post("/", content=docs_example)
    assert response.status_code == 200
    row = receiver.store.order("112111182198")
    assert row is not None
    assert (row.status, row.filled_qty, row.quantity) == ("PENDING", 1, 5)
    assert row.update.repaired


def test_a_signed_update_is_accepted(serve: Serve) -> None:
    receiver, client = serve(secret=SECRET)
    assert post(client, update_body("1"), "msg_1").json() == {"status": "accepted"}
    assert receiver.store.order("1") is not None


# ------------------------------------------------------------------------- refusals


def test_a_forged_signature_gets_401_in_the_broker_shape_and_nothing_is_stored(
    serve: Serve,
) -> None:
    receiver, client = serve(secret=SECRET)
    body = update_body("1")
    response = client.post("/", content=body, headers=signed(signing.generate_secret(), body, "m"))
    assert response.status_code == 401
    assert response.json()["errorCode"] == "DH-901"
    assert set(response.json()) == {"errorType", "errorCode", "errorMessage"}
    assert receiver.store.counts().updates == 0
    assert receiver.stats().rejected == 1


def test_an_unsigned_request_gets_401_when_a_secret_is_set(serve: Serve) -> None:
    receiver, client = serve(secret=SECRET)
    assert post(client, update_body("1")).status_code == 401
    assert receiver.store.counts().updates == 0


def test_a_stale_timestamp_gets_401_and_nothing_is_stored(serve: Serve) -> None:
    receiver, client = serve(secret=SECRET)
    body = update_body("1")
    headers = signed(SECRET, body, "m", timestamp=int(time.time()) - 600)
    response = client.post("/", content=body, headers=headers)
    assert response.status_code == 401
    assert "tolerance" in response.json()["errorMessage"]
    assert receiver.store.counts().updates == 0


def test_a_client_id_not_allowed_gets_403_and_nothing_is_stored(serve: Serve) -> None:
    receiver, client = serve(allowed_client_ids={"1000000003"})
    assert post(client, update_body("1", client_id="666")).status_code == 403
    assert post(client, update_body("2", client_id="1000000003")).status_code == 200
    assert [row.order_id for row in receiver.store.orders()] == ["2"]


def test_an_unreadable_body_gets_400_and_is_quarantined_without_secrets(serve: Serve) -> None:
    receiver, client = serve()
    response = client.post(
        "/", content=b"{not json", headers={"authorization": "Bearer hush", "x-trace": "t1"}
    )
    assert response.status_code == 400
    assert response.json()["errorCode"] == "DH-905"
    assert receiver.stats().quarantined == 1
    (entry,) = receiver.store.quarantined()
    assert entry.body_prefix == b"{not json"
    assert "not JSON" in entry.reason
    assert entry.headers["authorization"] == "[redacted]"
    assert entry.headers["x-trace"] == "t1"
    assert receiver.store.counts().updates == 0


def test_a_body_without_order_id_is_quarantined(serve: Serve) -> None:
    receiver, client = serve()
    assert client.post("/", content=b'{"orderStatus": "TRADED"}').status_code == 400
    assert receiver.store.counts().quarantined == 1


def test_a_body_over_the_size_limit_gets_413(serve: Serve) -> None:
    receiver, client = serve(max_body_size=1024)
    assert client.post("/", content=b"x" * 2048).status_code == 413
    assert receiver.store.counts().updates == 0


# ------------------------------------------------------------------------- routing


def test_healthz_answers_ok(serve: Serve) -> None:
    _, client = serve()
    assert client.get("/healthz").json() == {"status": "ok"}


def test_other_paths_get_404_and_other_methods_405(serve: Serve) -> None:
    _, client = serve()
    assert client.post("/elsewhere", content=update_body("1")).status_code == 404
    assert client.get("/").status_code == 405


def test_with_a_path_secret_only_that_path_accepts_postbacks(serve: Serve) -> None:
    receiver, client = serve(path_secret="s3cr3t-path")
    assert client.post("/", content=update_body("1")).status_code == 404
    assert client.post("/wrong", content=update_body("1")).status_code == 404
    assert client.post("/s3cr3t-path", content=update_body("1")).status_code == 200
    assert [row.order_id for row in receiver.store.orders()] == ["1"]


# ------------------------------------------------------------------------- de-duplication


def test_the_same_update_twice_is_stored_once_and_handled_once(serve: Serve) -> None:
    calls: list[str] = []
    receiver, client = serve(secret=SECRET)
    receiver.on_update(lambda postback: calls.append(postback.order_id))
    body = update_body("1", "TRADED", filled_qty=10)
    first = post(client, body, "msg_same")
    second = post(client, body, "msg_same")
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json() == {"status": "duplicate"}
    wait_until(lambda: receiver.store.counts().handlers_unfinished == 0)
    assert receiver.store.counts().updates == 1
    assert calls == ["1"]
    assert (receiver.stats().unique, receiver.stats().duplicates) == (1, 1)


def test_without_a_webhook_id_a_repeated_body_is_a_duplicate(serve: Serve) -> None:
    receiver, client = serve()
    body = update_body("1")
    assert post(client, body).json() == {"status": "accepted"}
    assert post(client, body).json() == {"status": "duplicate"}
    assert receiver.store.counts().updates == 1


# ------------------------------------------------------------------------- the order book


def test_updates_delivered_newest_first_leave_the_book_at_the_newest(serve: Serve) -> None:
    receiver, client = serve()
    lifecycle = [
        update_body("9", "TRANSIT", "2024-01-02 10:00:00"),
        update_body("9", "PENDING", "2024-01-02 10:00:00"),
        update_body("9", "PART_TRADED", "2024-01-02 10:00:01", 4),
        update_body("9", "PART_TRADED", "2024-01-02 10:00:01", 7),
        update_body("9", "TRADED", "2024-01-02 10:00:02", 10),
    ]
    for body in reversed(lifecycle):
        assert post(client, body).status_code == 200
    row = receiver.store.order("9")
    assert row is not None
    assert (row.status, row.filled_qty, row.update_time) == ("TRADED", 10, "2024-01-02 10:00:02")
    assert [u.status for u in receiver.store.history("9")] == [
        "TRADED",
        "PART_TRADED",
        "PART_TRADED",
        "PENDING",
        "TRANSIT",
    ]


def test_a_finished_order_never_reopens(serve: Serve) -> None:
    receiver, client = serve()
    post(client, update_body("5", "CANCELLED", "2024-01-02 10:00:05", 3))
    post(client, update_body("5", "PENDING", "2024-01-02 10:00:09", 3))  # a bogus later update
    post(client, update_body("5", "PART_TRADED", "2024-01-02 10:00:04", 3))
    row = receiver.store.order("5")
    assert row is not None and (row.status, row.filled_qty) == ("CANCELLED", 3)
    assert row.update_count == 3


def test_title_case_and_unknown_statuses_are_kept(serve: Serve) -> None:
    receiver, client = serve()
    post(client, update_body("1", "Traded", filled_qty=10))
    post(client, update_body("2", "TRIGGERED"))
    assert receiver.store.order("1").status == "TRADED"  # type: ignore[union-attr]
    assert receiver.store.order("2").status == "TRIGGERED"  # type: ignore[union-attr]


# ------------------------------------------------------------------------- handlers


def test_status_handlers_see_only_their_status_and_update_handlers_see_all(
    serve: Serve,
) -> None:
    receiver, client = serve()
    traded: list[str] = []
    everything: list[tuple[str, str | None]] = []

    @receiver.on("TRADED")
    def on_traded(postback: Postback) -> None:
        traded.append(postback.order_id)

    @receiver.on_update
    async def on_any(postback: Postback) -> None:
        everything.append((postback.order_id, postback.order_status))

    post(client, update_body("1", "PENDING"))
    post(client, update_body("1", "TRADED", "2024-01-02 10:00:01", 10))
    wait_until(lambda: len(everything) == 2)
    assert traded == ["1"]
    assert sorted(everything) == [("1", "PENDING"), ("1", "TRADED")]


def test_a_failing_handler_loses_nothing_and_is_retried_until_it_succeeds(serve: Serve) -> None:
    receiver, client = serve(handler_retry_delays=[0.05, 0.05, 0.05])
    attempts: list[str] = []

    @receiver.on("TRADED")
    def flaky(postback: Postback) -> None:
        attempts.append(postback.order_id)
        if len(attempts) < 3:
            raise RuntimeError("downstream is down")

    response = post(client, update_body("1", "TRADED", filled_qty=10))
    assert response.status_code == 200
    assert receiver.store.order("1") is not None
    wait_until(lambda: len(attempts) == 3 and not receiver.store.handler_failures())
    assert receiver.stats().handler_failures == 2


def test_a_handler_that_keeps_failing_is_given_up_and_stays_visible(serve: Serve) -> None:
    receiver, client = serve(handler_retry_delays=[0.01])

    @receiver.on_update
    def broken(postback: Postback) -> None:
        raise ValueError("always")

    post(client, update_body("1"))
    wait_until(lambda: any(f.dead for f in receiver.store.handler_failures()))
    (failure,) = receiver.store.handler_failures()
    assert failure.attempts == 2 and failure.last_error == "ValueError: always"


def test_a_slow_handler_does_not_delay_the_answer(serve: Serve) -> None:
    receiver, client = serve()
    release = threading.Event()
    receiver.on_update(lambda postback: release.wait(10) and None)
    response = post(client, update_body("1"))
    assert response.status_code == 200
    assert receiver.store.counts().handlers_unfinished == 1
    release.set()
    wait_until(lambda: receiver.store.counts().handlers_unfinished == 0)


def test_handler_retries_resume_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "restart.db"
    failing = [True]
    seen: list[str] = []

    def handler(postback: Postback) -> None:
        if failing[0]:
            raise RuntimeError("not yet")
        seen.append(postback.order_id)

    first = Receiver(db=db, handler_retry_delays=[3600])
    first.on_update(handler)
    with UvicornThread(first) as server:
        httpx.post(server.url + "/", content=update_body("1"))
        wait_until(lambda: len(first.store.handler_failures()) == 1)
    _make_retries_due(db)  # an hour passes while the receiver is down

    failing[0] = False
    second = Receiver(db=db, handler_retry_delays=[3600])
    second.on_update(handler)
    with UvicornThread(second):
        wait_until(lambda: seen == ["1"] and not second.store.handler_failures())


def _make_retries_due(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("UPDATE handler_failures SET next_at = 0")
    conn.commit()
    conn.close()


def test_updates_whose_handlers_never_ran_are_handled_after_a_restart(
    serve: Serve, tmp_path: Path
) -> None:
    db = tmp_path / "crash.db"
    first = ReceiverStore(db)
    first.start()
    postback = parse_and_verify({}, update_body("1"))
    first.record_sync(postback, handled=False)
    first.close()  # as if the process died before its handlers ran

    seen: list[str] = []
    second = Receiver(db=db)
    second.on_update(lambda postback: seen.append(postback.order_id))
    serve(second)
    wait_until(lambda: seen == ["1"] and second.store.counts().handlers_unfinished == 0)


def test_stats_count_what_happened(serve: Serve) -> None:
    receiver, client = serve(secret=SECRET)
    body = update_body("1")
    post(client, body, "a")
    post(client, body, "a")
    post(client, body)
    client.post("/", content=b"junk", headers=signed(SECRET, b"junk", "j"))
    stats = receiver.stats()
    assert (stats.received, stats.unique, stats.duplicates) == (4, 1, 1)
    assert (stats.rejected, stats.quarantined, stats.handler_failures) == (1, 1, 0)


# ------------------------------------------------------------------------- the raw ASGI path


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_every_method_but_post_on_the_postback_path_gets_405_in_the_broker_shape(
    serve: Serve, method: str
) -> None:
    receiver, client = serve()
    response = client.request(method, "/", content=update_body("1"))
    assert response.status_code == 405
    assert response.json()["errorCode"] == "DH-905"
    assert set(response.json()) == {"errorType", "errorCode", "errorMessage"}
    assert receiver.store.counts().updates == 0


def test_a_chunked_body_over_the_size_limit_gets_413_in_the_broker_shape(serve: Serve) -> None:
    receiver, client = serve(max_body_size=1024)
    chunks = (b"x" * 512 for _ in range(4))  # no content-length: the limit is counted as it comes
    response = client.post("/", content=chunks)
    assert response.status_code == 413
    assert set(response.json()) == {"errorType", "errorCode", "errorMessage"}
    assert receiver.store.counts().updates == 0


def test_a_sender_gone_before_its_whole_body_arrived_leaves_nothing_stored(
    serve: Serve,
) -> None:
    receiver, client = serve()
    host, port = client.base_url.host, client.base_url.port
    assert port is not None
    body = update_body("gone")
    with socket.create_connection((host, port)) as raw:
        head = f"POST / HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(body)}\r\n\r\n"
        raw.sendall(head.encode() + body[:100])
    assert post(client, update_body("kept")).status_code == 200
    assert [row.order_id for row in receiver.store.orders()] == ["kept"]


def test_every_acknowledged_update_is_already_in_the_file_when_its_200_arrives(
    serve: Serve, tmp_path: Path
) -> None:
    db = tmp_path / "acknowledged.db"
    receiver, client = serve(secret=SECRET, db=db)
    missing: list[str] = []

    async def send_all() -> None:
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=10) as http:

            async def one(index: int) -> None:
                body = update_body(f"o{index % 25}", filled_qty=index // 25)
                response = await http.post(
                    "/", content=body, headers=signed(SECRET, body, f"m{index}")
                )
                assert response.status_code == 200
                with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                    found = conn.execute(
                        "SELECT 1 FROM updates WHERE dedupe_key = ?", (f"id:m{index}",)
                    ).fetchone()
                if found is None:
                    missing.append(f"m{index}")

            await asyncio.gather(*(one(index) for index in range(200)))

    asyncio.run(send_all())
    assert missing == []
    assert receiver.store.counts().updates == 200


def test_a_postback_the_store_cannot_commit_gets_503_never_200(serve: Serve) -> None:
    receiver, client = serve()
    receiver.store.close()  # the writer is gone: nothing can be made durable
    response = post(client, update_body("1"))
    assert response.status_code == 503
    assert response.json()["errorCode"] == "DH-908"
    assert client.get("/healthz").status_code == 503


def test_handlers_get_the_postback_parse_and_verify_reads_from_the_same_request(
    serve: Serve,
) -> None:
    receiver, client = serve(secret=SECRET)
    seen: list[Postback] = []
    receiver.on_update(seen.append)
    body = update_body("1", "Part_Traded", filled_qty=3, somethingNew={"a": 1})
    headers = signed(SECRET, body, "msg_full")
    assert client.post("/", content=body, headers=headers).status_code == 200
    wait_until(lambda: len(seen) == 1)
    assert seen == [parse_and_verify(headers, body, secret=SECRET)]
    assert seen[0].update.unknown_values == ()
    assert seen[0].update.extra_fields == ("somethingNew",)
