"""Connections and migrations: the pool every process opens, and the schema it expects."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from engine.backoff import Backoff

log = structlog.get_logger()

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "sql" / "migrations"
# Any fixed number: every process that migrates takes this lock, so only one runs them at a time.
_MIGRATION_LOCK = 72_201_003


def dumps(value: Any) -> str:
    """JSON text as the jsonb codec writes it."""
    # The standard library, not orjson: echo may hold integers beyond 64 bits, kept exactly.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=dumps, decoder=json.loads, schema="pg_catalog")


CONNECT_TIMEOUT_SECONDS = 5.0
COMMAND_TIMEOUT_SECONDS = 30.0

# Connecting fails like this while PostgreSQL is down or starting; anything else (a wrong
# password, a missing database) is a configuration error and stops the process.
# With several hosts (a Patroni cluster), none accepting writes yet is the same: wait.
_NOT_UP_YET = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TargetServerAttributeNotMatched,
)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip the default reset on release (RESET ALL, UNLISTEN *, …): a round trip per query.

    Safe because pooled connections never keep session state: settings are SET LOCAL, the
    migration lock is released in a finally, LISTEN uses its own connection. asyncpg still
    rolls back any open transaction before calling this.
    """


def _log_unavailable(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning("database.unavailable", attempt=state.attempt_number, error=str(error))


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool whose connections read and write jsonb; wait for PostgreSQL if it is down."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(_NOT_UP_YET),
        wait=Backoff(0.1, 5.0),
        before_sleep=_log_unavailable,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                reset=_keep_session,
                # Fail fast while PostgreSQL is down: the intake answers 503, workers back off.
                timeout=CONNECT_TIMEOUT_SECONDS,
                command_timeout=COMMAND_TIMEOUT_SECONDS,
            )
    assert pool is not None
    return pool


def prefer_standby(dsn: str) -> str:
    """`dsn` for reads that may go to a standby: target_session_attrs=prefer-standby (a
    standby when one answers, else the primary)."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "target_session_attrs"]
    query.append(("target_session_attrs", "prefer-standby"))
    return urlunsplit(parts._replace(query=urlencode(query)))


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection set up like the pool's (for LISTEN and for tests)."""
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SECONDS)
    await _init_connection(conn)
    return conn


# How often a LISTEN connection is pinged. A primary whose machine vanished closes no socket:
# without a ping, a listener would wait on it forever instead of reconnecting to the new one.
LISTEN_PING_SECONDS = 5.0


async def hold(
    conn: asyncpg.Connection, until: asyncio.Event, *, every: float = LISTEN_PING_SECONDS
) -> None:
    """Return when `until` is set or `conn` is lost (closed, or silent to a ping)."""
    lost = asyncio.Event()
    conn.add_termination_listener(lambda _c: lost.set())
    while not (until.is_set() or lost.is_set() or conn.is_closed()):
        waits = {asyncio.ensure_future(until.wait()), asyncio.ensure_future(lost.wait())}
        done, pending = await asyncio.wait(
            waits, timeout=every, return_when=asyncio.FIRST_COMPLETED
        )
        for waiting in pending:
            waiting.cancel()
        if done:
            return
        try:
            await conn.fetchval("SELECT 1", timeout=every)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            return


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """The numbered .sql files, in the order they apply."""
    files = sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    numbers = [f.name[:4] for f in files]
    if len(set(numbers)) != len(numbers):
        raise RuntimeError(f"two migrations share a number in {directory}")
    return files


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet applied, each in its own transaction; return their names."""
    applied_now: list[str] = []
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for path in migration_files(directory):
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", path.name)
            applied_now.append(path.name)
            log.info("migration.applied", version=path.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now
