"""The Celery peer: a task per update that signs it and POSTs it, on a Redis broker.

Written the way the Celery documentation suggests for webhooks: ``acks_late`` (a task lost
with its worker runs again), a retry with backoff when the POST fails, no result backend; a
``requests`` session per worker thread (keep-alive). The worker runs the thread pool with
``BENCH_PEERS_CONCURRENCY`` threads, so that as many POSTs can be in flight as our
dispatcher has. Run by the benchmark: ``python -m bench.peer_celery``.
"""

from __future__ import annotations

import threading
from typing import Any

import requests
from celery import Celery

from bench.peer_signing import CONCURRENCY, REDIS_URL, signed_headers

__all__ = ["WORKER_ARGS", "app", "deliver"]

app = Celery("bench_peers", broker=REDIS_URL)
app.conf.update(
    task_ignore_result=True,
    task_acks_late=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
_local = threading.local()

WORKER_ARGS = [
    "worker",
    "--pool=threads",
    f"--concurrency={CONCURRENCY}",
    "--loglevel=WARNING",
    "--without-heartbeat",
    "--without-gossip",
    "--without-mingle",
]


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


@app.task(  # type: ignore[misc]
    name="deliver",
    bind=True,
    autoretry_for=(requests.RequestException,),
    retry_backoff=True,
    max_retries=10,
)
def deliver(task: Any, url: str, msg_id: str, body: str) -> None:
    """Sign the update and POST it; a non-2xx answer raises, and the task is retried."""
    response = _session().post(
        url, data=body.encode(), headers=signed_headers(msg_id, body), timeout=5
    )
    response.raise_for_status()


if __name__ == "__main__":
    app.worker_main(WORKER_ARGS)
