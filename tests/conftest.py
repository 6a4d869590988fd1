"""Fixtures on a real PostgreSQL: one server per run, a migrated template, a database per test.

DATABASE_URL points the suite at any PostgreSQL; unset, an embedded server is started in a
temporary folder and deleted at the end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from config.settings import Settings
from engine.store import db, devdb
from engine.store.repository import Repository
from simulator import SimulatorSettings, running
from simulator.server import SimulatorHandle

TEMPLATE = "engine_test_template"


def with_database(url: str, name: str) -> str:
    """The same server URL, naming another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server for the whole run."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    folder = Path(tempfile.mkdtemp(prefix="engine-pg-"))
    server = devdb.embedded_server(folder / "pg")
    try:
        yield str(server.get_uri())
    finally:
        ep = devdb._embedded()
        ep.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=folder / "pg", user=server.system_user)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def template_url(server_url: str) -> str:
    """A database migrated once; every test copies it."""

    async def build() -> None:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await admin.close()
        conn = await asyncpg.connect(with_database(server_url, TEMPLATE))
        try:
            await db.migrate(conn)
        finally:
            await conn.close()

    asyncio.run(build())
    return with_database(server_url, TEMPLATE)


@pytest.fixture
async def database_url(server_url: str, template_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test, dropped after it."""
    name = f"engine_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        yield with_database(server_url, name)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    """The simulator on a free port, seeded, approving about 80 %."""
    async with running(SimulatorSettings(port=0, seed="tests", success_rate=0.8)) as handle:
        yield handle


@pytest.fixture
def settings(database_url: str, sim: SimulatorHandle) -> Settings:
    """Settings for in-process tests: this test's database and simulator, fast timings."""
    return Settings(
        database_url=database_url,
        data_dir=Path(tempfile.gettempdir()),
        acquirer_url=f"{sim.url}/acquirer",
        default_webhook_url=f"{sim.url}/api/webhook/pg/DUMMY",
        polling_initial_delay_ms=0,
        polling_fixed_delay_ms=200,
        reaper_interval_ms=100,
        webhook_backoff_initial_seconds=0.01,
        webhook_backoff_max_seconds=0.05,
        # Loopback is refused unless allowed: the simulator's receiver, and the discard port
        # where tests send deliveries that must fail to connect.
        webhook_allowed_hosts=f"127.0.0.1:{sim.port},127.0.0.1:9",
        acquirer_requeue_seconds=0.05,
        shutdown_grace_seconds=5,
        # Tests resend webhooks by hand many times; the limit itself is tested on its own.
        webhook_resends_per_window=100,
    )


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on this test's database."""
    p = await db.create_pool(database_url, min_size=1, max_size=10)
    yield p
    await p.close()


@pytest.fixture
def repo(pool: asyncpg.Pool) -> Repository:
    """The repository on this test's database."""
    return Repository(pool)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session for the engine's outgoing calls."""
    async with aiohttp.ClientSession() as session:
        yield session


MID = "hamster_dummy_mid_001"


@pytest.fixture
async def api_key(repo: Repository, settings: Settings) -> str:
    """A test-mode key of the merchant the seed's echo.mid names."""
    await repo.merchants.create_merchant(MID, "Test merchant")
    return (await repo.merchants.issue_key(MID, "test", settings.api_key_secret)).key


@pytest.fixture
async def client(aiohttp_client, settings: Settings, api_key: str) -> TestClient:  # type: ignore[no-untyped-def]
    """The intake app on a real socket, on this test's database, calling with `api_key`."""
    return await aiohttp_client(
        create_app(settings), headers={"Authorization": f"Bearer {api_key}"}
    )


SEED_REQUEST = {
    "userPublicId": "USR_123",
    "orderId": "ORD_456",
    "amount": 10000,
    "echo": {
        "mid": "hamster_dummy_mid_001",
        "orderNumber": "TEST_ORDER",
        "gatewayReferenceId": "CGW_REF_123",
    },
}
