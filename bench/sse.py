"""`python -m bench.sse`: one web process holding N open checkout streams (SSE).

The real processes (web, 2 workers, simulator, as the e2e phase of `python -m bench`) on an
own embedded PostgreSQL. N + P checkout sessions are created through the API with a secret
key, and a stream is opened on each with the publishable key, as the SDK does, from a process
of its own (bench/sse_client.py). Then:

- memory per stream: the web process's RSS after all streams are open minus before, over the
  streams;
- CPU while idle: the web process's CPU over `--idle-seconds` with every stream open (the
  heartbeats are all it does);
- commit -> event, phase `confirm`: P of the sessions are confirmed through the customer
  app's API at `--rate` per second (open loop, another process); the worker settles their
  payments, and each final event's arrival on its stream is compared with the commit of its
  final state (track_commit_timestamp: the commit of the session row's last version; the
  settling statement's start, `processed_at`, is shown too). The N other streams stay open
  throughout. Target p99 <= 50 ms.
  Here the finals come at the rate the confirms are made and settled end to end.
- commit -> event, phase `drain` (`--phases drain`, or `confirm,drain`): D more sessions with
  a stream each are confirmed while the workers are stopped (their payments wait, PENDING),
  then the workers start and settle them as fast as they can: the final states arrive at the
  drain rate (reported as finals per second), not at the confirms' rate, while the N other
  streams stay open. Same measure, same target: the fan-out at the engine's own pace.

Every process here inherits this one's RLIMIT_NOFILE, which it raises to what the streams
need (each is a socket in the web process and one in the client). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

from bench import machine, sse_report
from bench.sse_client import raise_nofile
from bench.system import ROOT, Postgres, System, make_run_dir
from engine import logs
from engine.customers import accounts
from engine.store import db
from engine.store.repository import Repository

MID = "bench_sse"
RESULTS = Path(__file__).resolve().parent / "SSE.md"
SESSIONS = "/api/checkout/sessions"
CARD = {"number": "4242424242424242", "expMonth": 12, "expYear": 2030, "cvc": "123"}
PHASES = ("confirm", "drain")


@dataclass
class Config:
    """The run's sizes and where its results go."""

    streams: int = 10_000
    payments: int = 5_000
    rate: float = 500.0
    phases: tuple[str, ...] = ("confirm",)
    drain_payments: int = 5_000
    drain_inflight: int = 16
    idle_seconds: float = 30.0
    workers: int = 2
    opening: int = 100
    results: Path | None = RESULTS
    keep: bool = False
    statements: bool = False
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> Config:
    """Command-line options; `--quick` is 1,000 streams, 1,000 payments, 10 s idle."""
    p = argparse.ArgumentParser(prog="python -m bench.sse", description=__doc__)
    p.add_argument("--streams", type=int, help="streams that stay open (10,000)")
    p.add_argument("--payments", type=int, help="sessions confirmed (rate x 10 s), own streams")
    p.add_argument("--rate", type=float, default=500.0, help="confirms per second (500)")
    p.add_argument(
        "--phases",
        default="confirm",
        help="comma-separated: confirm (confirms at --rate, settled as they come), drain "
        "(confirmed with the workers stopped, then drained by them); default confirm",
    )
    p.add_argument(
        "--drain-payments", type=int, help="sessions confirmed, then drained (5,000; quick 1,000)"
    )
    p.add_argument(
        "--drain-inflight", type=int, default=16, help="confirms in flight before the drain (16)"
    )
    p.add_argument("--idle-seconds", type=float, help="idle CPU window (30)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--opening", type=int, default=100, help="streams opening at once (100)")
    p.add_argument("--quick", action="store_true", help="1,000 streams and payments, 10 s idle")
    p.add_argument("--results", type=Path, default=RESULTS, help="Markdown results file")
    p.add_argument("--no-results", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the run folder (logs, database)")
    p.add_argument(
        "--statements",
        action="store_true",
        help="load pg_stat_statements: each window's statements, calls per final payment",
    )
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args(argv)
    quick = a.quick
    phases = tuple(x.strip() for x in a.phases.split(",") if x.strip())
    unknown = [x for x in phases if x not in PHASES]
    if unknown or not phases:
        p.error(f"--phases: {', '.join(unknown) or 'none given'}; choose from {', '.join(PHASES)}")
    payments = a.payments if a.payments is not None else int(a.rate * (2 if quick else 10))
    drain = a.drain_payments if a.drain_payments is not None else (1_000 if quick else 5_000)
    return Config(
        streams=a.streams if a.streams is not None else (1_000 if quick else 10_000),
        payments=payments if "confirm" in phases else 0,
        rate=a.rate,
        phases=tuple(x for x in PHASES if x in phases),
        drain_payments=drain if "drain" in phases else 0,
        drain_inflight=a.drain_inflight,
        idle_seconds=a.idle_seconds if a.idle_seconds is not None else (10 if quick else 30),
        workers=a.workers,
        opening=a.opening,
        results=None if a.no_results else a.results,
        keep=a.keep,
        statements=a.statements,
        env=dict(kv.split("=", 1) for kv in a.env),
        argv=argv,
    )


async def commit_timestamps(pg: Postgres) -> None:
    """track_commit_timestamp on (a restart): the final state's own commit time is then
    pg_xact_commit_timestamp of its session row's xmin (the settling transaction's, the last
    to write that row), not only the settling statement's start."""
    conn = await asyncpg.connect(pg.admin_url)
    try:
        await conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
    finally:
        await conn.close()
    await asyncio.to_thread(pg.restart)


async def publishable_key(system: System) -> str:
    """`python -m engine.commands.merchants key --kind publishable`: the SDK's key."""
    args = [sys.executable, "-m", "engine.commands.merchants", "key", "--mid", MID]
    args += ["--mode", "test", "--kind", "publishable"]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, env=system.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode != 0:
        raise RuntimeError(f"merchants key failed: {err.decode()[-2000:]}")
    return str(json.loads(out.decode().strip().splitlines()[-1])["apiKey"])


async def shopper(url: str, sim: str) -> accounts.SignedIn:
    """A customer whose card the simulator's acquirer registered (approving), signed in."""
    pool = await db.create_pool(url, min_size=1, max_size=2)
    try:
        store = Repository(pool).customers
        customer = await accounts.sign_up(store, "bench@sse.test", "bench password 1234")
        assert customer is not None
        async with aiohttp.ClientSession() as http:
            await accounts.register_card(store, http, f"{sim}/acquirer", customer, CARD)
        signed = await accounts.sign_in(store, "bench@sse.test", "bench password 1234")
        assert signed is not None
        return signed
    finally:
        await pool.close()


async def create_sessions(system: System, key: str, n: int, path: Path) -> float:
    """n sessions through POST /api/checkout/sessions (an hour to live), written to `path`;
    the seconds it took."""
    headers = {"Authorization": f"Bearer {key}"}
    made: list[str] = [""] * n
    gate = asyncio.Semaphore(32)
    started = time.monotonic()
    async with aiohttp.ClientSession(headers=headers) as http:

        async def one(i: int) -> None:
            body = {"amount": 1000 + i % 1000, "currency": "KRW", "orderId": f"sse_{i}"}
            body |= {"orderName": "Hamster food", "expiresInSeconds": 3600}
            async with gate, http.post(system.web + SESSIONS, json=body) as resp:
                got = await resp.json()
                if resp.status != 201:
                    raise RuntimeError(f"session {i}: {resp.status} {got}")
                made[i] = json.dumps({"id": got["id"], "clientSecret": got["clientSecret"]})

        await asyncio.gather(*(one(i) for i in range(n)))
    path.write_text("\n".join(made) + "\n")
    return time.monotonic() - started


def session_ids(path: Path) -> set[str]:
    """The ids of a sessions file (JSON lines)."""
    return {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}


def event_figures(
    commits: dict[str, tuple[float, float, float]], arrivals: dict[str, float]
) -> dict[str, float]:
    """Commit -> event for the final payments `commits` (session -> (commit, settling
    statement's start, claim), epoch s; see Run.finals) whose final event arrived at
    `arrivals` (session -> epoch s); the finals per second by commit time ((n - 1) / (last
    commit - first)); and the drain rate: n / (last commit - first claim)."""
    lat = [1000 * (arrivals[s] - c[0]) for s, c in commits.items() if s in arrivals]
    from_start = [1000 * (arrivals[s] - c[1]) for s, c in commits.items() if s in arrivals]
    times = [c[0] for c in commits.values()]
    first, last = min(times, default=0.0), max(times, default=0.0)
    claimed = min((c[2] for c in commits.values()), default=0.0)
    return {
        "final": len(commits),
        "events": len(lat),
        "missing": len(commits) - len(lat),
        "p50": sse_report.pct(lat, 0.5),
        "p99": sse_report.pct(lat, 0.99),
        "max": max(lat, default=float("nan")),
        "start_p50": sse_report.pct(from_start, 0.5),
        "start_p99": sse_report.pct(from_start, 0.99),
        "rate": (len(times) - 1) / (last - first) if last > first else float("nan"),
        "drain_rate": len(times) / (last - claimed) if last > claimed else float("nan"),
    }


async def read_json_line(proc: asyncio.subprocess.Process, timeout: float) -> Any:
    """The next line a client process prints, as JSON (its exit is an error)."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        raise RuntimeError(f"client exited with {await proc.wait()}")
    return json.loads(line)


async def client(args: list[str], log: Path) -> asyncio.subprocess.Process:
    """`python -m bench.sse_client ...` with its stderr to `log`."""
    with log.open("wb") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.sse_client",
            *args,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )


class Run:
    """One measurement: the figures, the CPU by process, and notes."""

    def __init__(self, cfg: Config, system: System, pg: Postgres, folder: Path) -> None:
        self.cfg = cfg
        self.system = system
        self.pg = pg
        self.folder = folder
        self.key = self.pk = self.cookie = self.csrf = ""
        # What PostgreSQL's busy sessions waited on, by window (settling, draining).
        self.waits: dict[str, dict[str, int]] = {}
        # --statements: pg_stat_statements' lines by window.
        self.statements: dict[str, str] = {}
        self.figures: dict[str, float] = {}
        self.cpu: dict[str, dict[str, float]] = {}
        self.notes: list[str] = []

    def log(self, message: str) -> None:
        """Progress on stderr."""
        print(f"[{time.strftime('%H:%M:%S')}] sse: {message}", file=sys.stderr, flush=True)

    def web(self) -> psutil.Process:
        """The one web process."""
        return psutil.Process(self.system.webs[0].pid)

    def cpu_mark(self, extra: dict[str, list[int]]) -> dict[str, float]:
        """CPU seconds so far by role (bench/machine.py), the clients included."""
        return machine.role_cpu(self.system.pids() | extra, self.pg.postmaster_pid())

    def cpu_window(self, name: str, mark: dict[str, float], extra: dict[str, list[int]]) -> None:
        """Each role's CPU since `mark`, in % of one core."""
        now = self.cpu_mark(extra)
        seconds = now["at"] - mark["at"]
        self.cpu[name] = {
            # A role missing from the mark started since: all its CPU is in the window.
            role: 100 * (now[role] - mark.get(role, 0.0)) / seconds
            for role in now
            if role != "at"
        }

    async def measure(self) -> None:
        """Open the streams, measure memory and idle CPU, then the final events under load."""
        cfg, files = self.cfg, self.folder
        total = cfg.streams + cfg.payments + cfg.drain_payments
        took = await create_sessions(self.system, self.key, total, files / "made.jsonl")
        lines = (files / "made.jsonl").read_text().splitlines()
        (files / "paid.jsonl").write_text("\n".join(lines[: cfg.payments]) + "\n")
        drained = lines[cfg.payments : cfg.payments + cfg.drain_payments]
        (files / "drained.jsonl").write_text("\n".join(drained) + "\n")
        # The drained sessions' streams open when the drain starts (after the confirm
        # phase's streams closed on their final events): fewer sockets open at once.
        kept = lines[: cfg.payments] + lines[cfg.payments + cfg.drain_payments :]
        (files / "all.jsonl").write_text("\n".join(kept) + "\n")
        self.log(f"{total} sessions created in {took:.1f}s")
        await asyncio.sleep(2)
        before = self.web().memory_info().rss
        args = ["streams", "--web", self.system.web, "--key", self.pk]
        args += ["--sessions", str(files / "all.jsonl"), "--opening", str(cfg.opening)]
        streams = await client(args, files / "logs" / "streams.log")
        opened = await read_json_line(streams, 900)
        self.log(f"streams: {opened}")
        self.figures |= {"open": opened["open"], "open_seconds": opened["seconds"]}
        if opened["refused"]:
            self.notes.append(f"streams refused at open: {opened['refused']}")
        await asyncio.sleep(3)
        after = self.web().memory_info().rss
        self.figures |= {"rss_before": before, "rss_after": after}
        self.figures["per_stream"] = (after - before) / max(1, opened["open"])
        extra = {"streams": [streams.pid]}
        mark = self.cpu_mark(extra)
        await asyncio.sleep(cfg.idle_seconds)
        self.cpu_window("idle", mark, extra)
        self.figures["idle_web_cpu"] = self.cpu["idle"]["web"]
        self.system.check_alive()
        self.log(f"idle: {self.cpu['idle']}")
        if "confirm" in cfg.phases:
            await self.settle(streams, files)
        if "drain" in cfg.phases:
            await self.drain(streams, files)
        assert streams.stdin is not None
        streams.stdin.close()
        await asyncio.wait_for(streams.wait(), 60)

    async def settle(self, streams: asyncio.subprocess.Process, files: Path) -> None:
        """Confirm P sessions at the rate; read the final events' arrivals against the
        commits."""
        cfg = self.cfg
        args = ["pay", "--web", self.system.web, f"--cookie={self.cookie}", f"--csrf={self.csrf}"]
        args += ["--sessions", str(files / "paid.jsonl"), "--rate", str(cfg.rate)]
        args += ["--out", str(files / "confirms.json")]
        extra = {"streams": [streams.pid]}
        await self.reset_statements()
        mark = self.cpu_mark(extra)
        sampling = asyncio.create_task(self.sample_waits(self.waits.setdefault("settling", {})))
        payer = await client(args, files / "logs" / "payer.log")
        paid = await read_json_line(payer, cfg.payments / cfg.rate + 300)
        await payer.wait()  # reaped: its CPU is this process's "bench" from here on
        self.log(f"payer: {paid}")
        if paid["lateP99"] > 0.1:
            self.notes.append(
                f"the payer fell behind: p99 send {paid['lateP99'] * 1000:.0f} ms late"
            )
        confirms = json.loads((files / "confirms.json").read_text())["confirms"]
        ok = [sid for sid, (_, _, status) in confirms.items() if status == 200]
        if len(ok) < len(confirms):
            self.notes.append(f"{len(confirms) - len(ok)} confirms did not answer 200")
        commits = await self.wait_final(len(ok), session_ids(files / "paid.jsonl"))
        self.cpu_window("settling", mark, extra)  # confirms sent until the last one final
        await self.read_statements("settling", len(commits))
        sampling.cancel()
        report = await self.arrived(streams, files / "streams-report.json", set(commits))
        arrivals: dict[str, float] = report["arrivals"]
        from_confirm = [1000 * (arrivals[s] - confirms[s][1]) for s in ok if s in arrivals]
        answer = [1000 * (confirms[s][1] - confirms[s][0]) for s in ok]
        events = event_figures(commits, arrivals)
        del events["drain_rate"]  # the confirms set the pace here
        self.figures |= events | {
            "confirmed": len(ok),
            "settled_rate": events["rate"],
            "confirm_p50": sse_report.pct(answer, 0.5),
            "confirm_p99": sse_report.pct(answer, 0.99),
            "to_event_p50": sse_report.pct(from_confirm, 0.5),
            "to_event_p99": sse_report.pct(from_confirm, 0.99),
            "still_open": report["open"],
            "ended_early": report["endedEarly"],
        }
        if report["endedEarly"]:
            self.notes.append(f"{report['endedEarly']} streams ended without a final event")
        if report["errors"]:
            self.notes.append(f"stream errors: {report['errors']}")

    async def streams_report(self, streams: asyncio.subprocess.Process, path: Path) -> Any:
        """The streams process's arrivals and counts so far (it writes them to `path`)."""
        assert streams.stdin is not None
        streams.stdin.write(f"report {path}\n".encode())
        await streams.stdin.drain()
        self.log(f"streams: {await read_json_line(streams, 60)}")
        return json.loads(path.read_text())

    async def arrived(
        self, streams: asyncio.subprocess.Process, path: Path, ids: set[str], timeout: float = 60
    ) -> Any:
        """The streams' report once every session in `ids` has its final event, or after
        `timeout` seconds (the ones still missing count as never came, with a note)."""
        deadline = time.monotonic() + timeout
        while True:
            report = await self.streams_report(streams, path)
            missing = ids - set(report["arrivals"])
            if not missing:
                return report
            if time.monotonic() > deadline:
                self.notes.append(f"{len(missing)} final events still missing after {timeout:.0f}s")
                return report
            await asyncio.sleep(1)

    async def drain(self, streams: asyncio.subprocess.Process, files: Path) -> None:
        """Confirm D sessions with the workers stopped, then start them: the final states
        come at the drain rate while the other streams stay open."""
        cfg = self.cfg
        ids = session_ids(files / "drained.jsonl")
        assert streams.stdin is not None
        streams.stdin.write(f"open {files / 'drained.jsonl'}\n".encode())
        await streams.stdin.drain()
        opened = await read_json_line(streams, 900)
        self.log(f"drain: streams {opened}")
        self.figures["drain_open"] = opened["open"]
        if opened["refused"]:
            self.notes.append(f"drain: streams refused at open: {opened['refused']}")
        await self.system.stop_workers()
        self.log(f"drain: workers stopped; confirming {len(ids)} sessions")
        # As fast as the web answers, a few at a time: the rate does not matter here.
        args = ["pay", "--web", self.system.web, f"--cookie={self.cookie}", f"--csrf={self.csrf}"]
        args += ["--sessions", str(files / "drained.jsonl"), "--rate", "1000000"]
        args += ["--max-inflight", str(cfg.drain_inflight)]
        args += ["--out", str(files / "drain-confirms.json")]
        started = time.monotonic()
        payer = await client(args, files / "logs" / "drain-payer.log")
        paid = await read_json_line(payer, len(ids) / 20 + 300)
        await payer.wait()
        confirms = json.loads((files / "drain-confirms.json").read_text())["confirms"]
        ok = [sid for sid, (_, _, status) in confirms.items() if status == 200]
        self.figures["drain_confirm_rate"] = len(ok) / max(1e-9, time.monotonic() - started)
        self.log(f"drain payer: {paid}")
        if len(ok) < len(confirms):
            self.notes.append(f"drain: {len(confirms) - len(ok)} confirms did not answer 200")
        final = await self.finals(ids)
        if final:
            self.notes.append(f"drain: {len(final)} payments final before the workers started")
        extra = {"streams": [streams.pid]}
        await self.reset_statements()
        mark = self.cpu_mark(extra)
        sampling = asyncio.create_task(self.sample_waits(self.waits.setdefault("draining", {})))
        await self.system.start_workers()
        self.log("drain: workers started")
        commits = await self.wait_final(len(ok), ids, timeout=len(ok) / 20 + 120)
        self.cpu_window("draining", mark, extra)  # workers started until the last one final
        await self.read_statements("draining", len(commits))
        sampling.cancel()
        report = await self.arrived(streams, files / "streams-report-drain.json", set(commits))
        arrivals: dict[str, float] = report["arrivals"]
        events = event_figures(commits, arrivals)
        events["rate"] = events.pop("drain_rate")
        self.figures |= {f"drain_{k}": v for k, v in events.items()} | {
            "drain_confirmed": len(ok),
            "drain_still_open": report["open"],
        }
        if report["errors"]:
            self.notes.append(f"stream errors after the drain: {report['errors']}")

    @contextlib.asynccontextmanager
    async def db(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the bench's own to its PostgreSQL, closed after use."""
        conn = await asyncpg.connect(self.pg.url)
        try:
            yield conn
        finally:
            await conn.close()

    async def reset_statements(self) -> None:
        """Forget pg_stat_statements' counts (--statements only)."""
        if self.cfg.statements:
            async with self.db() as conn:
                await conn.execute("SELECT pg_stat_statements_reset()")

    async def read_statements(self, window: str, finals: int) -> None:
        """The window's busiest statements: calls, calls per final payment, mean and total
        time (--statements only)."""
        if not self.cfg.statements:
            return
        async with self.db() as conn:
            rows = await conn.fetch(
                "SELECT calls, total_exec_time, mean_exec_time,"
                " left(regexp_replace(query, '\\s+', ' ', 'g'), 60) AS query"
                " FROM pg_stat_statements"
                " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND query NOT ILIKE '%pg_stat%'"
                " ORDER BY total_exec_time DESC LIMIT 15"
            )
        head = f"{'calls':>8} {'/final':>7} {'mean ms':>8} {'total ms':>9}  statement"
        lines = [f"Statements while {window} (pg_stat_statements, {finals} final payments):", head]
        for r in rows:
            per = r["calls"] / max(1, finals)
            lines.append(
                f"{r['calls']:>8} {per:>7.2f} {r['mean_exec_time']:>8.3f}"
                f" {r['total_exec_time']:>9.0f}  {r['query']}"
            )
        self.statements[window] = "\n".join(lines)

    async def finals(self, ids: set[str]) -> dict[str, tuple[float, float, float]]:
        """The final payments of sessions `ids`: each one's commit time, its settling
        statement's start (`processed_at`) and its claim (`processing_started_at`), epoch
        seconds. The commit time is that of the transaction that last wrote the session row
        (its final version); without commit timestamps it is `processed_at` too."""
        async with self.db() as conn:
            rows = await conn.fetch(
                "SELECT cs.public_id, extract(epoch FROM p.processed_at)::float8 AS started,"
                " extract(epoch FROM coalesce(pg_xact_commit_timestamp(cs.xmin),"
                " p.processed_at))::float8 AS committed,"
                " extract(epoch FROM coalesce(p.processing_started_at, p.processed_at))::float8"
                " AS claimed"
                " FROM payment_processes p"
                " JOIN checkout_sessions cs ON cs.id = p.checkout_session_id"
                " WHERE p.status IN ('SUCCESS', 'FAILED') AND cs.public_id = ANY($1::text[])",
                list(ids),
            )
            return {r["public_id"]: (r["committed"], r["started"], r["claimed"]) for r in rows}

    async def sample_waits(self, waits: dict[str, int]) -> None:
        """What PostgreSQL's busy sessions wait on, 10 times a second while settling: where
        the time of a confirm or a settle goes when it is not CPU."""
        async with self.db() as conn:
            while True:
                rows = await conn.fetch(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS wait,"
                    " left(regexp_replace(query, '\\s+', ' ', 'g'), 50) AS query"
                    " FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state = 'active' AND pid <> pg_backend_pid()"
                )
                for r in rows:
                    key = f"{r['wait']} | {r['query']}"
                    waits[key] = waits.get(key, 0) + 1
                await asyncio.sleep(0.1)

    async def wait_final(
        self, n: int, ids: set[str], timeout: float = 120
    ) -> dict[str, tuple[float, float, float]]:
        """Until `n` payments of sessions `ids` are final: see finals()."""
        deadline = time.monotonic() + timeout
        while True:
            final = await self.finals(ids)
            if len(final) >= n or time.monotonic() > deadline:
                if len(final) < n:
                    self.notes.append(f"only {len(final)} of {n} payments final in {timeout:.0f}s")
                return final
            self.system.check_alive()
            await asyncio.sleep(0.5)


async def run(cfg: Config) -> int:
    """Start everything, measure once, print the table, write the results file."""
    # Open at once: the streams that stay, and the confirm phase's or the drain's (the drain's
    # open after the confirm phase's closed).
    total = cfg.streams + max(cfg.payments, cfg.drain_payments)
    nofile, limit_note = raise_nofile(total + 2_000)
    if nofile < total + 500:
        cfg.streams = max(0, nofile - 500 - max(cfg.payments, cfg.drain_payments))
        total = cfg.streams + max(cfg.payments, cfg.drain_payments)
        print(f"sse: {limit_note}: streams cut to {cfg.streams}", file=sys.stderr)
    started_at = datetime.now(UTC)
    folder = make_run_dir(cfg.keep)
    (folder / "logs").mkdir()
    print(f"sse: run folder {folder}", file=sys.stderr)
    pg = await asyncio.to_thread(lambda: Postgres(folder, statements=cfg.statements))
    system: System | None = None
    try:
        await pg.configure()
        await commit_timestamps(pg)
        # One client address holds every stream here: the per-address limit must allow it.
        every = cfg.streams + cfg.payments + cfg.drain_payments
        env = {"ENGINE_CHECKOUT_STREAMS_PER_ADDRESS": str(every + 100)} | cfg.env
        system = System(
            pg,
            folder / "logs",
            webs=1,
            workers=cfg.workers,
            log_level="info",
            sim_latency_ms=0,
            extra_env=env,
        )
        run = Run(cfg, system, pg, folder)
        run.key = await system.create_merchant(MID)
        run.pk = await publishable_key(system)
        await system.start()
        await system.start_workers()
        signed = await shopper(pg.url, system.sim)
        run.cookie, run.csrf = signed.token, signed.csrf
        run.notes.append(limit_note)
        cpu0 = machine.snapshot(pg.postmaster_pid())
        await run.measure()
        other = machine.foreign_load(cpu0, machine.snapshot(pg.postmaster_pid()))
        run.notes.append(
            f"other processes on the machine: {other[0]:.0f} CPU-s ({100 * other[1]:.0f}% of "
            "all cores) during the measurement"
        )
        table = sse_report.table(run.figures, cfg.idle_seconds, cfg.rate, cfg.phases)
        print(table.render())
        print()
        print(sse_report.cpu_text(run.cpu))
        print()
        for window, waits in run.waits.items():
            print(sse_report.waits_text(waits, window))
            print()
        for text in run.statements.values():
            print(text)
            print()
        for note in run.notes:
            print(f"note: {note}")
        if cfg.results:
            text = sse_report.markdown(cfg, run, table, machine.describe(), started_at)
            cfg.results.write_text(text)
            print(f"results written to {cfg.results}")
        return 0
    finally:
        if system is not None:
            await asyncio.to_thread(system.stop)
        await asyncio.to_thread(pg.stop_server if cfg.keep else pg.remove)
        if cfg.keep:
            print(f"sse: kept {folder}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bench.sse`."""
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    logs.configure("console", "warning")  # the engine modules this process imports
    return asyncio.run(run(cfg))


if __name__ == "__main__":
    sys.exit(main())
