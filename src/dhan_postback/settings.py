"""Settings of the postback service: flags, then ``DHAN_POSTBACK_*`` variables, then defaults.

Durations accept ``50ms``, ``5s``, ``2m``, ``3h``, ``1d`` or plain seconds; the retry schedule
is a comma-separated list of them, one delay before each attempt.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .connections import ConnectionLimits
from .durations import parse_duration, parse_schedule

__all__ = ["DEFAULT_RETRY_SCHEDULE", "ServiceSettings"]

DEFAULT_RETRY_SCHEDULE = "0s,5s,30s,2m,10m,30m,1h,3h,6h,12h"
"""Ten attempts over about 23 hours; after the last failure the delivery is dead."""

Seconds = Annotated[float, Field(ge=0)]


class ServiceSettings(BaseSettings):
    """Every setting of ``dhan-postback serve`` and ``dhan-postback worker``."""

    model_config = SettingsConfigDict(env_prefix="DHAN_POSTBACK_", extra="ignore")

    db: str = Field("sqlite:///./dhan-postback.db", description="Database URL.")
    admin_key: SecretStr | None = Field(
        None, description="Key for admin endpoints (header admin-key). Required by serve."
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on.")
    allow_loopback: bool = Field(
        False, description="Sandbox: allow loopback Postback URLs (local development only)."
    )
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = Field(
        parse_schedule(DEFAULT_RETRY_SCHEDULE),
        description=f"Delay before each attempt (default {DEFAULT_RETRY_SCHEDULE}).",
    )
    timeout: Seconds = Field(5.0, description="Time a receiver has to answer one POST.")
    max_in_flight_per_url: int = Field(16, ge=1, description="Concurrent POSTs per URL.")
    max_in_flight: int = Field(512, ge=1, description="Concurrent POSTs in all.")
    retry_after_cap: Seconds = Field(600.0, description="Longest Retry-After honoured.")
    breaker_failure_rate: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of a URL's recent deliveries that failed which opens its breaker.",
    )
    breaker_min_attempts: int = Field(
        20, ge=1, description="Recent deliveries a breaker needs before it judges a URL."
    )
    breaker_window: Seconds = Field(30.0, gt=0, description="How recent a breaker's results are.")
    breaker_cooldown: Seconds = Field(
        1.0, description="First pause before probing an open URL; doubles per failed probe."
    )
    breaker_max_cooldown: Seconds = Field(
        30.0, description="Longest pause between probes of a URL that stays down."
    )
    lease: Seconds = Field(
        60.0, description="How long a claim is held before another node may retry it."
    )
    claim_batch: int = Field(256, ge=1, description="Deliveries claimed per store round trip.")
    token_ttl: Seconds = Field(86400.0, description="Lifetime of a new access token.")
    secret_rotation_grace: Seconds = Field(
        86400.0,
        description="How long a rotated-out signing secret keeps signing beside the new one.",
    )
    max_batch: int = Field(1000, ge=1, description="Most updates in one ingest request.")
    max_replay: int = Field(
        10_000, ge=1, description="Most deliveries one replay-by-filter call queues again."
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body.")
    shutdown_grace: Seconds = Field(10.0, description="Time to finish in-flight POSTs on SIGTERM.")
    header_timeout: Seconds = Field(
        10.0, gt=0, description="Time a client has to send a request's headers."
    )
    keep_alive_timeout: Seconds = Field(
        5.0, gt=0, description="Time an idle keep-alive connection is kept open."
    )
    max_connections: int = Field(
        1000, ge=1, description="Open client connections; more are closed at once."
    )
    auth_failures: int = Field(
        10, ge=1, description="Wrong credentials one address may send per --auth-failure-window."
    )
    auth_failure_window: Seconds = Field(
        60.0, gt=0, description="Window of --auth-failures; a throttled address waits for it."
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token for /metrics (required to read it when --host is not loopback).",
    )
    idempotency_window: Seconds = Field(
        86400.0,
        description="How long an Idempotency-Key of ingest answers its first answer again.",
    )
    retain_delivered: Seconds = Field(
        7 * 86400.0, description="Delivered deliveries and their attempts are deleted after this."
    )
    retain_dead: Seconds = Field(
        30 * 86400.0, description="Dead deliveries and their attempts are deleted after this."
    )
    prune_interval: Seconds = Field(
        300.0, description="How often old deliveries are pruned (0: never prune)."
    )
    prune_batch: int = Field(
        500, ge=1, description="Most deliveries deleted in one pruning transaction."
    )

    @field_validator(
        "timeout",
        "retry_after_cap",
        "breaker_window",
        "breaker_cooldown",
        "breaker_max_cooldown",
        "lease",
        "token_ttl",
        "secret_rotation_grace",
        "shutdown_grace",
        "header_timeout",
        "keep_alive_timeout",
        "auth_failure_window",
        "idempotency_window",
        "retain_delivered",
        "retain_dead",
        "prune_interval",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @property
    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(self.header_timeout, self.keep_alive_timeout, self.max_connections)

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return parse_schedule(value) if isinstance(value, str) else value
