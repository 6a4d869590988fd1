"""The database dies under load: three Patroni nodes, and the chaos suite's invariants after.

One cluster for the module (engine.commands.ha, on free ports in a temporary folder); each case
gets its own database on it, the real web, two workers and the simulator, and a few hundred
payments posted while the fault happens. The workers' scheduled poll is off, so a payment
accepted after the fault settles only if a worker heard its NOTIFY: the LISTEN connections must
have found the new primary by themselves.

Then what must always hold (tests/chaos): every 202 is exactly one row on the primary now, the
acquirer's ledger is the SUCCESS payments each charged once, leases left on the dead primary
are taken back in time, every final payment's webhook is delivered; and the intake answered
nothing but 202 or 503 with Retry-After meanwhile, within the client's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from api import state
from api.app import create_app
from config.settings import Settings
from engine.commands.ha import Cluster, Node
from engine.reports import PaymentQuery
from engine.store import db
from engine.store.reports import ReportsStore
from tests.chaos import harness
from tests.chaos.harness import CHAOS_MID, ChaosConfig, Load, System, Watch
from tests.e2e.conftest import free_port
from tests.merchant_cli import bearer, create_merchant
from tests.waiting import wait_until

pytestmark = [pytest.mark.ha, pytest.mark.chaos, pytest.mark.timeout(240)]

# Small and bounded: a few hundred payments, the fault at a fifth of them (most of the load
# still to come, so the engine is seen accepting again after it).
CONFIG = ChaosConfig(payments=300, workers=2, concurrency=8, rate=40.0, settle_timeout=90.0)
FAULT_AT = 0.2


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Three Patroni nodes, a leader and a synchronous standby, for this module's cases."""
    folder = Path(tempfile.mkdtemp(prefix="engine-ha-"))
    nodes = [Node(f"node{i + 1}", free_port(), free_port(), free_port()) for i in range(3)]
    c = Cluster(folder / "cluster", nodes)
    try:
        c.start()
        c.wait_ready(timeout=120)
        yield c
    finally:
        c.kill()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class ClusterDatabase:
    """What the chaos harness's System needs of its PostgreSQL: a URL (here, every node's)."""

    url: str


async def _database(cluster: Cluster, name: str) -> ClusterDatabase:
    await cluster.create_database(name)
    target = ClusterDatabase(cluster.url(name))
    conn = await db.connect(target.url)
    try:
        await db.migrate(conn)
    finally:
        await conn.close()
    return target


@dataclass
class Outcome:
    """What a case observed, for its assertions and its printed line."""

    report: harness.Report
    load: Load
    fault: dict[str, Any]


Fault = Callable[[Cluster, Load], Awaitable[dict[str, Any]]]


async def _run(cluster: Cluster, name: str, fault: Fault) -> Outcome:
    """Payments through the real processes on the cluster, `fault` at FAULT_AT of them."""
    await asyncio.to_thread(cluster.wait_ready, 120)
    target = await _database(cluster, name)
    logs = Path(tempfile.mkdtemp(prefix=f"engine-ha-{name}-"))
    system = System(CONFIG, target, logs)  # type: ignore[arg-type]
    # No safety-net poll: after the fault only a NOTIFY heard on a re-established LISTEN
    # (or a worker's own reconnect and retries) can wake the workers.
    system.extra_env = {"ENGINE_POLLING_ENABLED": "false"}
    try:
        merchant = await create_merchant(
            system.env(),
            mid=CHAOS_MID,
            name="Failover merchant",
            webhook_url=f"{system.sim}/api/webhook/pg/DUMMY",
        )
        system.start()
        headers = bearer(merchant["apiKey"])
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            await harness._wait_http(session, f"{system.sim}/health", 30)
            await harness._wait_http(session, f"{system.web}/health", 30)
            await harness._admin(
                session,
                f"{system.sim}/api/webhook/admin/secrets",
                {"secrets": [merchant["webhookEndpoint"]["secret"]]},
            )
            load = Load(CONFIG, system.web)
            watch = Watch(system)
            watchers = asyncio.gather(watch.watch_unresolved(session), watch.watch_leases())
            try:
                _, observed = await asyncio.gather(load.run(session), fault(cluster, load))
                await harness._settle(target.url, CONFIG.settle_timeout)
            finally:
                watch.stop.set()
                await watchers
            report = await harness._check(system, load, watch, session, expect_unresolved=False)
        return Outcome(report, load, observed)
    except BaseException:
        print(system.tail())
        raise
    finally:
        system.stop()
        shutil.rmtree(logs, ignore_errors=True)


async def _first_202_after(load: Load, started: float) -> float:
    done = load.done
    await wait_until(lambda: load.done > done, what="a payment accepted again", timeout=60)
    return round(time.monotonic() - started, 2)


async def kill_the_primary(cluster: Cluster, load: Load) -> dict[str, Any]:
    """SIGKILL the leader's PostgreSQL; Patroni promotes the synchronous standby."""
    await wait_until(lambda: load.done >= FAULT_AT * CONFIG.payments, what="load", timeout=60)
    members = await asyncio.to_thread(cluster.members)
    old = next(m["name"] for m in members if m["role"] == "leader")
    sync = next(m["name"] for m in members if m["role"] == "sync_standby")
    started = time.monotonic()
    await asyncio.to_thread(cluster.kill_postgres, cluster.node(old))

    async def new_leader() -> str | None:
        name = await asyncio.to_thread(cluster.leader_name)
        return name if name not in (None, old) else None

    leader = await wait_until(new_leader, what="a new leader", timeout=60, interval=0.1)
    promoted = round(time.monotonic() - started, 2)
    return {
        "old": old,
        "sync": sync,
        "new": leader,
        "promoted_after_s": promoted,
        "accepting_again_after_s": await _first_202_after(load, started),
    }


def _assert_held(outcome: Outcome) -> None:
    table = outcome.report.table()
    print(f"{table}\nfault: {outcome.fault}\nintake retries: {dict(outcome.load.retried)}")
    assert outcome.report.ok, table
    retried = outcome.load.retried
    # 503 with Retry-After, or the connection refused while the web restarted: never a 500,
    # never a request left hanging past the client's timeout.
    assert not retried["500"], retried
    assert not retried["503 without Retry-After"], retried
    assert not any("Timeout" in kind for kind in retried), retried


async def test_the_primary_dies_under_load(cluster: Cluster) -> None:
    outcome = await _run(cluster, "failover_primary", kill_the_primary)
    _assert_held(outcome)
    # The synchronous standby, which has every acknowledged commit, is the one promoted.
    assert outcome.fault["new"] == outcome.fault["sync"], outcome.fault


async def _sample_sync_names(cluster: Cluster, stop: asyncio.Event, seen: set[str]) -> None:
    """The primary's synchronous_standby_names, sampled until `stop`: empty would mean a
    commit acknowledged with no standby's confirmation."""
    conn: asyncpg.Connection | None = None
    try:
        while not stop.is_set():
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(cluster.url("postgres"), timeout=5)
                seen.add(await conn.fetchval("SHOW synchronous_standby_names", timeout=5))
            except (
                OSError,
                TimeoutError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
            ):
                conn = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
    finally:
        if conn is not None and not conn.is_closed():
            await conn.close()


async def kill_the_sync_standby(cluster: Cluster, load: Load) -> dict[str, Any]:
    """SIGKILL the synchronous standby's PostgreSQL; Patroni names the other one."""
    await wait_until(lambda: load.done >= FAULT_AT * CONFIG.payments, what="load", timeout=60)
    members = await asyncio.to_thread(cluster.members)
    leader = next(m["name"] for m in members if m["role"] == "leader")
    killed = next(m["name"] for m in members if m["role"] == "sync_standby")
    seen: set[str] = set()
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_sync_names(cluster, stop, seen))
    try:
        await wait_until(lambda: len(seen) > 0, what="a first sample", timeout=10)
        started = time.monotonic()
        await asyncio.to_thread(cluster.kill_postgres, cluster.node(killed))

        async def other_sync() -> str | None:
            for m in await asyncio.to_thread(cluster.members):
                if m["role"] == "sync_standby" and m["name"] != killed:
                    return str(m["name"])
            return None

        new_sync = await wait_until(other_sync, what="another sync standby", timeout=60)
        renamed = round(time.monotonic() - started, 2)
        accepting = await _first_202_after(load, started)
        # Sample on a little past the renaming, while payments keep committing (or all are in).
        more = min(load.done + 20, CONFIG.payments)
        await wait_until(lambda: load.done >= more, what="more payments", timeout=60)
    finally:
        stop.set()
        await sampler
    return {
        "leader": leader,
        "leader_after": await asyncio.to_thread(cluster.leader_name),
        "killed": killed,
        "new_sync": new_sync,
        "renamed_after_s": renamed,
        "accepting_after_s": accepting,
        "sync_names_seen": sorted(seen),
    }


async def test_the_sync_standby_dies_under_load(cluster: Cluster) -> None:
    outcome = await _run(cluster, "failover_standby", kill_the_sync_standby)
    _assert_held(outcome)
    fault = outcome.fault
    assert fault["leader_after"] == fault["leader"], fault
    assert fault["new_sync"] != fault["killed"], fault
    # synchronous_mode_strict: the primary never ran without a synchronous standby named, so
    # no commit was acknowledged without a standby's confirmation meanwhile.
    assert "" not in fault["sync_names_seen"], fault


async def switch_over(cluster: Cluster, load: Load) -> dict[str, Any]:
    """A planned switchover to the synchronous standby (as `patronictl switchover` does)."""
    await wait_until(lambda: load.done >= FAULT_AT * CONFIG.payments, what="load", timeout=60)
    members = await asyncio.to_thread(cluster.members)
    old = next(m["name"] for m in members if m["role"] == "leader")
    sync = next(m["name"] for m in members if m["role"] == "sync_standby")
    started = time.monotonic()
    await asyncio.to_thread(cluster.switchover, sync)

    async def new_leader() -> str | None:
        name = await asyncio.to_thread(cluster.leader_name)
        return name if name not in (None, old) else None

    leader = await wait_until(new_leader, what="the new leader", timeout=60, interval=0.1)
    return {
        "old": old,
        "new": leader,
        "switched_after_s": round(time.monotonic() - started, 2),
        "accepting_again_after_s": await _first_202_after(load, started),
    }


async def test_a_planned_switchover_under_load(cluster: Cluster) -> None:
    outcome = await _run(cluster, "switchover", switch_over)
    _assert_held(outcome)
    assert outcome.fault["new"] != outcome.fault["old"], outcome.fault


async def test_lists_read_a_standby_when_replica_reads_are_on(cluster: Cluster) -> None:
    """ENGINE_REPLICA_READS: the web's lists pool is a standby's; a payment's timeline (which
    may follow the caller's own action) still reads the primary; off, both are the primary."""
    await asyncio.to_thread(cluster.wait_ready, 120)
    target = await _database(cluster, "replica_reads")
    settings = Settings(database_url=target.url, data_dir=Path(tempfile.gettempdir()))
    for replica_reads, lists_on_standby in ((True, True), (False, False)):
        app = create_app(settings.model_copy(update={"replica_reads": replica_reads}))
        async with TestServer(app):
            primary, lists = app[state.REPO].pool, app[state.LISTS]
            assert await primary.fetchval("SELECT pg_is_in_recovery()") is False
            assert await lists.fetchval("SELECT pg_is_in_recovery()") is lists_on_standby
            store = ReportsStore(primary, lists=lists)
            order = f"REPLICA_{replica_reads}"
            await primary.execute(
                "INSERT INTO payment_processes (public_id, tid, mid, order_id, user_public_id,"
                " amount, request_digest, webhook_url, mode)"
                " VALUES ($1, $1, 'replica_m', $1, 'C', 1000, 'd', 'http://127.0.0.1:9/h',"
                " 'test')",
                order,
            )
            params = PaymentQuery(search=order).params("replica_m", "test", None, 10)

            async def listed() -> bool:
                return [r.tid for r in await store.page(params)] == [order]

            # Synchronous commit waits for the standby's flush, not its replay: soon, not now.
            await wait_until(listed, what="the payment listed from the lists pool", timeout=10)
            assert [r["to_status"] for r in await store.timeline("replica_m", "test", order)]
