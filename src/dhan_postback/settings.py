"""Every command's settings: flags, then ``DHAN_POSTBACK_*`` variables, then defaults.

One model per concern, each field defined once; :mod:`dhan_postback.cli.options` makes the
command-line flags (``--max-in-flight-per-url``), their help and their errors from these models,
and docs/operations.md lists them. To add a setting, add a field: its flag, its variable and its
line in ``--help`` follow.

Variables: ``DHAN_POSTBACK_<NAME>`` for the service's settings (``serve``, ``worker``, the
relay's embedded service, and the admin key ``tokens`` uses to reach a service);
``DHAN_POSTBACK_<ROLE>_<NAME>`` for a role's own (``RECEIVER_``, ``RELAY_``, ``WORKER_``,
``SEND_``, ``DEMO_``, ``SIMULATE_``). A field whose variable is another model's (``send``'s
``--allow-loopback`` is the service's ``DHAN_POSTBACK_ALLOW_LOOPBACK``) names it as its
``validation_alias``.

Durations read ``50ms``, ``5s``, ``2m``, ``3h``, ``1d`` (or plain seconds); the retry schedule
is a comma-separated list of them, one delay before each attempt (the first ``0s``). ``--db``
is a URL on every command (``sqlite:///path/file.db``, ``postgresql://...``) and a bare path
means a SQLite file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .connections import ConnectionLimits
from .durations import parse_duration, parse_schedule
from .payload import OrderStatus
from .simulator import DEFAULT_DATE
from .wire import DEFAULT_CLIENTS

__all__ = [
    "DEFAULT_RETRY_SCHEDULE",
    "DISPATCHER_FIELDS",
    "DURATION",
    "LIST",
    "MIN_ADMIN_KEY_LENGTH",
    "PREFIX",
    "SCHEDULE",
    "URL",
    "DatabaseUrl",
    "DemoSettings",
    "Duration",
    "FromFile",
    "HeaderTimeout",
    "KeepAliveTimeout",
    "Kind",
    "MaxConnections",
    "OrdersQuery",
    "ReceiverSettings",
    "RelaySettings",
    "Secret",
    "SendSettings",
    "ServiceSettings",
    "SimulateSettings",
    "SqliteFile",
    "Strings",
    "TokensSettings",
    "WorkerSettings",
    "database_url",
    "sqlite_path",
]

DEFAULT_RETRY_SCHEDULE = "0s,5s,30s,2m,10m,30m,1h,3h,6h,12h"
"""Ten attempts over about 23 hours; after the last failure the delivery is dead."""

PREFIX: Final = "DHAN_POSTBACK_"


class Kind:
    """What a field holds, for its flag's metavar and its default's spelling in help."""

    def __init__(self, metavar: str) -> None:
        self.metavar = metavar

    def __repr__(self) -> str:
        return f"Kind({self.metavar})"


DURATION = Kind("DURATION")
SCHEDULE = Kind("DELAYS")
URL = Kind("URL")
LIST = Kind("VALUES")


def _seconds(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


def _schedule(value: Any) -> Any:
    return parse_schedule(value) if isinstance(value, str) else value


def _first_attempt_at_once(delays: tuple[float, ...]) -> tuple[float, ...]:
    """A retry schedule whose first delay is 0: the first attempt goes as soon as the update
    is committed (and a replay's as soon as it is asked for), so a longer first delay would be
    a wait that nothing keeps. Refused, rather than dropped without a word."""
    if delays and delays[0] != 0:
        raise ValueError(
            "the first delay is the wait before the first attempt, which goes at once: "
            "start the schedule with 0s (e.g. 0s,5s,30s)"
        )
    return delays


def _strings(value: Any) -> Any:
    """A comma- or space-separated variable, or repeated flags, as a tuple of strings."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(part for item in items for part in str(item).replace(",", " ").split())


_SCHEMES = {"sqlite", "postgresql", "postgres", "memory"}


def database_url(value: str) -> str:
    """``value`` as a store URL: a bare path means a SQLite file. ValueError for a scheme
    no store reads."""
    text = value.strip()
    if not text:
        raise ValueError("give a database URL (sqlite:///FILE or postgresql://...) or a file path")
    if "://" not in text:
        return f"sqlite:///{text}"
    scheme = text.split("://", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            f"unsupported database {scheme}://: use a SQLite file (a path, or sqlite:///FILE) "
            "or postgresql://USER@HOST/DB"
        )
    return text


def sqlite_path(value: str) -> str:
    """The file of a SQLite-only database (``--db`` of the receiver, the relay's log): a
    path, or a ``sqlite:///`` URL."""
    url = database_url(value)
    if not url.startswith("sqlite:///"):
        raise ValueError(
            "this database is a SQLite file: give a path or sqlite:///FILE, "
            f"not {url.split(':')[0]}"
        )
    return url.removeprefix("sqlite:///")


Duration = Annotated[float, BeforeValidator(_seconds), Field(ge=0), DURATION]
"""Seconds, written ``50ms``, ``5s``, ``2m``, ``3h``, ``1d`` (or a plain number)."""
DatabaseUrl = Annotated[str, AfterValidator(database_url), URL]
SqliteFile = Annotated[str, AfterValidator(sqlite_path), Kind("FILE")]
Strings = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_strings), LIST]
"""Repeat the flag, or separate values with commas or spaces in the variable."""


class FromFile:
    """A secret that may also be read from a file: ``--<name>-file``, or the variable
    ``<VARIABLE>_FILE``, naming a file with one secret per line. A flag's value shows in every
    user's ``ps`` and in the shell's history; a file with mode 0600 does not. With ``many``
    the file's every line is a secret, added to those given otherwise."""

    def __init__(self, *, many: bool = False) -> None:
        self.many = many

    def __repr__(self) -> str:
        return f"FromFile(many={self.many})"


Secret = Annotated[SecretStr | None, FromFile()]
"""A secret from its flag, its variable, or its ``--<name>-file``."""

MIN_ADMIN_KEY_LENGTH: Final = 16
"""Shorter admin keys are refused: the admin key guards every token, and can be guessed online
wherever the API is reachable."""


def _admin_key(value: SecretStr | None) -> SecretStr | None:
    length = len(value.get_secret_value()) if value is not None else 0
    if 0 < length < MIN_ADMIN_KEY_LENGTH:
        raise ValueError(
            f"the admin key is {length} characters long; use at least {MIN_ADMIN_KEY_LENGTH} "
            "(for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return value


HeaderTimeout = Annotated[
    Duration, Field(gt=0, description="Time a client has to send a request's headers.")
]
KeepAliveTimeout = Annotated[
    Duration, Field(gt=0, description="Time an idle keep-alive connection is kept open.")
]
MaxConnections = Annotated[
    int, Field(ge=1, description="Open client connections; more are closed at once.")
]

_CONFIG = SettingsConfigDict(extra="ignore", populate_by_name=True)


class ServiceSettings(BaseSettings):
    """Every setting of the postback service (``serve``; ``worker`` and the relay's embedded
    service take the dispatcher's)."""

    model_config = SettingsConfigDict(**_CONFIG, env_prefix=PREFIX)

    db: DatabaseUrl = Field(
        "sqlite:///./dhan-postback.db",
        description="Database: sqlite:///FILE (or a path) for one node, postgresql://... to "
        "share the outbox between nodes.",
    )
    admin_key: Annotated[Secret, AfterValidator(_admin_key)] = Field(
        None,
        description="Key for admin endpoints (header admin-key; at least 16 characters). "
        "Required by serve.",
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on.")
    allow_loopback: bool = Field(
        False, description="Sandbox: allow loopback Postback URLs (local development only)."
    )
    retry_schedule: Annotated[
        tuple[float, ...],
        NoDecode,
        BeforeValidator(_schedule),
        AfterValidator(_first_attempt_at_once),
        SCHEDULE,
    ] = Field(
        parse_schedule(DEFAULT_RETRY_SCHEDULE),
        description="Delay before each attempt, the first 0s (it goes at once); after the "
        "last the delivery is dead.",
    )
    timeout: Duration = Field(5.0, description="Time a receiver has to answer one POST.")
    max_in_flight_per_url: int = Field(16, ge=1, description="Concurrent POSTs per URL.")
    max_in_flight: int = Field(512, ge=1, description="Concurrent POSTs in all.")
    retry_after_cap: Duration = Field(600.0, description="Longest Retry-After honoured.")
    breaker_failure_rate: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of a URL's recent deliveries that failed which opens its breaker.",
    )
    breaker_min_attempts: int = Field(
        20, ge=1, description="Recent deliveries a breaker needs before it judges a URL."
    )
    breaker_window: Duration = Field(30.0, gt=0, description="How recent a breaker's results are.")
    breaker_cooldown: Duration = Field(
        1.0, description="First pause before probing an open URL; doubles per failed probe."
    )
    breaker_max_cooldown: Duration = Field(
        30.0, description="Longest pause between probes of a URL that stays down."
    )
    lease: Duration = Field(
        10.0,
        ge=1.0,
        description="How long a claim is held unrenewed: a dead node's claims go out again "
        "after it. Renewed every third of it while held, so a POST may take longer.",
    )
    claim_batch: int = Field(256, ge=1, description="Deliveries claimed per store round trip.")
    token_ttl: Duration = Field(86400.0, description="Lifetime of a new access token.")
    secret_rotation_grace: Duration = Field(
        86400.0,
        description="How long a rotated-out signing secret keeps signing beside the new one.",
    )
    max_batch: int = Field(1000, ge=1, description="Most updates in one ingest request.")
    max_replay: int = Field(
        10_000, ge=1, description="Most deliveries one replay-by-filter call queues again."
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body.")
    shutdown_grace: Duration = Field(10.0, description="Time to finish in-flight POSTs on SIGTERM.")
    header_timeout: HeaderTimeout = 10.0
    keep_alive_timeout: KeepAliveTimeout = 5.0
    max_connections: MaxConnections = 1000
    auth_failures: int = Field(
        10, ge=1, description="Wrong credentials one address may send per --auth-failure-window."
    )
    auth_failure_window: Duration = Field(
        60.0, gt=0, description="Window of --auth-failures; a throttled address waits for it."
    )
    metrics_token: Secret = Field(
        None,
        description="Bearer token for /metrics (required to read it when --host is not loopback).",
    )
    idempotency_window: Duration = Field(
        86400.0,
        description="How long an Idempotency-Key of ingest answers its first answer again.",
    )
    retain_delivered: Duration = Field(
        7 * 86400.0, description="Delivered deliveries and their attempts are deleted after this."
    )
    retain_dead: Duration = Field(
        30 * 86400.0, description="Dead deliveries and their attempts are deleted after this."
    )
    prune_interval: Duration = Field(
        300.0, description="How often old deliveries are pruned (0: never prune)."
    )
    prune_batch: int = Field(
        500, ge=1, description="Most deliveries deleted in one pruning transaction."
    )

    operator_url: Annotated[str | None, URL] = Field(
        None,
        description="Where the service sends its own signed events (endpoint.failing, "
        "endpoint.recovered, endpoint.paused, endpoint.resumed, delivery.dead), through the "
        "outbox.",
    )
    operator_secret: Secret = Field(
        None,
        validate_default=True,
        description="whsec_ secret that signs the operator events (required with --operator-url).",
    )
    failing_after: Duration = Field(
        900.0,
        description="An endpoint whose breaker stays open this long is failing: one "
        "endpoint.failing event.",
    )

    @field_validator("operator_url")
    @classmethod
    def _operator_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        from .errors import URLRefused
        from .urlpolicy import check_url

        try:
            return check_url(value, allow_loopback=bool(info.data.get("allow_loopback")))
        except URLRefused as exc:
            raise ValueError(exc.message) from None

    @field_validator("operator_secret")
    @classmethod
    def _operator_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            if info.data.get("operator_url") is not None:
                raise ValueError(
                    "operator events are signed: give their whsec_ secret with "
                    "--operator-secret-file or DHAN_POSTBACK_OPERATOR_SECRET"
                )
            return None
        from .signing import Signer

        Signer(value.get_secret_value())  # ValueError naming the format when it is not one
        return value

    @property
    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(self.header_timeout, self.keep_alive_timeout, self.max_connections)


DISPATCHER_FIELDS: tuple[str, ...] = (
    "db",
    "allow_loopback",
    "retry_schedule",
    "timeout",
    "max_in_flight_per_url",
    "max_in_flight",
    "retry_after_cap",
    "breaker_failure_rate",
    "breaker_min_attempts",
    "breaker_window",
    "breaker_cooldown",
    "breaker_max_cooldown",
    "lease",
    "claim_batch",
    "shutdown_grace",
    "header_timeout",
    "keep_alive_timeout",
    "max_connections",
    "metrics_token",
    "idempotency_window",
    "retain_delivered",
    "retain_dead",
    "prune_interval",
    "prune_batch",
    "operator_url",
    "operator_secret",
    "failing_after",
)
"""The service settings the dispatcher and the pruner read: ``worker``'s, and the relay's
embedded service's (but its ``db``)."""


class WorkerSettings(BaseSettings):
    """``worker``'s own: where it serves ``/healthz`` and ``/metrics``, if anywhere."""

    model_config = SettingsConfigDict(**_CONFIG, env_prefix=PREFIX + "WORKER_")

    host: str = Field("127.0.0.1", description="Address for /healthz and /metrics.")
    port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Serve /healthz and /metrics on this port (none by default, so that "
        "workers beside serve need no port of their own).",
    )


class ReceiverSettings(BaseSettings):
    """``receive``: a Postback URL on this machine."""

    model_config = SettingsConfigDict(**_CONFIG, env_prefix=PREFIX + "RECEIVER_")

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8001, ge=0, le=65535, description="Port to listen on.")
    db: SqliteFile = Field(
        "receiver.db",
        description="SQLite file (a path or sqlite:///FILE) for updates and the order book; "
        "created when missing.",
    )
    secret: Annotated[Strings, FromFile(many=True)] = Field(
        (),
        description="whsec_ signing secret to verify (repeat, or separate with commas, to "
        "accept a rotation's old and new).",
    )
    path: str = Field(
        "/", description="Path that accepts POSTs; a long random one works as a secret."
    )
    client_id: Strings = Field(
        (),
        validation_alias=PREFIX + "RECEIVER_CLIENT_IDS",
        description="Accept only these dhanClientId values (repeat); others get 403.",
    )
    header_timeout: HeaderTimeout = 10.0
    keep_alive_timeout: KeepAliveTimeout = 5.0
    max_connections: MaxConnections = 1000
    quiet: bool = Field(False, description="No live table and no periodic log lines.")

    @property
    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(self.header_timeout, self.keep_alive_timeout, self.max_connections)


class OrdersQuery(BaseModel):
    """``orders``: which rows of a receiver's book to print (flags only)."""

    status: str | None = Field(None, description="Only orders in this status (e.g. TRADED).")
    client: str | None = Field(None, description="Only orders of this dhanClientId.")
    order: str | None = Field(None, description="Only this order id (all its legs).")
    limit: int | None = Field(None, ge=1, description="At most this many rows.")


class SendSettings(BaseSettings):
    """``send``: one test postback."""

    model_config = SettingsConfigDict(**_CONFIG, env_prefix=PREFIX + "SEND_")

    secret: Secret = Field(
        None, description="whsec_ secret to sign with (unsigned, as the broker, without)."
    )
    status: OrderStatus = Field(OrderStatus.TRADED, description="Order status of the update sent.")
    client_id: str | None = Field(None, description="dhanClientId to put in the update.")
    seed: int = Field(1, description="Simulator seed (which order).")
    timeout: Duration = Field(5.0, description="Time to wait for the answer.")
    allow_loopback: bool = Field(
        False,
        validation_alias=PREFIX + "ALLOW_LOOPBACK",
        description="Sandbox: allow a loopback URL (the broker refuses them).",
    )


class TokensSettings(BaseSettings):
    """``tokens``: how to reach a running service's admin API."""

    model_config = SettingsConfigDict(**_CONFIG, env_prefix=PREFIX)

    server: str = Field("http://127.0.0.1:8000", description="The service's base URL.")
    admin_key: Secret = Field(None, description="The service's admin key.")


class SimulateSettings(BaseSettings):
    """``simulate``: which day to play."""

    model_config = SettingsConfigDict(**_CONFIG, env_prefix=PREFIX + "SIMULATE_")

    orders: int = Field(20, ge=0, description="How many orders (each posts several updates).")
    seed: int = Field(0, description="Random seed; the same seed prints the same bytes.")
    clients: Strings = Field(
        DEFAULT_CLIENTS,
        description="dhanClientId values to spread orders over (comma-separated).",
    )
    date: dt.date = Field(DEFAULT_DATE, description="Trading date (IST) of the simulated day.")
    quirks: bool = Field(
        False,
        description="Post like an imperfect sender: some duplicates, some out of order, some "
        'bodies with the documentation\'s invalid "legName": , hole.',
    )
    rate: float | None = Field(
        None, gt=0, description="Lines per second (default: as fast as possible)."
    )


class DemoSettings(BaseSettings):
    """``demo``: the whole system on this machine."""

    model_config = SettingsConfigDict(**_CONFIG, env_prefix=PREFIX + "DEMO_")

    orders: int = Field(250, ge=1, description="Orders to simulate.")
    seed: int = Field(7, description="Simulator seed.")
    rate: float = Field(
        400.0, ge=0, description="Updates submitted per second (0: as fast as accepted)."
    )
    chaos: float = Field(
        0.0,
        ge=0.0,
        le=0.9,
        description="Fraction of postbacks the receivers fail (5xx, timeouts, resets, lost "
        "answers).",
    )
    keep_running: bool = Field(
        False, description="Leave everything up after the checks, until Ctrl+C or SIGTERM."
    )
    dir: Path = Field(
        Path("demo-data"),
        description="Folder for the demo's databases and logs (emptied at every run).",
    )


class RelaySettings(BaseSettings):
    """``relay``: the broker's websocket in, postbacks out."""

    model_config = SettingsConfigDict(**_CONFIG, env_prefix=PREFIX + "RELAY_")

    client_id: str | None = Field(None, description="Dhan client id of the account.")
    access_token: Secret = Field(
        None, description="Dhan access token of that account (prefer the variable)."
    )
    partner_id: str | None = Field(None, description="Log in as a partner (all its users).")
    partner_secret: Secret = Field(None, description="The partner's secret.")
    postback_url: str | None = Field(
        None, description="Deliver to this URL through a service embedded in this process."
    )
    signing_secret: Secret = Field(
        None,
        description="Embedded service: the whsec_ secret postbacks are signed with (default: "
        "generated once, kept in <db>.whsec).",
    )
    service_db: DatabaseUrl | None = Field(
        None, description="Embedded service: its outbox (default: <db>-outbox.db beside --db)."
    )
    service_port: int = Field(
        0, ge=0, le=65535, description="Embedded service: loopback port of its API (0: any)."
    )
    service_url: str | None = Field(
        None, description="Hand updates to a running postback service at this URL instead."
    )
    service_token: Secret = Field(None, description="That service's access token for this client.")
    ws_url: str = Field(
        "wss://api-order-update.dhan.co", description="The broker's order-update websocket."
    )
    api_url: str = Field(
        "https://api.dhan.co/v2",
        description="The broker's REST API, for the order book the relay reconciles with.",
    )
    reconcile_interval: Duration = Field(
        60.0,
        description="Read the broker's order book after every login and this often while "
        "connected, and relay what the websocket missed (0: never).",
    )
    db: SqliteFile = Field(
        "relay.db", description="The relay's own SQLite log (de-duplication, dead letters)."
    )
    idle_timeout: Duration = Field(
        900.0, description="Redial when no frame arrives for this long (0: never)."
    )
    ping_interval: Duration = Field(20.0, description="Send a websocket ping this often.")
    ping_timeout: Duration = Field(20.0, description="Redial when a ping is not answered.")
    backoff_cap: Duration = Field(30.0, description="Longest wait between two redials.")
