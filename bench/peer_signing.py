"""What both peers do per update: sign it as Standard Webhooks says, with the reference library.

A user building delivery themselves would reach for the ``standardwebhooks`` package; it signs
``id.timestamp.body`` with HMAC-SHA256 exactly as ``dhan_postback.signing`` does, so the peers
send the same three headers as our dispatcher. Configuration comes from the environment the
benchmark gives the worker processes.
"""

from __future__ import annotations

import datetime
import os

from standardwebhooks.webhooks import Webhook

__all__ = ["CONCURRENCY", "REDIS_URL", "SECRET", "signed_headers"]

REDIS_URL = os.environ.get("BENCH_PEERS_REDIS_URL", "redis://127.0.0.1:6379/0")
CONCURRENCY = int(os.environ.get("BENCH_PEERS_CONCURRENCY", "64"))
SECRET = os.environ.get("BENCH_PEERS_SECRET", "whsec_YmVuY2htYXJrLXNlY3JldA==")
_webhook = Webhook(SECRET)


def signed_headers(msg_id: str, body: str) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt, signed now."""
    now = datetime.datetime.now(datetime.UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": _webhook.sign(msg_id, now, body),
    }
