"""B6: one black-holed endpoint must not slow the others down.

Ten endpoints, each a port of one :mod:`bench.sink` process (recording arrival times), each
the Postback URL of its own token (its own client). The client submits single updates at a
steady rate, round robin over the ten tokens. Run twice on a fresh ``serve`` each time: all ten
healthy (the baseline), and with the tenth URL pointing at a port that accepts connections and
never answers. Compared: the submit -> received latency of the nine healthy endpoints.
"""

from __future__ import annotations

import uuid

import aiohttp

from bench.harness import Context, Row, Scenario, free_port, median, percentile, run_async
from bench.ingest_bench import Service, create_token, serve, update_body
from bench.latency_bench import collect, latencies, paced

__all__ = ["SCENARIO"]

ENDPOINTS = 10
RATE = 300.0


def _client(endpoint: int) -> str:
    return f"10000001{endpoint:02d}"


async def measure(service_url: str, tokens: list[str], sink: str, duration: float) -> list[float]:
    """Sorted latencies of the updates sent to the first nine endpoints."""
    connector = aiohttp.TCPConnector(limit=512, limit_per_host=512)
    prefix = uuid.uuid4().hex[:8]
    healthy = 0
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        async with session.get(sink + "/stats") as response:
            seen = (await response.json())["count"]

        async def submit(order_id: str) -> None:
            nonlocal healthy
            endpoint = int(order_id.rsplit("-", 1)[1]) % ENDPOINTS
            healthy += endpoint < ENDPOINTS - 1
            headers = {"access-token": tokens[endpoint], "Content-Type": "application/json"}
            async with session.post(
                service_url + "/v2/order-updates",
                data=update_body(order_id, _client(endpoint)),
                headers=headers,
            ) as response:
                await response.read()
                if response.status != 202:
                    raise RuntimeError(f"ingest: {response.status} {await response.text()}")

        submitted = await paced(submit, prefix, RATE, duration)
        arrivals = await collect(session, sink, seen + healthy)
    nine = {
        key: sent
        for key, sent in submitted.items()
        if int(key.rsplit("-", 1)[1]) % ENDPOINTS < ENDPOINTS - 1
    }
    return latencies(nine, arrivals)


async def issue_tokens(service: Service, urls: list[str]) -> list[str]:
    """One token per endpoint, each for its own client."""
    async with aiohttp.ClientSession() as session:
        return [
            await create_token(session, service, url, _client(endpoint))
            for endpoint, url in enumerate(urls)
        ]


def run(ctx: Context) -> list[Row]:
    """Each round: all ten healthy, then one black-holed, each on a fresh ``serve``."""
    duration = ctx.pick(3.0, 8.0)
    ports = [free_port() for _ in range(ENDPOINTS)]
    hole = free_port()
    args = ["-m", "bench.sink", "--record", "--blackhole", str(hole)]
    for port in ports:
        args += ["--port", str(port)]
    sink = f"http://127.0.0.1:{ports[0]}"
    results: dict[str, list[list[float]]] = {"healthy": [], "blackholed": []}
    with ctx.spawn(args, health_url=sink + "/stats", log_name="b6-sink"):
        for _ in range(ctx.rounds):
            for name, last in (("healthy", ports[-1]), ("blackholed", hole)):
                urls = [f"http://127.0.0.1:{port}/hook" for port in [*ports[:-1], last]]
                with serve(ctx, f"b6-{name}") as service:
                    issued = run_async(issue_tokens(service, urls))
                    results[name].append(run_async(measure(service.url, issued, sink, duration)))
    ours, baseline = results["blackholed"], results["healthy"]
    arrived = sum(map(len, ours)), sum(map(len, baseline))
    rows = []
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        value = median([percentile(round_, fraction) * 1000 for round_ in ours])
        reference = median([percentile(round_, fraction) * 1000 for round_ in baseline])
        each = ", ".join(f"{percentile(round_, fraction) * 1000:.1f}" for round_ in ours)
        target = label == "p99"
        rows.append(
            Row(
                "B6",
                f"healthy nine with one black-holed, {label}",
                value,
                reference,
                "ms",
                target="<= 1.2x" if target else "",
                met=value <= 1.2 * reference if target else None,
                note=(
                    f"baseline: all ten healthy; median of {ctx.rounds} rounds, "
                    f"{RATE:.0f} updates/s over ten for {duration:.0f} s, a fresh serve each; "
                    f"{arrived[0]:,} and {arrived[1]:,} arrived at the nine; ours"
                    if not target
                    else "ours"
                )
                + f" by round: {each} ms",
                higher_is_better=False,
            )
        )
    return rows


SCENARIO = Scenario("B6", "isolation: nine healthy endpoints next to one black-holed", run)
