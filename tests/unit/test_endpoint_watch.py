"""The endpoint watch: one log line per change of an endpoint's health, and what it reports.

Driven with explicit times, the way the dispatcher drives it: a breaker change after each
counted attempt (``open`` again after each failed probe), a check every tick, a dead delivery
once its outcome is committed.
"""

from __future__ import annotations

from typing import Any

import structlog

from dhan_postback.service.breaker import BreakerState
from dhan_postback.service.events import EndpointWatch, EventType
from dhan_postback.service.store.base import Attempt

URL = "https://hooks.example/secret-path"
NOW = 1_700_000_000.0
FAILING_AFTER = 900.0

Reported = list[tuple[EventType, str, dict[str, Any], str | None]]


def watch_reporting() -> tuple[EndpointWatch, Reported]:
    reported: Reported = []
    watch = EndpointWatch(
        failing_after=FAILING_AFTER,
        report=lambda *event: reported.append(event),
    )
    return watch, reported


def lines(events: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    return [event for event in events if event["event"] == text]


def test_a_flapping_breaker_is_one_line_when_it_opens_and_one_when_it_closes() -> None:
    watch, _ = watch_reporting()
    with structlog.testing.capture_logs() as events:
        watch.breaker_changed(URL, BreakerState.OPEN, NOW)
        for probe in range(1, 89):  # each failed probe opens the breaker again
            watch.breaker_changed(URL, BreakerState.OPEN, NOW + probe)
        watch.breaker_changed(URL, BreakerState.CLOSED, NOW + 120)

    [opened] = lines(events, "circuit breaker opened")
    [closed] = lines(events, "circuit breaker closed")
    assert len(events) == 2
    assert (opened["log_level"], opened["endpoint"]) == ("warning", "https://hooks.example")
    assert (closed["log_level"], closed["down_for"]) == ("info", 120.0)


def test_a_log_line_names_the_host_never_the_path() -> None:
    watch, _ = watch_reporting()
    with structlog.testing.capture_logs() as events:
        watch.breaker_changed(URL, BreakerState.OPEN, NOW)
    assert "secret-path" not in repr(events)


def test_a_short_outage_is_logged_and_not_reported() -> None:
    watch, reported = watch_reporting()
    watch.breaker_changed(URL, BreakerState.OPEN, NOW)
    watch.check(NOW + FAILING_AFTER - 1)
    watch.breaker_changed(URL, BreakerState.CLOSED, NOW + FAILING_AFTER - 1)
    watch.check(NOW + 2 * FAILING_AFTER)
    assert reported == []


def test_an_outage_past_failing_after_is_reported_failing_once_then_recovered() -> None:
    watch, reported = watch_reporting()
    watch.breaker_changed(URL, BreakerState.OPEN, NOW)
    with structlog.testing.capture_logs() as events:
        for tick in range(10):
            watch.check(NOW + FAILING_AFTER + tick)
    watch.breaker_changed(URL, BreakerState.CLOSED, NOW + 2000)

    assert [(kind, url) for kind, url, _, _ in reported] == [
        (EventType.FAILING, URL),
        (EventType.RECOVERED, URL),
    ]
    assert [line["event"] for line in events] == ["endpoint failing"]
    failing, recovered = reported[0][2], reported[1][2]
    assert failing == {"postbackUrl": URL, "failingSince": "2023-11-15T03:43:20.000+05:30"}
    assert recovered == {**failing, "recoveredAt": "2023-11-15T04:16:40.000+05:30"}


def test_a_dead_delivery_is_one_warning_and_one_report() -> None:
    watch, reported = watch_reporting()
    attempt = Attempt("msg_1", 10, NOW, 12.0, 503, "HTTP 503")
    with structlog.testing.capture_logs() as events:
        watch.delivery_dead(attempt, URL, "order-1")

    [line] = events
    assert (line["event"], line["log_level"], line["delivery_id"]) == (
        "delivery dead",
        "warning",
        "msg_1",
    )
    [(kind, url, data, _)] = reported
    assert (kind, url) == (EventType.DEAD, URL)
    assert data == {
        "deliveryId": "msg_1",
        "postbackUrl": URL,
        "orderId": "order-1",
        "attempts": 10,
        "lastStatusCode": 503,
        "lastError": "HTTP 503",
    }


def test_two_nodes_outages_begun_in_one_period_report_one_event_id() -> None:
    one, reported_one = watch_reporting()
    two, reported_two = watch_reporting()
    start = NOW - NOW % FAILING_AFTER
    one.breaker_changed(URL, BreakerState.OPEN, start + 10)
    two.breaker_changed(URL, BreakerState.OPEN, start + 40)
    for watch in (one, two):
        watch.check(start + 10 * FAILING_AFTER)
        watch.breaker_changed(URL, BreakerState.CLOSED, start + 11 * FAILING_AFTER)

    assert [event[3] for event in reported_one] == [event[3] for event in reported_two]
    assert len({event[3] for event in reported_one}) == 2  # failing and recovered differ


def test_an_outage_after_a_recovery_is_a_new_event() -> None:
    watch, reported = watch_reporting()
    for outage in range(2):
        began = NOW + outage * 3 * FAILING_AFTER
        watch.breaker_changed(URL, BreakerState.OPEN, began)
        watch.check(began + FAILING_AFTER)
        watch.breaker_changed(URL, BreakerState.CLOSED, began + FAILING_AFTER + 1)
    ids = [event[3] for event in reported]
    assert len(ids) == len(set(ids)) == 4
