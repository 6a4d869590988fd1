"""The one settings model. Built once in each entry point and passed down."""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config import formats

# DEV ONLY, public in this repository: the webhook signing secret used when
# ENGINE_WEBHOOK_SECRET is unset, so `make run` works out of the box. The simulator's merchant
# receiver accepts the same one by default (SIM_WEBHOOK_SECRET). Never use it in production.
DEV_WEBHOOK_SECRET = "whsec_aGFtc3Rlci1kZXYtb25seS13ZWJob29rLXNlY3JldCE="
# Public and for development only: API keys are hashed with it. Set your own in production.
DEV_API_KEY_SECRET = "dev-only-api-key-hashing-secret-change-me"


class Settings(BaseSettings):
    """Every knob of the engine; environment variables are `ENGINE_<FIELD>` unless noted."""

    model_config = SettingsConfigDict(
        env_prefix="ENGINE_", extra="ignore", frozen=True, populate_by_name=True
    )

    # Any PostgreSQL (`postgresql://user:pass@host/db`). Unset: the embedded server in data_dir.
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    # Where the embedded PostgreSQL keeps its files; a restart keeps every payment.
    data_dir: Path = Path(".data")
    # Connections per process; a small pool per core beats a large one on PostgreSQL.
    db_pool_min: int = Field(default=2, ge=1, le=100)
    db_pool_max: int = Field(default=10, ge=1, le=200)
    # Lists and charts that need not read their own writes (the payments history of the API
    # and the back office, its CSV export, its overview) read from a standby when
    # DATABASE_URL names several hosts and one is a standby (a Patroni cluster): a second pool
    # with target_session_attrs=prefer-standby. Off: everything reads the primary.
    replica_reads: bool = False

    # --- intake (the `web` process) ---
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8083, ge=0, le=65535)
    # Requests larger than this are refused with 413 before they are read.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # A client that has not sent its whole body after this long gets 408 (slow-client guard).
    body_read_timeout_seconds: float = Field(default=10.0, gt=0)
    # Requests a web process serves at once; more get 503 with Retry-After at once (0: no
    # limit). Under overload the intake answers fast instead of queueing until clients time out.
    max_concurrent_requests: int = Field(default=256, ge=0, le=100_000)
    # Group commit: concurrent payment requests share one INSERT of at most this many rows,
    # with at most intake_batch_in_flight such statements at once (1 and 1: no sharing).
    intake_batch_max: int = Field(default=256, ge=1, le=10_000)
    intake_batch_in_flight: int = Field(default=4, ge=1, le=100)
    # How long a web process remembers a known API key (0: look it up on every request). A
    # revoke takes effect at once in the process that served it, within this time in others.
    auth_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    # Largest amount accepted, in minor units; above it the request gets 422.
    max_amount: int = Field(default=1_000_000_000_000, ge=1, le=2**62)
    # ISO 4217 code used when a request names none; amounts are integers in its minor unit.
    default_currency: str = Field(default="KRW", pattern=r"^[A-Z]{3}$")  # checked by _currency
    # Prefix of transaction ids: <prefix>_<YYYYMMDD>_<8 random digits>.
    tid_prefix: str = Field(default="DUMMY", pattern=r"^[A-Z0-9]{1,16}$")
    # Where a payment's webhook goes when its request names no webhookUrl.
    default_webhook_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8082/api/webhook/pg/DUMMY")

    # --- engine (the `worker` process) ---
    # The acquirer that approves or declines (the simulator in development).
    acquirer_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8082/acquirer")
    # The seed's scheduler flag: false stops the scheduled safety-net poll (NOTIFY still wakes).
    polling_enabled: bool = True
    # The seed's initialDelay and fixedDelay, kept as defaults; they only pace the safety net.
    polling_initial_delay_ms: int = Field(default=5000, ge=0)
    polling_fixed_delay_ms: int = Field(default=3000, ge=10)
    # Rows claimed per statement (the seed's BATCH_SIZE was 10). Each claim and each settle is
    # a commit, and under load commits (WAL flushes) are what payments wait on: 50 measured
    # 529 -> 707 payments/s end to end over 10. A full batch polls again at once.
    batch_size: int = Field(default=50, ge=1, le=10_000)
    # Scheduler jobs of each kind (payments, refunds, webhooks) per worker process, each with a
    # batch of its own in flight; more keep the CPU busy while passes wait on providers and
    # PostgreSQL.
    worker_loops: int = Field(default=4, ge=1, le=64)
    # CPU niceness the worker process adds to itself at start (0-19). Where web and workers
    # share cores, accepting a payment (a client waits on it) comes before settling one (the
    # webhook reports it later): under overload the intake keeps answering and the backlog
    # waits in the database. Irrelevant where workers have cores of their own.
    worker_nice: int = Field(default=5, ge=0, le=19)
    # A claim is a lease: if the worker dies, the row is taken up again after this long.
    lease_seconds: float = Field(default=30.0, gt=0)
    # How often expired leases are looked for.
    reaper_interval_ms: int = Field(default=1000, ge=10)
    # One acquirer call may take this long before it counts as failed.
    acquirer_timeout_seconds: float = Field(default=5.0, gt=0)
    # Tries of one acquirer call within a claim (backoff with jitter between them).
    acquirer_max_attempts: int = Field(default=3, ge=1, le=20)
    # A payment that got no answer is tried again after a backoff from this...
    acquirer_requeue_seconds: float = Field(default=0.5, ge=0)
    # ...doubling (with jitter) up to this.
    acquirer_requeue_max_seconds: float = Field(default=60.0, ge=0)
    # A payment whose outcome stays unknown this long is shown as UNRESOLVED (still inquired).
    unresolved_after_seconds: float = Field(default=600.0, gt=0)

    # --- the Atom provider (provider 'atom'; protocol in engine/providers/atom_crypto.py) ---
    atom_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8082/atom")
    # DEV ONLY, public in this repository: the simulator's defaults (SIM_ATOM_*), so `make run`
    # works. Set every ENGINE_ATOM_* credential to what Atom issued outside development.
    atom_merch_id: str = Field(default="900001", min_length=1)
    atom_password: str = Field(default="dev-only-atom-password", min_length=1)
    atom_req_hash_key: str = Field(default="dev-only-atom-req-hash-key", min_length=1)
    atom_res_hash_key: str = Field(default="dev-only-atom-res-hash-key", min_length=1)
    atom_req_enc_key: str = Field(default="DE5E1A70A7011EC0DE0000000000A71E", min_length=1)
    atom_res_enc_key: str = Field(default="DE5E1A70A7011EC0DE0000000000A7FE", min_length=1)
    # One Atom call may take this long before its outcome counts as unknown.
    atom_timeout_seconds: float = Field(default=5.0, gt=0)
    # A checkout payment through Atom's hosted page (REQUIRES_ACTION) waits this long for the
    # customer; then, if Atom has no decision, it ends FAILED with ACTION_EXPIRED (never
    # charged). Keep it at least as long as Atom's own token lifetime.
    atom_action_expiry_seconds: float = Field(default=600.0, gt=0, le=86400)
    # Meanwhile, with no callback, Atom's STATUS is asked this often (and once at the expiry).
    atom_action_inquiry_seconds: float = Field(default=30.0, gt=0, le=3600)
    # The gateway's address as customers' browsers and Atom reach it: Atom's callback
    # ({public_url}/api/providers/atom/callback) and the return page (/app/return/...).
    public_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8083")

    # --- test mode's providers: payments made with sk_test_ keys go here, never to live ---
    # The settings above are live mode's. Each of these left unset takes the live value, which
    # is what development wants (both at the simulator); production refuses to start unless
    # every one is set and the test acquirer/Atom differ from the live ones.
    test_acquirer_url: AnyHttpUrl | None = None
    test_atom_url: AnyHttpUrl | None = None
    test_atom_merch_id: str | None = Field(default=None, min_length=1)
    test_atom_password: str | None = Field(default=None, min_length=1)
    test_atom_req_hash_key: str | None = Field(default=None, min_length=1)
    test_atom_res_hash_key: str | None = Field(default=None, min_length=1)
    test_atom_req_enc_key: str | None = Field(default=None, min_length=1)
    test_atom_res_enc_key: str | None = Field(default=None, min_length=1)

    # --- checkout's SSE streams (api/checkout/stream.py) ---
    # Streams open at once per checkout session and per client address in one web process;
    # past either, 429 with Retry-After. Each stream is a socket and a few KiB of memory; the
    # bench (`python -m bench.sse`) raises both to hold 10,000 streams from one address.
    checkout_streams_per_session: int = Field(default=20, ge=1, le=1_000_000)
    checkout_streams_per_address: int = Field(default=200, ge=1, le=1_000_000)
    # A comment line on every open stream this often, so proxies keep it open.
    checkout_stream_heartbeat_seconds: float = Field(default=15.0, gt=0, le=3600)

    # --- merchants' limits ---
    # Working API keys per merchant and mode (a roll may go one over during its grace period).
    max_api_keys: int = Field(default=20, ge=1, le=1000)
    # Active webhook endpoints per merchant and mode.
    max_webhook_endpoints: int = Field(default=16, ge=1, le=1000)
    # Webhooks queued for one payment (its own, plus resends by the manual trigger) within
    # webhook_resend_window_seconds; past it a resend answers 429.
    webhook_resends_per_window: int = Field(default=5, ge=1, le=1000)
    webhook_resend_window_seconds: float = Field(default=600.0, gt=0)

    # --- webhooks ---
    # One attempt, connection and answer included, and the connection alone.
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_connect_timeout_seconds: float = Field(default=3.0, gt=0)
    # The webhook connection pool, apart from the acquirer's: in all, and per merchant host,
    # so an endpoint that holds connections open slows only its own deliveries.
    webhook_connections: int = Field(default=200, ge=1, le=10_000)
    webhook_connections_per_host: int = Field(default=10, ge=1, le=1000)
    # Attempts before a delivery is DEAD (kept, listed, sendable again; never dropped).
    webhook_max_attempts: int = Field(default=16, ge=1, le=100)
    # Backoff between attempts: exponential from initial, capped at max, with jitter. The
    # defaults (1 min doubling to 12 h, 16 attempts) keep retrying for about 3.2 days, so a
    # merchant's outage of a weekend loses nothing; an endpoint that answers 2xx again gets
    # its waiting deliveries at once, not after their backoff.
    webhook_backoff_initial_seconds: float = Field(default=60.0, ge=0)
    webhook_backoff_max_seconds: float = Field(default=43_200.0, ge=0)
    # The only private destinations (loopback, private, link-local ...) webhooks may reach:
    # comma-separated host:port, IPv6 as [::1]:8082. Empty by default; `make run` sets the
    # simulator's 127.0.0.1:8082.
    webhook_allowed_hosts: str = ""
    webhook_batch_size: int = Field(default=50, ge=1, le=10_000)
    # Signs deliveries to urls with no registered endpoint (`python -m engine.commands.endpoints`);
    # The server secret API keys are hashed with (HMAC-SHA256). Changing it invalidates every
    # key. The default is public and for development only: set your own in production.
    api_key_secret: str = Field(default=DEV_API_KEY_SECRET, min_length=16)
    # `whsec_<base64>`. The default is the public DEV_WEBHOOK_SECRET: set it in production.
    webhook_secret: str = DEV_WEBHOOK_SECRET

    # On SIGTERM a worker stops claiming and waits this long for what it holds.
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)

    # uvloop (default) or asyncio's own loop, for the web and worker processes.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    # --- security ---
    # "production" refuses to start while a setting is unsafe (production_problems() below).
    env: Literal["development", "production"] = "development"
    # /metrics needs `Authorization: Bearer <token>` when set (at least 16 characters).
    metrics_token: str | None = Field(default=None, min_length=16)
    # When set, /metrics is served only on this port (a second listener of the web process,
    # on web_host; 0: any free port) and answers 404 on the merchant port.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Requests on public, unauthenticated /api/ paths (the provider callbacks) served at once,
    # apart from max_concurrent_requests: slow anonymous bodies cannot starve the merchants.
    max_concurrent_public_requests: int = Field(default=64, ge=0, le=100_000)
    # Failed authentications one client address may make a minute; past it 429 (0: no limit).
    auth_failures_per_minute: int = Field(default=30, ge=0, le=100_000)

    # --- the back office (api/backoffice, engine/accounts) ---
    # Times on its pages are shown in a user's own zone, else in this one (an IANA name).
    backoffice_time_zone: str = "Asia/Seoul"
    # A session ends this long after login, or after this long unused, whichever comes first.
    backoffice_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    backoffice_idle_minutes: float = Field(default=60.0, gt=0, le=24 * 60)
    # Failed logins within backoffice_login_window_seconds, per account (the email typed) and
    # per client address; past either the login answers 429 without checking the password.
    backoffice_login_failures_per_account: int = Field(default=5, ge=1, le=1000)
    backoffice_login_failures_per_address: int = Field(default=20, ge=1, le=100_000)
    backoffice_login_window_seconds: float = Field(default=900.0, gt=0)
    # Argon2id's cost. "fast" is for the test suite only (production refuses it).
    backoffice_password_profile: Literal["strong", "fast"] = "strong"

    # --- logs ---
    # "console" is readable for people; "json" writes one JSON object a line for machines.
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: str) -> str:
        formats.webhook_secret_key(value)  # raises ValueError unless whsec_<base64>
        return value

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        formats.allowed_hosts(value)  # raises ValueError naming an entry that is not host:port
        return value

    @field_validator("backoffice_time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if not formats.is_time_zone(value):
            raise ValueError(f"{value!r} is not an IANA time zone name")
        return value

    @field_validator("default_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not formats.is_currency(value):
            raise ValueError(f"{value!r} is not an ISO 4217 currency in use")
        return value

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("ENGINE_DB_POOL_MIN must not exceed ENGINE_DB_POOL_MAX")
        if self.webhook_backoff_initial_seconds > self.webhook_backoff_max_seconds:
            raise ValueError("ENGINE_WEBHOOK_BACKOFF_INITIAL_SECONDS exceeds the maximum")
        if self.acquirer_requeue_seconds > self.acquirer_requeue_max_seconds:
            raise ValueError("ENGINE_ACQUIRER_REQUEUE_SECONDS exceeds the maximum")
        if self.lease_seconds <= self.acquirer_timeout_seconds:
            # A lease shorter than one call would let a second worker take a live payment.
            raise ValueError("ENGINE_LEASE_SECONDS must exceed ENGINE_ACQUIRER_TIMEOUT_SECONDS")
        if self.lease_seconds <= self.atom_timeout_seconds:
            raise ValueError("ENGINE_LEASE_SECONDS must exceed ENGINE_ATOM_TIMEOUT_SECONDS")
        return self


def acquirer_url(settings: Settings, mode: str) -> str:
    """The card acquirer of `mode` (test mode's falls back to live's where unset)."""
    url = settings.test_acquirer_url if mode == "test" else None
    return str(url or settings.acquirer_url).rstrip("/")


def atom_url(settings: Settings, mode: str) -> str:
    """Atom's endpoint for `mode` (test mode's falls back to live's where unset)."""
    url = settings.test_atom_url if mode == "test" else None
    return str(url or settings.atom_url).rstrip("/")


def atom_value(settings: Settings, mode: str, name: str) -> str:
    """One Atom credential (`merch_id`, `password`, `req_hash_key`, ...) of `mode`."""
    value: str | None = getattr(settings, f"test_atom_{name}") if mode == "test" else None
    return value or str(getattr(settings, f"atom_{name}"))


# Secrets whose default is public in this repository: (setting, public default). Any field
# named *_secret, *_password or *_key still at its declared default is refused too, so a new
# secret is covered without an entry; list here what that rule would not catch.
PUBLIC_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("webhook_secret", DEV_WEBHOOK_SECRET),
    ("api_key_secret", DEV_API_KEY_SECRET),
    ("atom_merch_id", "900001"),
)
_SECRET_SUFFIXES = ("_secret", "_password", "_key")
# The simulator's default address: fine for test mode, never for money that moves.
SIMULATOR_URL = "http://127.0.0.1:8082"


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    return "DATABASE_URL" if field.lower() == "database_url" else f"ENGINE_{field.upper()}"


def _is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:  # the legacy spellings the resolver accepts: 127.1, 2130706433, 0x7f.0.0.1
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _allowed_hosts(value: str) -> list[str]:
    hosts = []
    for entry in value.split(","):
        entry = entry.strip()
        if entry:  # host:port, [v6]:port, or a bare host
            hosts.append(urlsplit(f"//{entry}").hostname or entry)
    return hosts


def _public_secrets(settings: Settings) -> list[str]:
    fields = type(settings).model_fields
    named = dict(PUBLIC_DEFAULTS)
    for name, info in fields.items():
        if name.endswith(_SECRET_SUFFIXES) and isinstance(info.default, str) and info.default:
            named.setdefault(name, info.default)
    return [
        f"{env_name(name)} is the public development default: set your own"
        for name, default in named.items()
        if getattr(settings, name, None) == default
    ]


# Test mode's provider settings, each with the live one it must not fall back to in production.
TEST_PROVIDER_FIELDS = (
    "acquirer_url",
    "atom_url",
    "atom_merch_id",
    "atom_password",
    "atom_req_hash_key",
    "atom_res_hash_key",
    "atom_req_enc_key",
    "atom_res_enc_key",
)


def _test_providers_apart(settings: Settings) -> list[str]:
    """Test keys must never reach live money: every test provider setting is set, and differs."""
    problems = []
    for live in TEST_PROVIDER_FIELDS:
        test = getattr(settings, f"test_{live}")
        if test is None:
            problems.append(
                f"{env_name(f'test_{live}')} is unset: test payments would use "
                f"the live {env_name(live)}"
            )
        elif live in ("acquirer_url", "atom_url", "atom_merch_id") and (
            str(test) == str(getattr(settings, live))
        ):
            problems.append(
                f"{env_name(f'test_{live}')} equals {env_name(live)}: test "
                "payments would reach live money"
            )
    return problems


def production_problems(settings: Settings) -> list[str]:
    """Every setting that is unsafe in production, one line each (empty: safe to start)."""
    problems = _public_secrets(settings)
    if not settings.database_url:
        problems.append("DATABASE_URL is unset (the embedded PostgreSQL is for development)")
    allowed: Any = getattr(settings, "webhook_allowed_hosts", "") or ""
    loopback = [h for h in _allowed_hosts(str(allowed)) if _is_loopback(h)]
    if loopback:
        problems.append(f"ENGINE_WEBHOOK_ALLOWED_HOSTS allows loopback ({', '.join(loopback)})")
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if (
            name.endswith("_url")
            and "test" not in name
            and name != "database_url"
            and (str(value).startswith(SIMULATOR_URL))
        ):
            problems.append(f"{env_name(name)} points at the simulator ({value})")
    problems += _test_providers_apart(settings)
    if not str(settings.public_url).startswith("https://"):
        # Atom sends customers back, and its callbacks, to this address.
        problems.append(f"ENGINE_PUBLIC_URL is not https ({settings.public_url})")
    if settings.backoffice_password_profile != "strong":
        problems.append("ENGINE_BACKOFFICE_PASSWORD_PROFILE is not strong (it is for tests only)")
    if settings.metrics_token is None and settings.metrics_port is None:
        problems.append(
            "/metrics is public on the merchant port: set ENGINE_METRICS_TOKEN or "
            "ENGINE_METRICS_PORT"
        )
    return problems


def load() -> Settings:
    """Read settings from the environment; a bad or (in production) unsafe one stops it."""
    try:
        settings = Settings()
    except ValidationError as exc:
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            print(f"invalid setting {env_name(name)}: {err['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.env == "production":
        problems = production_problems(settings)
        if problems:
            lines = "".join(f"\n  - {p}" for p in problems)
            print(f"refusing to start with ENGINE_ENV=production:{lines}", file=sys.stderr)
            raise SystemExit(2)
    return settings
