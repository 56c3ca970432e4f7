"""Finding a free loopback port and waiting for a server on it to answer.

The benchmarks start every server in a process of its own; the tests start theirs the same
way (``tests/helpers/servers.py`` takes these two from here, so there is one definition).
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

__all__ = ["free_port", "wait_http_ok"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http_ok(url: str, timeout: float = 20.0) -> None:
    """Poll ``url`` with GET until it answers 2xx, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if 200 <= response.status < 300:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 2xx within {timeout}s (last error: {last})")
