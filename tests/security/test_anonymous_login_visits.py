"""Vector: anyone could log every dashboard user out (issue 20, item 3).

Each anonymous ``GET /dashboard/login`` used to create a session in one process-wide store of
10,000 that also held the logged-in ones, so 10,100 anonymous visits evicted the admin. Now an
anonymous visit creates no server-side state, and sessions live in the database: a restart or
another node keeps them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import httpx

from tests.helpers.dashboard_login import logged_in
from tests.helpers.processes import serve_process
from tests.helpers.servers import free_port

ADMIN_KEY = "security-admin-key-0123456789"
VISITS = 10_100


async def _anonymous_visits(base_url: str, count: int, concurrency: int = 8) -> int:
    """GET the login page ``count`` times without cookies; how many answered 200."""
    remaining = iter(range(count))
    ok = 0

    async def visitor(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        for _ in remaining:
            async with session.get(f"{base_url}/dashboard/login") as response:
                await response.read()
                ok += response.status == 200

    jar = aiohttp.DummyCookieJar()  # every visit is a new anonymous browser
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        await asyncio.gather(*(visitor(session) for _ in range(concurrency)))
    return ok


def test_ten_thousand_anonymous_visits_do_not_log_the_admin_out(tmp_path: Path) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with (
        serve_process(tmp_path / "service.db", port, ADMIN_KEY),
        logged_in(base_url, ADMIN_KEY) as admin,
    ):
        assert asyncio.run(_anonymous_visits(base_url, VISITS)) == VISITS
        assert admin.get("/dashboard/deliveries").status_code == 200


def test_a_session_survives_a_restart_of_the_service(tmp_path: Path) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = serve_process(tmp_path / "service.db", port, ADMIN_KEY).start()
    try:
        with logged_in(base_url, ADMIN_KEY) as admin:
            server.terminate()
            server = serve_process(tmp_path / "service.db", port, ADMIN_KEY).start()
            assert admin.get("/dashboard/deliveries").status_code == 200
    finally:
        server.terminate()


def test_a_session_made_on_one_node_works_on_another(tmp_path: Path) -> None:
    one, two = free_port(), free_port()
    db = tmp_path / "service.db"
    with (
        serve_process(db, one, ADMIN_KEY),
        serve_process(db, two, ADMIN_KEY),
        logged_in(f"http://127.0.0.1:{one}", ADMIN_KEY) as admin,
    ):
        answer = httpx.get(
            f"http://127.0.0.1:{two}/dashboard/deliveries",
            cookies={"dpb_session": admin.cookies["dpb_session"]},
            follow_redirects=False,
            timeout=30,
        )
    assert answer.status_code == 200
