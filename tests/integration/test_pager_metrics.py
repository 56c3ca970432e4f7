"""The gauges a pager reads from ``GET /metrics``, on SQLite and on PostgreSQL.

A real service (uvicorn on loopback, its node sending) delivers to a receiver that is down
(500) and to one that is up. The down endpoint's breaker opens (and, with a long cooldown,
stays open); the scrape then shows its breaker state, how long it has been open and the age
of its oldest pending delivery, within the times the test saw around each event. The healthy,
idle endpoint has no series.
"""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from dhan_postback.service.metrics import endpoint_label
from tests.helpers.receivers import RecordingReceiver, Reply, always
from tests.helpers.servers import UvicornThread
from tests.helpers.service import Service, running_service
from tests.helpers.updates import new_client_id, update
from tests.helpers.waiting import wait_until


def scrape(service: Service) -> dict[str, dict[str, float]]:
    """``{metric: {endpoint label: value}}`` of the three pager gauges."""
    response = service.http.get("/metrics")
    assert response.status_code == 200, response.text
    wanted = {
        "dhan_postback_breaker_state",
        "dhan_postback_breaker_open_seconds",
        "dhan_postback_oldest_pending_seconds",
    }
    found: dict[str, dict[str, float]] = {name: {} for name in wanted}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name in wanted:
                found[sample.name][sample.labels["endpoint"]] = sample.value
    return found


def test_the_pager_gauges_show_a_down_endpoint_and_leave_out_a_healthy_idle_one(
    service_db: str, tmp_path: Path
) -> None:
    down, up = RecordingReceiver(always(Reply(500))), RecordingReceiver()
    with (
        UvicornThread(down.app) as down_server,
        UvicornThread(up.app) as up_server,
        running_service(
            tmp_path,
            db=service_db,
            dispatch=True,
            retry_schedule="0s" + ",10ms" * 20 + ",1h",
            breaker_min_attempts=3,
            breaker_cooldown=3600.0,
            breaker_max_cooldown=3600.0,
        ) as service,
    ):
        failing_client, healthy_client = new_client_id(), new_client_id()
        failing = service.create_token(failing_client, postback_url=down_server.url + "/hook")
        healthy = service.create_token(healthy_client, postback_url=up_server.url + "/hook")
        service.delivery_ids(healthy["accessToken"], [update(healthy_client)])
        wait_until(lambda: len(up.accepted()) == 1)

        before_ingest = time.time()
        updates = [update(failing_client, f"{failing_client}-{n}") for n in range(3)]
        service.delivery_ids(failing["accessToken"], updates)
        after_ingest = time.time()
        endpoint = f"/v2/endpoints/{failing['endpointId']}"
        wait_until(
            lambda: service.http.get(endpoint, headers=service.admin).json()["breaker"] == "open"
        )
        seen_open = time.time()

        before_scrape = time.time()
        gauges = scrape(service)
        after_scrape = time.time()

    down_label, up_label = endpoint_label(down_server.url), endpoint_label(up_server.url)
    assert gauges["dhan_postback_breaker_state"][down_label] == 2
    open_for = gauges["dhan_postback_breaker_open_seconds"][down_label]
    assert before_scrape - seen_open <= open_for <= after_scrape - before_ingest
    oldest = gauges["dhan_postback_oldest_pending_seconds"][down_label]
    assert before_scrape - after_ingest <= oldest <= after_scrape - before_ingest
    for gauge in gauges.values():
        assert up_label not in gauge
