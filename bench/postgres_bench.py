"""B7: durable delivery throughput on the PostgreSQL backend with one and two workers.

Waits for the PostgreSQL store (branch ``postgres``) to land on main; until then it reports
that it was skipped.
"""

from __future__ import annotations

import importlib.util

from bench.harness import Context, Row, Scenario

__all__ = ["SCENARIO"]


def run(ctx: Context) -> list[Row]:
    if importlib.util.find_spec("dhan_postback.service.store.postgres") is None:
        return [
            Row(
                "B7",
                "PostgreSQL, 1 and 2 workers",
                None,
                None,
                "/s",
                note="skipped: PostgreSQL backend not on main",
            )
        ]
    raise NotImplementedError


SCENARIO = Scenario("B7", "durable delivery throughput on PostgreSQL, 1 and 2 workers", run)
