"""The chaos suite: real processes, real faults, and invariants checked at the end.

It pushes N payments through the real `web`, several `worker` processes and the `simulator`,
on its own embedded PostgreSQL, while it SIGKILLs workers at random moments and restarts them,
turns on every acquirer fault, takes the acquirer down for longer than the unresolved window,
makes the merchant fail for a while and restarts PostgreSQL once. The acquirer charges on every
authorize call (it does not deduplicate by reference), so only the engine's inquiry before a
resend keeps a payment from being charged twice. While this runs it watches for payments listed
as unresolved and for leases left expired; then it waits for the system to settle and checks
what must always hold.

    python -m tests.chaos --payments 2000
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from engine.store import db
from tests.chaos import checks
from tests.merchant_cli import bearer, create_merchant
from tests.pgserver import OwnServer

ROOT = Path(__file__).resolve().parents[2]
# The merchant every chaos payment belongs to (created with the operators' CLI).
CHAOS_MID = "chaos_mid"


@dataclass
class ChaosConfig:
    """How hard to push."""

    payments: int = 2000
    workers: int = 3
    concurrency: int = 16
    # Payments per second offered, so that the faults land while payments still arrive.
    rate: float = 60.0
    # Mean seconds between two worker kills.
    kill_every: float = 2.0
    seed: int = 1
    # Probability of each acquirer fault per call while faults are on.
    fault_rate: float = 0.04
    # Probability that a status inquiry fails while faults are on: high, so that some unknown
    # outcomes outlast the unresolved window and the UNRESOLVED path is taken.
    inquiry_fault_rate: float = 0.3
    # One acquirer outage (every call 503) this long, past UNRESOLVED_AFTER: what is in flight
    # then becomes UNRESOLVED, and must come back once the acquirer does.
    outage_seconds: float = 4.0
    # The acquirer charges again on every authorize call (SIM_CHARGE_EVERY_CALL).
    charge_every_call: bool = True
    settle_timeout: float = 240.0


# Engine timings of the run (ENGINE_* variables), also used by the checks.
LEASE_SECONDS = 2.0
REAPER_INTERVAL_SECONDS = 0.2
UNRESOLVED_AFTER_SECONDS = 2.0
# How long past its lease a PROCESSING row may still be seen while work runs: one reaper
# interval, plus slack for a PostgreSQL restart (2 s down, then the workers reconnect: no
# reaper runs meanwhile) and for workers running niced on busy shared cores.
LEASE_GRACE_SECONDS = REAPER_INTERVAL_SECONDS + 6.0
# How often the watchers sample while work runs.
WATCH_INTERVAL_SECONDS = 0.25


@dataclass
class Report:
    """What happened and whether every invariant held."""

    rows: list[tuple[str, bool, str]] = field(default_factory=list)
    chaos: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every invariant held."""
        return all(passed for _, passed, _ in self.rows)

    def table(self) -> str:
        """The invariants as a printable table."""
        width = max(len(name) for name, _, _ in self.rows)
        lines = [f"{'invariant'.ljust(width)}  result  detail", "-" * (width + 40)]
        for name, passed, detail in self.rows:
            lines.append(f"{name.ljust(width)}  {'PASS' if passed else 'FAIL'}    {detail}")
        lines.append("")
        lines.append("chaos: " + ", ".join(f"{k}={v}" for k, v in self.chaos.items()))
        return "\n".join(lines)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class System:
    """The processes under test."""

    def __init__(self, cfg: ChaosConfig, pg: OwnServer, logs: Path) -> None:
        self.cfg = cfg
        self.pg = pg
        self.logs = logs
        self.web_port = _free_port()
        self.sim_port = _free_port()
        self.web = f"http://127.0.0.1:{self.web_port}"
        self.sim = f"http://127.0.0.1:{self.sim_port}"
        self.workers: list[subprocess.Popen[bytes]] = []
        self.others: list[subprocess.Popen[bytes]] = []
        self.started = 0
        # Settings a variant of the suite changes (the failover tests: the poll off).
        self.extra_env: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "SIM_"))}
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
            DATABASE_URL=self.pg.url,
            ENGINE_LOG_FORMAT="json",
            ENGINE_LOG_LEVEL="warning",
            ENGINE_WEB_PORT=str(self.web_port),
            ENGINE_ACQUIRER_URL=f"{self.sim}/acquirer",
            ENGINE_DEFAULT_WEBHOOK_URL=f"{self.sim}/api/webhook/pg/DUMMY",
            # The merchant receiver is the simulator, on loopback: allowed by name only.
            ENGINE_WEBHOOK_ALLOWED_HOSTS=f"127.0.0.1:{self.sim_port}",
            ENGINE_LEASE_SECONDS=str(LEASE_SECONDS),
            ENGINE_ACQUIRER_TIMEOUT_SECONDS="1",
            ENGINE_ATOM_TIMEOUT_SECONDS="1",
            ENGINE_ACQUIRER_MAX_ATTEMPTS="2",
            ENGINE_ACQUIRER_REQUEUE_SECONDS="0.1",
            ENGINE_ACQUIRER_REQUEUE_MAX_SECONDS="1",
            ENGINE_UNRESOLVED_AFTER_SECONDS=str(UNRESOLVED_AFTER_SECONDS),
            ENGINE_WEBHOOK_TIMEOUT_SECONDS="1",
            ENGINE_WEBHOOK_BACKOFF_INITIAL_SECONDS="0.05",
            ENGINE_WEBHOOK_BACKOFF_MAX_SECONDS="1",
            ENGINE_WEBHOOK_MAX_ATTEMPTS="100",
            ENGINE_POLLING_INITIAL_DELAY_MS="0",
            ENGINE_POLLING_FIXED_DELAY_MS="300",
            ENGINE_REAPER_INTERVAL_MS=str(round(REAPER_INTERVAL_SECONDS * 1000)),
            ENGINE_BATCH_SIZE="20",
            ENGINE_SHUTDOWN_GRACE_SECONDS="3",
            SIM_PORT=str(self.sim_port),
            SIM_SEED=f"chaos-{self.cfg.seed}",
            SIM_SUCCESS_RATE="0.8",
            SIM_CHARGE_EVERY_CALL=str(self.cfg.charge_every_call).lower(),
            SIM_LOG_FORMAT="json",
        )
        env.update(self.extra_env)
        return env

    def _start(self, name: str, module: str) -> subprocess.Popen[bytes]:
        self.started += 1
        log = open(self.logs / f"{name}-{self.started}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return proc

    def start(self) -> None:
        self.others.append(self._start("simulator", "simulator"))
        self.others.append(self._start("web", "api"))
        for _ in range(self.cfg.workers):
            self.workers.append(self._start("worker", "engine.worker"))

    def kill_one_worker(self, rng: random.Random) -> None:
        """SIGKILL a random worker and start a new one in its place."""
        i = rng.randrange(len(self.workers))
        victim = self.workers[i]
        if victim.poll() is None:
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
        self.workers[i] = self._start("worker", "engine.worker")

    def stop(self) -> None:
        for proc in self.workers + self.others:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers + self.others:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def tail(self) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace")
            if "Traceback" in text or "error" in text.lower():
                out.append(f"--- {path.name}\n{text[-3000:]}")
        return "\n".join(out[-6:])


async def _wait_http(session: aiohttp.ClientSession, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not come up in {timeout}s")
        await asyncio.sleep(0.05)


async def _admin(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> None:
    async with session.post(url, json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url} refused {body}: {resp.status} {await resp.text()}")


class Load:
    """Posts payments; each is retried with the same body until it is accepted."""

    def __init__(self, cfg: ChaosConfig, web: str) -> None:
        self.cfg = cfg
        self.web = web
        self.accepted: dict[str, str] = {}  # orderId -> tid
        self.retried: Counter[str] = Counter()
        self.done = 0
        self.start = time.monotonic()

    async def _one(self, session: aiohttp.ClientSession, i: int) -> None:
        body = {
            "userPublicId": f"USR_{i % 97}",
            "orderId": f"CHAOS_{i:06d}",
            "amount": 1000 + i,
            "echo": {"mid": CHAOS_MID, "i": i},
        }
        # Paced: payment i is offered at start + i / rate.
        await asyncio.sleep(max(0.0, self.start + i / self.cfg.rate - time.monotonic()))
        deadline = time.monotonic() + 120
        while True:
            try:
                async with session.post(f"{self.web}/api/payment", json=body) as resp:
                    if resp.status in (200, 202):
                        self.accepted[body["orderId"]] = (await resp.json())["transactionId"]
                        self.done += 1
                        return
                    self.retried[str(resp.status)] += 1
                    if resp.status == 503 and not resp.headers.get("Retry-After"):
                        self.retried["503 without Retry-After"] += 1
                    if resp.status not in (503, 500):
                        raise RuntimeError(f"unexpected {resp.status}: {await resp.text()}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.retried[type(exc).__name__] += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"payment {i} was never accepted")
            await asyncio.sleep(0.1)

    async def run(self, session: aiohttp.ClientSession) -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(self.cfg.payments):
            queue.put_nowait(i)
        self.start = time.monotonic()

        async def lane() -> None:
            while not queue.empty():
                await self._one(session, queue.get_nowait())

        await asyncio.gather(*(lane() for _ in range(self.cfg.concurrency)))


async def _chaos(
    cfg: ChaosConfig,
    system: System,
    load: Load,
    session: aiohttp.ClientSession,
    stats: dict[str, Any],
) -> None:
    rng = random.Random(cfg.seed)
    r = cfg.fault_rate
    await _admin(
        session,
        f"{system.sim}/acquirer/admin/config",
        {
            "timeout_rate": r,
            "hang_ms": 2500,
            "error_rate": r,
            "reset_rate": r,
            "drop_after_charge_rate": r,
            "inquiry_error_rate": cfg.inquiry_fault_rate,
            "fault_seed": str(cfg.seed),
        },
    )
    merchant_failed = pg_restarted = acquirer_down = False
    while load.done < cfg.payments:
        await asyncio.sleep(rng.uniform(0.5, 1.5) * cfg.kill_every)
        system.kill_one_worker(rng)
        stats["worker_kills"] += 1
        progress = load.done / cfg.payments
        if not acquirer_down and progress >= 0.15:
            acquirer_down = True
            await _admin(
                session,
                f"{system.sim}/acquirer/admin/config",
                {"down_for_ms": round(cfg.outage_seconds * 1000)},
            )
            stats["acquirer_outage"] = f"{cfg.outage_seconds}s"
        if not merchant_failed and progress >= 0.3:
            merchant_failed = True
            await _admin(
                session,
                f"{system.sim}/api/webhook/admin/faults",
                {"fail_next": max(20, cfg.payments // 20), "status": 503},
            )
            stats["merchant_outage"] = "503 x" + str(max(20, cfg.payments // 20))
        if not pg_restarted and progress >= 0.5:
            pg_restarted = True
            await asyncio.to_thread(system.pg.stop)
            await asyncio.sleep(2.0)  # a real outage, not a blip
            await asyncio.to_thread(system.pg.start)
            stats["postgres_restarts"] += 1
    # Faults off: the system must now converge by itself.
    await _admin(
        session,
        f"{system.sim}/acquirer/admin/config",
        {
            "timeout_rate": 0,
            "error_rate": 0,
            "reset_rate": 0,
            "drop_after_charge_rate": 0,
            "inquiry_error_rate": 0,
        },
    )
    await _admin(session, f"{system.sim}/api/webhook/admin/faults", {"fail_next": 0})


# Every PROCESSING row whose lease has expired, and by how many seconds.
OVERDUE_SQL = """
SELECT tid, extract(epoch FROM now() - lease_expires_at)::float8 AS overdue
FROM payment_processes
WHERE status = 'PROCESSING' AND lease_expires_at < now()
"""


class Watch:
    """Samples taken while work still runs: unresolved listings, and leases left expired."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.unresolved = checks.UnresolvedSightings()
        self.leases = checks.LeaseSamples()
        self.stop = asyncio.Event()

    async def _pause(self) -> None:
        # Sleeps one interval, or less if the run is over.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), WATCH_INTERVAL_SECONDS)

    async def _read_unresolved(self, session: aiohttp.ClientSession) -> None:
        """Read every page of GET /api/payment/unresolved once."""
        after: int | None = 0
        while after is not None:
            url = f"{self.system.web}/api/payment/unresolved?limit=500&after={after}"
            async with session.get(url) as resp:
                if resp.status != 200:  # e.g. 503 while PostgreSQL restarts: try next time
                    return
                page = await resp.json()
            for p in page["payments"]:
                self.unresolved.saw(p["tid"], p.get("reason"))
            after = page.get("next")
        self.unresolved.polls += 1

    async def watch_unresolved(self, session: aiohttp.ClientSession) -> None:
        """Read the unresolved list until stopped."""
        while not self.stop.is_set():
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await self._read_unresolved(session)
            await self._pause()

    async def watch_leases(self) -> None:
        """Sample PROCESSING rows past their lease until stopped."""
        conn: asyncpg.Connection | None = None
        try:
            while not self.stop.is_set():
                try:
                    if conn is None or conn.is_closed():
                        conn = await db.connect(self.system.pg.url)
                    rows = await conn.fetch(OVERDUE_SQL, timeout=5)
                    self.leases.saw({r["tid"]: r["overdue"] for r in rows}, LEASE_GRACE_SECONDS)
                except (
                    OSError,
                    TimeoutError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    # An idle connection whose server went away (a failover) can fail so.
                    asyncpg.InternalClientError,
                ):
                    conn = None  # PostgreSQL is restarting: sample again once it is back
                await self._pause()
        finally:
            if conn is not None and not conn.is_closed():
                await conn.close()


SETTLED_SQL = """
SELECT count(*) FILTER (WHERE status IN ('PENDING', 'PROCESSING', 'UNRESOLVED')) AS open,
       (SELECT count(*) FROM webhook_deliveries WHERE status IN ('PENDING', 'SENDING'))
           AS undelivered
FROM payment_processes
"""


async def _settle(pg_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await db.connect(pg_url)
            try:
                row = await conn.fetchrow(SETTLED_SQL)
            finally:
                await conn.close()
            if row and row["open"] == 0 and row["undelivered"] == 0:
                return
        except (OSError, asyncpg.PostgresError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"system did not settle in {timeout}s: {dict(row or {})}")
        await asyncio.sleep(0.2)


async def _check(
    system: System,
    load: Load,
    watch: Watch,
    session: aiohttp.ClientSession,
    *,
    expect_unresolved: bool = True,
) -> Report:
    """Every invariant, read from the database, the simulator and the API.

    `expect_unresolved`: the run took the acquirer down past the unresolved window, so the
    UNRESOLVED path must have been seen (the failover runs have no acquirer outage).
    """
    report = Report()
    conn = await db.connect(system.pg.url)
    try:
        rows = await conn.fetch(
            "SELECT id, tid, order_id, status, unresolved_reason, lease_expires_at"
            " FROM payment_processes"
        )
        deliveries = await conn.fetch(
            "SELECT id, payment_id, event_id, status FROM webhook_deliveries"
        )
        report.chaos["payments_with_unknown_outcome"] = await conn.fetchval(
            "SELECT count(*) FROM payment_processes WHERE outcome_unknown_since IS NOT NULL"
        )
        expired = await conn.fetchval(
            "SELECT count(*) FROM payment_processes"
            " WHERE status = 'PROCESSING' AND lease_expires_at < now()"
        )
    finally:
        await conn.close()
    async with session.get(f"{system.sim}/acquirer/charges") as resp:
        charges = (await resp.json())["charges"]
    async with session.get(f"{system.sim}/api/webhook/received") as resp:
        received = (await resp.json())["webhooks"]
    async with session.get(f"{system.web}/api/payment/unresolved?limit=500") as resp:
        listed = {p["tid"] for p in (await resp.json())["payments"]}
    async with session.get(f"{system.web}/api/webhooks/dead?limit=500") as resp:
        dead_listed = {d["id"] for d in (await resp.json())["deliveries"]}

    by_tid = {r["tid"]: r for r in rows}
    accepted = load.accepted
    one_each = (
        len(accepted) == load.cfg.payments
        and len(rows) == len(accepted)
        and all(by_tid.get(tid, {}).get("order_id") == oid for oid, tid in accepted.items())
    )
    report.rows.append(
        (
            "every 202 is exactly one payment row",
            one_each,
            f"{len(accepted)} accepted, {len(rows)} rows",
        )
    )

    status = Counter(r["status"] for r in rows)
    unresolved = [r for r in rows if r["status"] == "UNRESOLVED"]
    final_or_listed = all(
        r["status"] in ("SUCCESS", "FAILED") for r in rows if r["status"] != "UNRESOLVED"
    ) and all(r["tid"] in listed and r["unresolved_reason"] for r in unresolved)
    report.rows.append(
        (
            "every payment final, or listed unresolved with a reason",
            final_or_listed and status["PENDING"] + status["PROCESSING"] == 0,
            ", ".join(f"{k} {v}" for k, v in sorted(status.items())),
        )
    )

    statuses = {r["tid"]: r["status"] for r in rows}
    verdicts = [
        checks.ledger_matches(charges, statuses),
        checks.leases_reaped_in_time(watch.leases, LEASE_GRACE_SECONDS),
    ]
    if expect_unresolved:
        verdicts.insert(1, checks.unresolved_path_proven(watch.unresolved, statuses, listed))
    for verdict in verdicts:
        report.rows.append((verdict.name, verdict.passed, verdict.detail))

    by_payment: dict[int, list[str]] = {}
    for d in deliveries:
        by_payment.setdefault(d["payment_id"], []).append(d["status"])
    final = [r for r in rows if r["status"] in ("SUCCESS", "FAILED")]
    covered = all(
        "DELIVERED" in by_payment.get(r["id"], []) or "DEAD" in by_payment.get(r["id"], [])
        for r in final
    )
    dead = {d["id"] for d in deliveries if d["status"] == "DEAD"}
    report.rows.append(
        (
            "every final payment: webhook delivered, or DEAD and listed",
            covered and dead <= dead_listed,
            f"{sum('DELIVERED' in s for s in by_payment.values())} delivered,"
            f" {len(dead)} dead, {len(dead & dead_listed)} listed",
        )
    )

    report.rows.append(
        ("settled: no PROCESSING row with an expired lease", expired == 0, f"{expired} found")
    )

    seen: dict[str, tuple[str, str]] = {}
    for hook in received:
        if 200 <= hook["status"] < 300 and isinstance(hook.get("body"), dict):
            wid = hook["headers"].get("webhook-id") or hook["headers"].get("Webhook-Id")
            seen[wid] = (hook["body"]["transactionId"], hook["body"]["status"])
    expected = {(r["tid"], r["status"]) for r in final}
    report.rows.append(
        (
            "merchant events, deduplicated by webhook-id == final states",
            set(seen.values()) == expected and len(seen) == len(expected),
            f"{len(received)} posts, {len(seen)} distinct events, {len(expected)} final payments",
        )
    )
    return report


async def run(cfg: ChaosConfig) -> Report:
    """Run the whole suite once and return its report."""
    pg = OwnServer()
    logs = Path(tempfile.mkdtemp(prefix="engine-chaos-logs-"))
    system = System(cfg, pg, logs)
    stats: dict[str, Any] = {"worker_kills": 0, "postgres_restarts": 0}
    try:
        conn = await db.connect(pg.url)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()
        # The merchant's own endpoint, with a secret drawn for it alone (no shared secret).
        merchant = await create_merchant(
            system.env(),
            mid=CHAOS_MID,
            name="Chaos merchant",
            webhook_url=f"{system.sim}/api/webhook/pg/DUMMY",
        )
        system.start()
        timeout = aiohttp.ClientTimeout(total=15)
        # Every call carries the merchant's key (the simulator ignores it).
        headers = bearer(merchant["apiKey"])
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            await _wait_http(session, f"{system.sim}/health", 30)
            await _wait_http(session, f"{system.web}/health", 30)
            # The receiver verifies signatures with the secret the merchant was given.
            await _admin(
                session,
                f"{system.sim}/api/webhook/admin/secrets",
                {"secrets": [merchant["webhookEndpoint"]["secret"]]},
            )
            load = Load(cfg, system.web)
            watch = Watch(system)
            watchers = asyncio.gather(watch.watch_unresolved(session), watch.watch_leases())
            started = time.monotonic()
            try:
                await asyncio.gather(load.run(session), _chaos(cfg, system, load, session, stats))
                stats["load_seconds"] = round(time.monotonic() - started, 1)
                # Watched until settled: the last payments are still being worked on.
                await _settle(pg.url, cfg.settle_timeout)
                stats["settle_seconds"] = round(time.monotonic() - started, 1)
            finally:
                watch.stop.set()
                await watchers
            async with session.get(f"{system.sim}/acquirer/stats") as resp:
                stats["acquirer"] = (await resp.json()).get("injected")
            stats["intake_retries"] = dict(load.retried)
            report = await _check(system, load, watch, session)
        report.chaos = stats | report.chaos
        return report
    except BaseException:
        sys.stderr.write(system.tail())
        raise
    finally:
        system.stop()
        pg.remove()
