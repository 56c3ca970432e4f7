"""Logging in to a running service's dashboard, as a browser does (form, CSRF, cookie)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx

__all__ = ["csrf_of", "logged_in", "try_login"]


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def try_login(client: httpx.Client, credential: str) -> httpx.Response:
    """Fetch the login form and post ``credential`` with its CSRF token."""
    form = client.get("/dashboard/login")
    return client.post(
        "/dashboard/login", data={"credential": credential, "csrf": csrf_of(form.text)}
    )


@contextlib.contextmanager
def logged_in(base_url: str, credential: str) -> Iterator[httpx.Client]:
    """A client logged in to the dashboard of the service at ``base_url``."""
    with httpx.Client(base_url=base_url, follow_redirects=False, timeout=30) as client:
        response = try_login(client, credential)
        assert response.status_code == 303, response.text
        yield client
