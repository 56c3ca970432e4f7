"""Every mistake a user can make on the command line is one line, ``Error: ...``, with the exit
status saying whose mistake it was (2: the command line, 1: the world), and no traceback.

One row per mistake: the command, its environment, the exit status, and words the line must
hold (what went wrong, and what to do about it). Each runs the real CLI as a process.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.helpers.processes import clean_env, run_cli
from tests.helpers.servers import UvicornThread, free_port

pytestmark = pytest.mark.timeout(300)

ADMIN = {"DHAN_POSTBACK_ADMIN_KEY": "cli-mistakes-admin-key-0123456789"}
LONG_REASON = "the order update was refused because " + "this receiver is very particular " * 6


@dataclass(frozen=True)
class Mistake:
    args: tuple[str, ...]
    status: int
    says: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


MISTAKES = {
    "serve --db with an unknown scheme": Mistake(
        ("serve", "--db", "mysql://u@h/db"),
        2,
        ("--db", "mysql://", "sqlite:///FILE"),
        ADMIN,
    ),
    "worker --db with an unknown scheme": Mistake(
        ("worker", "--db", "mysql://u@h/db"), 2, ("--db", "postgresql://")
    ),
    "serve --db on a PostgreSQL server that is down": Mistake(
        ("serve", "--db", "postgresql://postback@127.0.0.1:{dead}/postback", "--port", "0"),
        1,
        ("cannot open the database", "Connection refused", "server is up"),
        ADMIN,
    ),
    "serve --db a SQLite file that cannot be made": Mistake(
        ("serve", "--db", "{tmp}/a-file/service.db", "--port", "0"),
        1,
        ("cannot open the database", "folder exists"),
        ADMIN,
    ),
    "receive --db a SQLite file that cannot be made": Mistake(
        ("receive", "--db", "{tmp}/a-file/receiver.db", "--port", "0"),
        1,
        ("cannot open the receiver database", "folder exists", "DHAN_POSTBACK_RECEIVER_DB"),
    ),
    "receive --db a PostgreSQL URL": Mistake(
        ("receive", "--db", "postgresql://h/db", "--port", "0"), 2, ("--db", "SQLite file")
    ),
    "orders --db a file that is not there": Mistake(
        ("orders", "--db", "{tmp}/nothing.db"), 1, ("no receiver database", "--db")
    ),
    "serve on a port in use": Mistake(
        ("serve", "--db", "{tmp}/busy.db", "--port", "{busy}"),
        1,
        ("cannot listen on 127.0.0.1:", "address already in use", "--port"),
        ADMIN,
    ),
    "receive on a port in use": Mistake(
        ("receive", "--db", "{tmp}/busy-receiver.db", "--port", "{busy}"),
        1,
        ("cannot listen on", "address already in use", "--port"),
    ),
    "worker --port in use": Mistake(
        ("worker", "--db", "{tmp}/busy-worker.db", "--port", "{busy}"),
        1,
        ("cannot listen on", "address already in use"),
    ),
    "serve --host not of this machine": Mistake(
        ("serve", "--host", "203.0.113.1", "--port", "0", "--db", "{tmp}/host.db"),
        1,
        ("cannot listen on 203.0.113.1", "--host"),
        ADMIN,
    ),
    "serve without an admin key": Mistake(
        ("serve", "--db", "{tmp}/nokey.db"), 2, ("admin key is required", "DHAN_POSTBACK_ADMIN_KEY")
    ),
    "serve --port out of range": Mistake(
        ("serve", "--port", "70000"), 2, ("--port", "65535"), ADMIN
    ),
    "serve --timeout not a duration": Mistake(
        ("serve", "--timeout", "soon"),
        2,
        ("--timeout", "not a duration", "5s"),
        ADMIN,
    ),
    "serve --lease under a second": Mistake(
        ("serve", "--lease", "500ms"),
        2,
        ("--lease", "greater than or equal to 1"),
        ADMIN,
    ),
    "a variable that is not a duration": Mistake(
        ("serve",),
        2,
        ("DHAN_POSTBACK_TIMEOUT", "--timeout"),
        {**ADMIN, "DHAN_POSTBACK_TIMEOUT": "soon"},
    ),
    "send --secret not base64": Mistake(
        ("send", "--secret", "notbase64!!", "https://example.com/hook"),
        2,
        ("--secret", "whsec_"),
    ),
    "send to loopback without the sandbox switch": Mistake(
        ("send", "http://127.0.0.1:{dead}/"), 2, ("loopback", "--allow-loopback")
    ),
    "send to a receiver that is not there": Mistake(
        ("send", "http://127.0.0.1:{dead}/", "--allow-loopback"),
        1,
        ("not delivered", "cannot connect"),
    ),
    "send to a receiver that refuses it": Mistake(
        ("send", "{loud}", "--allow-loopback"), 1, ("answered 400", LONG_REASON.strip())
    ),
    "send --status unknown": Mistake(
        ("send", "--status", "BOGUS", "https://example.com/"), 2, ("--status", "TRADED")
    ),
    "receive --secret not base64": Mistake(
        ("receive", "--secret", "notbase64", "--port", "0"), 2, ("--secret", "whsec_")
    ),
    "tokens create without the admin key": Mistake(
        ("tokens", "create", "--client-id", "1000000001"),
        2,
        ("--admin-key", "DHAN_POSTBACK_ADMIN_KEY"),
    ),
    "tokens create to a service that is not there": Mistake(
        ("tokens", "create", "--client-id", "1", "--server", "http://127.0.0.1:{dead}"),
        1,
        ("cannot reach the service at http://127.0.0.1:", "--server"),
        ADMIN,
    ),
    "tokens --server not a URL": Mistake(
        ("tokens", "revoke", "t", "--server", "localhost:8000"),
        2,
        ("--server", "http://"),
        ADMIN,
    ),
    "relay without a login": Mistake(("relay",), 2, ("--client-id", "--access-token")),
    "relay without a destination": Mistake(
        ("relay", "--client-id", "1", "--access-token", "t"),
        2,
        ("--postback-url", "--service-url"),
    ),
    "simulate --orders negative": Mistake(("simulate", "--orders", "-1"), 2, ("--orders",)),
    "demo --chaos too high": Mistake(("demo", "--chaos", "2"), 2, ("--chaos", "0.9")),
    "an unknown command": Mistake(("nope",), 2, ("No such command", "--help")),
    "an unknown flag": Mistake(("serve", "--no-such-flag"), 2, ("--no-such-flag", "--help")),
    "help for an unknown command": Mistake(("help", "nope"), 2, ("no command 'nope'", "serve")),
}


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """What the rows' placeholders stand for: a busy port, a dead one, a folder, and a
    receiver that refuses every postback with a long reason."""
    tmp = tmp_path_factory.mktemp("mistakes")
    (tmp / "a-file").write_text("a file where a folder is expected")

    async def refuse(request: Request) -> PlainTextResponse:
        return PlainTextResponse(LONG_REASON, status_code=400)

    loud = Starlette(routes=[Route("/", refuse, methods=["POST"])])
    with socket.create_server(("127.0.0.1", 0)) as busy, UvicornThread(loud) as receiver:
        yield {
            "tmp": str(tmp),
            "busy": str(busy.getsockname()[1]),
            "dead": str(free_port()),
            "loud": receiver.url + "/",
        }


@pytest.mark.parametrize("mistake", MISTAKES.values(), ids=MISTAKES.keys())
def test_a_mistake_is_one_line_naming_what_to_do(mistake: Mistake, places: dict[str, str]) -> None:
    args = [arg.format(**places) for arg in mistake.args]
    result = run_cli(*args, env=clean_env(**mistake.env), cwd=Path(places["tmp"]))

    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0] == result.stderr.rstrip("\n").splitlines()[-1]
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == mistake.status, result.stderr
    for words in mistake.says:
        assert words in errors[0], errors[0]


def test_a_port_in_use_fails_before_the_database_is_touched(places: dict[str, str]) -> None:
    db = Path(places["tmp"]) / "untouched.db"
    result = run_cli(
        "serve",
        "--db",
        str(db),
        "--port",
        places["busy"],
        env=clean_env(**ADMIN),
    )
    assert result.returncode == 1
    assert not db.exists()
    assert "dispatcher" not in result.stderr


def test_receive_on_a_port_in_use_does_not_say_it_is_receiving(places: dict[str, str]) -> None:
    result = run_cli("receive", "--port", places["busy"], cwd=Path(places["tmp"]))
    assert result.returncode == 1
    assert "receiving postbacks" not in result.stdout


def test_a_bare_path_is_a_sqlite_file_for_every_db_flag(places: dict[str, str]) -> None:
    result = run_cli("orders", "--db", f"sqlite:///{places['tmp']}/nothing.db")
    assert "no receiver database at " + places["tmp"] + "/nothing.db" in result.stderr
