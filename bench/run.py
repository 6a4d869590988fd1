"""`make bench` (`python -m bench`): the whole system measured, one table printed.

It starts an own embedded PostgreSQL and the Procfile processes (simulator, web, several
workers) on this machine, drives them from separate load-generating processes and prints
one table, every figure the median of `--repeats` runs, each comparison measured in the same
run. See bench/README.md for what each line means and how it is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench import loadgen, machine, pgqueuer_peer, sql
from bench.report import Row, Table, median, summarize_pyspy
from bench.system import Postgres, System, make_run_dir, with_database
from config.settings import Settings
from engine import logs
from engine.store import db
from engine.store.queries import load

MID = "bench_mid"
PHASES = ("intake", "drain", "peer", "e2e", "scale", "soak")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

PRESETS: dict[str, dict[str, Any]] = {
    # The full run: `make bench`.
    "full": dict(
        repeats=3,
        concurrency="32,128",
        drain_n=50_000,
        intake_seconds=15,
        warmup_seconds=3,
        e2e_seconds=60,
        light_seconds=30,
        probe_seconds=15,
        scale_rows="10000,1000000",
        soak_seconds=60,
        claim_samples=200,
    ),
    # Harness validation: small N, 10 s durations, one repeat.
    "quick": dict(
        repeats=1,
        concurrency="32,128",
        drain_n=5000,
        intake_seconds=10,
        warmup_seconds=2,
        e2e_seconds=10,
        light_seconds=10,
        probe_seconds=10,
        scale_rows="10000,100000",
        soak_seconds=20,
        claim_samples=100,
    ),
    # The test suite's smoke run: does every phase work and print its line.
    "smoke": dict(
        repeats=1,
        concurrency="32",
        drain_n=300,
        intake_seconds=1,
        warmup_seconds=0,
        e2e_seconds=2,
        light_seconds=2,
        probe_seconds=2,
        scale_rows="2000,5000",
        soak_seconds=3,
        claim_samples=20,
    ),
}
# The end-to-end target, payments per second sustained with every webhook delivered.
E2E_TARGET = 1000.0

# --long: the parts that take long, opt-in.
LONG = dict(scale_rows="10000,10000000", soak_seconds=600)


class PhaseTimeout(Exception):
    """A phase did not finish in its bounded time."""


@dataclass
class Config:
    """Everything a run was told (after presets)."""

    preset: str
    long: bool
    repeats: int
    workers: int
    webs: int
    concurrency: list[int]
    drain_n: int
    intake_seconds: float
    warmup_seconds: float
    e2e_seconds: float
    e2e_rate: float | None
    probe_seconds: float
    probe_concurrency: int
    light_seconds: float
    light_rate: float
    scale_rows: list[int]
    claim_samples: int
    soak_seconds: float
    soak_rate: float | None
    phases: list[str]
    loadgen: str
    loadgen_procs: int
    log_level: str
    sim_latency_ms: int
    env: dict[str, str]
    intake_with_workers: bool
    profile: bool
    statements: bool
    keep: bool
    results: Path | None
    argv: list[str] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        """The engine's claim batch (ENGINE_BATCH_SIZE), which the peer uses too."""
        default = Settings.model_fields["batch_size"].default
        return int(self.env.get("ENGINE_BATCH_SIZE", default))


def parse_args(argv: list[str]) -> Config:
    """The command line, with presets filling what was not given."""
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small N, 10 s durations, 1 repeat")
    size.add_argument("--smoke", action="store_true", help="tiny: the test suite's smoke run")
    p.add_argument(
        "--long",
        action="store_true",
        help="opt-in long parts: claim at 10,000,000 rows, 10-minute RSS soak",
    )
    p.add_argument("--repeats", type=int, help="runs per figure (median); full: 3")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--webs", type=int, default=1, help="web processes (default 1)")
    p.add_argument("--concurrency", help="intake connections; full and quick: 32,128")
    p.add_argument("--drain-n", type=int, help="pre-filled PENDING payments; full: 50000")
    p.add_argument("--intake-seconds", type=float, help="each pgbench and intake run")
    p.add_argument(
        "--warmup-seconds",
        type=float,
        help="unmeasured load before each intake run and before the light run",
    )
    p.add_argument("--e2e-seconds", type=float, help="sustained end-to-end run; full: 60")
    p.add_argument(
        "--e2e-rate",
        type=float,
        help="offered payments/s for it (default: 5%% above the 1,000/s target, or 90%% "
        "of the capacity the probe measured just before if that is more)",
    )
    p.add_argument("--probe-seconds", type=float, help="closed-loop capacity probe")
    p.add_argument("--probe-concurrency", type=int, default=32)
    p.add_argument("--light-seconds", type=float, help="the 100/s latency run; full: 30")
    p.add_argument("--light-rate", type=float, default=100.0)
    p.add_argument("--scale-rows", help="table sizes for the claim latency, e.g. 10000,1000000")
    p.add_argument("--claim-samples", type=int, help="claim statements timed per size and run")
    p.add_argument("--soak-seconds", type=float, help="worker RSS run; full: 60, --long: 600")
    p.add_argument(
        "--soak-rate",
        type=float,
        help="offered payments/s while soaking (default: half the sustained end-to-end rate)",
    )
    p.add_argument("--phases", default=",".join(PHASES), help=f"subset of {','.join(PHASES)}")
    p.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "aiohttp"],
        default="auto",
        help="closed-loop generator: wrk when installed (auto), else aiohttp",
    )
    p.add_argument("--loadgen-procs", type=int, default=2, help="aiohttp generator processes")
    p.add_argument("--log-level", default="info", help="ENGINE_LOG_LEVEL of the system")
    p.add_argument("--sim-latency-ms", type=int, default=0, help="SIM_LATENCY_MS (default 0)")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for every process, e.g. ENGINE_BATCH_SIZE=50",
    )
    p.add_argument(
        "--intake-with-workers",
        action="store_true",
        help="keep the workers running while intake is measured",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy record web and a worker in the first repeat (perturbs numbers)",
    )
    p.add_argument(
        "--statements",
        action="store_true",
        help="load pg_stat_statements and report statements per payment (small overhead)",
    )
    p.add_argument("--keep", action="store_true", help="keep the run folder (logs, profiles)")
    p.add_argument("--results", default=str(RESULTS), help="Markdown report path ('' = none)")
    a = p.parse_args(argv)
    preset = "quick" if a.quick else "smoke" if a.smoke else "full"
    defaults = dict(PRESETS[preset]) | (LONG if a.long else {})
    for name, value in defaults.items():
        if getattr(a, name) is None:
            setattr(a, name, value)
    phases = [x for x in a.phases.split(",") if x]
    unknown = set(phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phases {sorted(unknown)}")
    env = dict(kv.split("=", 1) for kv in a.env)
    return Config(
        preset=preset + (" + long" if a.long else ""),
        long=a.long,
        repeats=a.repeats,
        workers=a.workers,
        webs=a.webs,
        concurrency=[int(x) for x in a.concurrency.split(",") if x],
        drain_n=a.drain_n,
        intake_seconds=a.intake_seconds,
        warmup_seconds=a.warmup_seconds,
        e2e_seconds=a.e2e_seconds,
        e2e_rate=a.e2e_rate,
        probe_seconds=a.probe_seconds,
        probe_concurrency=a.probe_concurrency,
        light_seconds=a.light_seconds,
        light_rate=a.light_rate,
        scale_rows=[int(x) for x in str(a.scale_rows).split(",") if x],
        claim_samples=a.claim_samples,
        soak_seconds=a.soak_seconds,
        soak_rate=a.soak_rate,
        phases=phases,
        loadgen=a.loadgen,
        loadgen_procs=a.loadgen_procs,
        log_level=a.log_level,
        sim_latency_ms=a.sim_latency_ms,
        env=env,
        intake_with_workers=a.intake_with_workers,
        profile=a.profile,
        statements=a.statements,
        keep=a.keep,
        results=Path(a.results) if a.results else None,
        argv=argv,
    )


def _seconds(a: datetime | None, b: datetime | None) -> float:
    if a is None or b is None:
        return float("nan")
    return (b - a).total_seconds()


def _rate(n: float, seconds: float) -> float:
    return n / seconds if seconds and math.isfinite(seconds) and seconds > 0 else float("nan")


class Bench:
    """The phases; every measured value goes to self.v[name] (one entry per repeat)."""

    def __init__(
        self,
        cfg: Config,
        pg: Postgres,
        system: System,
        key: str,
        run_dir: Path,
        conn: asyncpg.Connection,
    ) -> None:
        self.cfg = cfg
        self.pg = pg
        self.system = system
        self.key = key
        self.run_dir = run_dir
        self.conn = conn
        self.v: dict[str, list[float]] = defaultdict(list)
        self.notes: list[str] = []
        self.explains: dict[int, str] = {}
        self.sizes: dict[int, str] = {}
        self.rss: list[tuple[float, dict[str, list[int]]]] = []
        self.profiles: dict[str, Path] = {}
        self.statements: dict[str, str] = {}
        self.cpu: dict[str, list[dict[str, float]]] = defaultdict(list)
        self.cpu_per: dict[str, list[dict[str, float]]] = defaultdict(list)
        self.started = time.monotonic()
        self.peer_version = pgqueuer_peer.available()
        self.use_wrk = cfg.loadgen == "wrk" or (cfg.loadgen == "auto" and loadgen.wrk_path())
        if cfg.loadgen == "wrk" and not loadgen.wrk_path():
            raise SystemExit("--loadgen wrk: wrk is not installed (apt-get install -y wrk)")

    # --- helpers -------------------------------------------------------------------------

    def log(self, message: str) -> None:
        """Progress on stderr, with the time since the start."""
        m, s = divmod(int(time.monotonic() - self.started), 60)
        print(f"[{m:02d}:{s:02d}] {message}", file=sys.stderr, flush=True)

    async def fresh(self) -> None:
        """Empty tables and the simulator's records: every measurement starts alike.

        A CHECKPOINT then flushes what earlier phases wrote, so a measurement does not pay for
        a checkpoint that a previous phase's WAL set off. (In one full run the 60 s e2e run gave
        850/s after the drain and peer phases and 949/s alone; this removes one cause.) A run
        longer than checkpoint_timeout (5 min: the soak) still has checkpoints of its own.
        """
        await self.quiesce()
        await self.conn.execute(sql.TRUNCATE)
        await self.system.reset_simulator()
        await self.conn.execute("CHECKPOINT")

    async def quiesce(self, timeout: float = 30.0) -> None:
        """Until the web has finished what a load generator left in flight (rows stop coming).

        A client that stops does not stop the handlers it started: their inserts land after.
        """
        deadline = time.monotonic() + timeout
        last = await self.conn.fetchval(sql.ROW_COUNT)
        while time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            now = await self.conn.fetchval(sql.ROW_COUNT)
            if now == last:
                return
            last = now

    async def closed_load(
        self, prefix: str, concurrency: int, duration: float, url: str | None = None
    ) -> loadgen.LoadResult:
        """Closed loop: `concurrency` connections, each sending the next request at once."""
        url = url or self.system.web
        if self.use_wrk:
            return await loadgen.run_wrk(
                url, self.key, MID, prefix, concurrency=concurrency, duration=duration
            )
        return await loadgen.run_aiohttp(
            url,
            self.key,
            MID,
            prefix,
            mode="closed",
            duration=duration,
            concurrency=concurrency,
            procs=self.cfg.loadgen_procs,
        )

    async def open_load(self, prefix: str, rate: float, duration: float) -> loadgen.LoadResult:
        """Requests at `rate` per second whatever the answers do.

        wrk paced when installed: it costs the shared cores a fraction of what the aiohttp
        generator does (0.39 ms of CPU per request). Its connections (one per 8/s of rate)
        are enough that none is busy when its slot comes unless answers take over 125 ms.
        """
        if self.use_wrk:
            return await loadgen.run_wrk(
                self.system.web,
                self.key,
                MID,
                prefix,
                concurrency=min(256, max(16, int(rate / 8))),
                duration=duration,
                rate=rate,
            )
        procs = 1 if rate <= 300 else self.cfg.loadgen_procs
        return await loadgen.run_aiohttp(
            self.system.web,
            self.key,
            MID,
            prefix,
            mode="open",
            duration=duration,
            rate=rate,
            procs=procs,
            max_inflight=max(200, int(rate * 5)),
        )

    async def pgbench(self, script: str, clients: int, duration: float) -> float:
        """pgbench with a custom script at `clients` connections; returns its TPS."""
        path = self.run_dir / f"pgbench-{abs(hash(script))}.sql"
        path.write_text(script)
        args = [
            self.pg.bin("pgbench"),
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(min(2, clients)),
            "-T",
            str(max(1, round(duration))),
            "-f",
            str(path),
            self.pg.url,
        ]
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), duration + 60)
        match = re.search(r"^tps = ([0-9.]+)", out.decode(), re.MULTILINE)
        if proc.returncode != 0 or not match:
            raise RuntimeError(f"pgbench failed: {out.decode()[-1500:]} {err.decode()[-1500:]}")
        return float(match.group(1))

    async def wait_settled(self, timeout: float) -> bool:
        """Until no payment is open and no webhook undelivered; False at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            row = await self.conn.fetchrow(sql.OPEN_WORK)
            if row["open"] == 0 and row["undelivered"] == 0:
                return True
            self.system.check_alive()
            if time.monotonic() > deadline:
                self.log(f"  not settled after {timeout:.0f}s: {dict(row)}")
                return False
            await asyncio.sleep(0.2)

    def drain_timeout(self, n: int) -> float:
        """A bound for settling `n` payments (at least 20/s, at least 60 s)."""
        return max(60.0, n / 20)

    async def profile(self, name: str, pid: int, seconds: float) -> asyncio.Task[None] | None:
        """py-spy record `pid` for `seconds` in the background (--profile only)."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not self.cfg.profile or not Path(spy).exists():
            return None
        out = self.run_dir / f"pyspy-{name}.txt"
        args = [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "100",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ]
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        async def finish() -> None:
            await asyncio.wait_for(proc.wait(), seconds + 60)
            if out.exists():
                self.profiles[name] = out

        return asyncio.create_task(finish())

    def cpu_mark(self) -> dict[str, float]:
        """CPU seconds of every role now (for cpu_since)."""
        return machine.role_cpu(self.system.pids(), self.pg.postmaster_pid())

    def cpu_since(self, mark: dict[str, float], label: str, n: int = 0) -> None:
        """Each role's CPU over the window since `mark`, in % of one core and, when `n`
        payments went through in it, in CPU ms per payment (which contention barely moves)."""
        now = self.cpu_mark()
        wall = now["at"] - mark["at"]
        if wall <= 0:
            return
        used = {k: now[k] - mark.get(k, 0.0) for k in now if k != "at"}
        ours = sum(v for k, v in used.items() if k != "machine")
        used["other"] = max(0.0, used.pop("machine") - ours)
        self.cpu[label].append({k: 100 * v / wall for k, v in used.items()})
        if n > 0:
            self.cpu_per[label].append({k: 1000 * v / n for k, v in used.items()})

    def cpu_text(self) -> str:
        """Two CPU tables: % of one core per role and window, and CPU ms per payment."""
        if not self.cpu:
            return ""
        roles = ("web", "worker", "pgqueuer", "simulator", "postgres", "bench", "other")
        head = f"{'window':<28}" + "".join(f"{r:>10}" for r in roles)
        cores = psutil.cpu_count() or 1
        lines = [
            f"CPU by process, % of one core ({cores} cores = {100 * cores} %; 'bench' = load"
            " generators and this orchestrator; 'other' = everything else on the machine)",
            head,
        ]
        for label, samples in self.cpu.items():
            cells = [median([s.get(r, math.nan) for s in samples]) for r in roles]
            lines.append(f"{label:<28}" + "".join(f"{c:>10.0f}" for c in cells))
        if self.cpu_per:
            lines += ["", "CPU ms per payment (per job for pgqueuer)", head]
            for label, samples in self.cpu_per.items():
                cells = [median([s.get(r, math.nan) for s in samples]) for r in roles]
                lines.append(f"{label:<28}" + "".join(f"{c:>10.2f}" for c in cells))
        return "\n".join(lines)

    async def statements_reset(self) -> None:
        """Forget pg_stat_statements' counts (--statements only)."""
        if self.cfg.statements:
            await self.conn.execute("SELECT pg_stat_statements_reset()")

    async def statements_report(self, label: str, payments: int) -> None:
        """The statements since the reset, per payment (--statements only)."""
        if not self.cfg.statements or payments <= 0:
            return
        rows = await self.conn.fetch(sql.STATEMENTS, max(payments, 1))
        lines = [f"{payments:,} payments; calls/payment, mean ms, total s, statement"]
        for r in rows:
            lines.append(
                f"{r['per_payment']:7.2f}  {r['mean_ms']:7.3f}  {r['total_s']:7.2f}  {r['query']}"
            )
        self.statements[label] = "\n".join(lines)

    # --- phases --------------------------------------------------------------------------

    async def intake(self, rep: int) -> None:
        """pgbench (the physical limit) and POST /api/payment at each concurrency."""
        if self.cfg.intake_with_workers:
            if not self.system.workers:
                await self.system.start_workers()
        else:
            await self.system.stop_workers()
        d = self.cfg.intake_seconds
        for c in self.cfg.concurrency:
            await self.fresh()
            tps = await self.pgbench(sql.PGBENCH_INSERT, c, d)
            tps_pay = await self.pgbench(sql.PGBENCH_PAYMENT, c, d)
            await self.fresh()
            if self.cfg.warmup_seconds > 0:
                await self.closed_load(f"w{rep}c{c}", c, self.cfg.warmup_seconds)
            prefix = f"i{rep}c{c}"
            spy = None
            if rep == 0 and c == max(self.cfg.concurrency):
                # +2 s: the aiohttp generator starts 1.5 s after it is spawned.
                spy = await self.profile("web-intake", self.system.pids()["web"][0], d + 2)
            first = rep == 0 and c == max(self.cfg.concurrency)
            if first:
                await self.statements_reset()
            mark = self.cpu_mark()
            res = await self.closed_load(prefix, c, d)
            self.cpu_since(mark, f"intake c={c}", res.ok)
            if spy:
                await spy
            await self.quiesce()
            rows = await self.conn.fetchval(sql.COUNT_PREFIX, prefix)
            if first:
                await self.statements_report(f"intake c={c}", rows)
            # Accepted: 2xx answers the client got within its window. Every one must be a row.
            rate = res.ok_per_s
            if rows < res.ok:
                self.notes.append(
                    f"intake c={c} run {rep + 1}: {res.ok} answered 2xx but only {rows} rows stored"
                )
            self.v[f"pgbench_{c}"].append(tps)
            self.v[f"pgbench_pay_{c}"].append(tps_pay)
            self.v[f"intake_{c}"].append(rate)
            self.v[f"intake_p50_{c}"].append(res.p50_ms)
            self.v[f"intake_p99_{c}"].append(res.p99_ms)
            self.v[f"intake_ratio_{c}"].append(rate / tps if tps else float("nan"))
            if res.errors:
                self.notes.append(f"intake c={c} run {rep + 1}: client errors {res.errors}")
            hello = await self.hello(c, d)
            self.v[f"hello_{c}"].append(hello)
            self.v[f"hello_ratio_{c}"].append(hello / tps if tps else float("nan"))
            self.log(
                f"intake c={c} run {rep + 1}: pgbench {tps:,.0f} tps (payment row"
                f" {tps_pay:,.0f}), intake {rate:,.0f}/s ({res.tool}), p50"
                f" {res.p50_ms:.1f} ms, p99 {res.p99_ms:.1f} ms; aiohttp doing nothing"
                f" {hello:,.0f}/s"
            )

    async def hello(self, c: int, duration: float) -> float:
        """The same load on bench/hello.py (aiohttp, no auth, no database): its 2xx per second."""
        await self.system.start_hellos()
        try:
            mark = self.cpu_mark()
            res = await self.closed_load("hello", c, duration, url=self.system.hello)
            self.cpu_since(mark, f"aiohttp doing nothing c={c}", res.ok)
        finally:
            await self.system.stop_hellos()
        return res.ok_per_s

    async def drain(self, rep: int) -> None:
        """The workers settle N pre-filled PENDING payments (simulator at its latency)."""
        n = self.cfg.drain_n
        await self.fresh()
        if not self.system.workers:
            await self.system.start_workers()
        hook = f"{self.system.sim}/api/webhook/pg/DUMMY"
        if rep == 0:
            await self.statements_reset()
        started = time.perf_counter()
        await self.conn.execute(sql.PREFILL, MID, f"d{rep}", hook, n)
        # Work that arrives announces itself after commit (the intake pokes the workers the
        # same way); without it the workers would find it only at their next scheduled poll.
        await self.conn.execute("SELECT pg_notify('payments_pending', '')")
        insert_s = time.perf_counter() - started
        t0 = await self.conn.fetchval("SELECT clock_timestamp()")
        mark = self.cpu_mark()
        spies = []
        if rep == 0:
            seconds = min(20.0, max(2.0, n / 2000))
            spies = [
                await self.profile("worker-drain", self.system.pids()["worker"][0], seconds),
                await self.profile("simulator-drain", self.system.pids()["simulator"][0], seconds),
            ]
        settled = await self.wait_settled(self.drain_timeout(n))
        self.cpu_since(mark, "drain", n)
        for spy in spies:
            if spy:
                await spy
        r = await self.conn.fetchrow(sql.DRAIN_RESULT)
        if rep == 0:
            await self.statements_report("drain (workers)", n)
        final_rate = _rate(n, _seconds(t0, r["last_final"])) if r["final"] == n else math.nan
        hook_rate = (
            _rate(n, _seconds(t0, r["last_delivered"]))
            if settled and r["delivered"] == n
            else math.nan
        )
        if not settled or r["final"] != n or r["delivered"] != n:
            self.notes.append(
                f"drain run {rep + 1}: {r['final']}/{n} final, "
                f"{r['delivered']} delivered, {r['dead']} dead"
            )
        self.v["drain_insert_s"].append(insert_s)
        self.v["drain_final"].append(final_rate)
        self.v["drain_delivered"].append(hook_rate)
        self.log(
            f"drain run {rep + 1}: {n:,} pre-filled in {insert_s:.1f}s; final "
            f"{final_rate:,.0f}/s, webhooks delivered {hook_rate:,.0f}/s"
        )

    async def peer(self, rep: int) -> None:
        """pgqueuer drains N jobs with as many processes as workers: no-op jobs, then jobs
        making the payment's two HTTP calls (bench/pgqueuer_peer.py)."""
        if not self.peer_version:
            if rep == 0:
                self.notes.append("peer: pgqueuer is not installed (pip install -e '.[bench]')")
            return
        await self.system.stop_workers()
        for name, entrypoint in (
            ("peer", pgqueuer_peer.ENTRYPOINT),
            ("peer_calls", pgqueuer_peer.CALLS_ENTRYPOINT),
        ):
            enqueue_s, rate = await self.peer_drain(name, entrypoint)
            self.v[f"{name}_enqueue_s"].append(enqueue_s)
            self.v[name].append(rate)
            for kind in ("final", "delivered"):
                drained = self.v[f"drain_{kind}"]
                engine = drained[rep] if len(drained) > rep else None
                self.v[f"{name}_ratio_{kind}"].append(
                    engine / rate if engine and rate else math.nan
                )
            self.log(
                f"{name} run {rep + 1}: pgqueuer {self.peer_version} {entrypoint}: "
                f"enqueued {self.cfg.drain_n:,} in {enqueue_s:.1f}s, drained "
                f"{rate:,.0f} jobs/s"
            )

    async def peer_drain(self, name: str, entrypoint: str) -> tuple[float, float]:
        """Enqueue N `entrypoint` jobs and time their drain: (enqueue seconds, jobs/s)."""
        n = self.cfg.drain_n
        # The same start as the engine's drain: empty tables, a checkpoint.
        await self.fresh()
        await pgqueuer_peer.reset(self.conn)
        await self.system.start_peers(self.cfg.workers, self.cfg.batch_size)
        try:
            conn = await asyncpg.connect(self.pg.url)
            try:
                enqueue_s = await pgqueuer_peer.enqueue(conn, n, entrypoint)
            finally:
                await conn.close()
            t0 = await self.conn.fetchval("SELECT clock_timestamp()")
            mark = self.cpu_mark()
            deadline = time.monotonic() + self.drain_timeout(n)
            while await pgqueuer_peer.remaining(self.conn) > 0:
                self.system.check_alive()
                if time.monotonic() > deadline:
                    raise PhaseTimeout(f"pgqueuer did not drain {n} {entrypoint} jobs")
                await asyncio.sleep(0.2)
            self.cpu_since(mark, f"pgqueuer drain ({entrypoint})", n)
            r = await pgqueuer_peer.finished_at(self.conn)
            failed = await pgqueuer_peer.failures(self.conn)
            await pgqueuer_peer.reset(self.conn)  # leave nothing for autovacuum to chew on later
        finally:
            await self.system.stop_peers()
        if r["n"] != n:
            self.notes.append(f"{name}: {r['n']}/{n} {entrypoint} jobs succeeded")
            for count, line in failed:
                self.notes.append(f"{name}: {count} failed with {line}")
        return enqueue_s, _rate(n, _seconds(t0, r["last"])) if r["n"] == n else math.nan

    async def e2e_stats(self, prefix: str) -> dict[str, Any]:
        """Accept -> webhook-delivered figures of the payments under `prefix`."""
        row = await self.conn.fetchrow(sql.E2E_RESULT, prefix)
        dead = await self.conn.fetchval(sql.DEAD_COUNT)
        return (dict(row) if row else {"accepted": 0, "delivered": 0}) | {"dead": dead}

    def breakdown(self, name: str, s: dict[str, Any]) -> None:
        """Medians of the three legs: queued, claimed -> final, final -> webhook delivered."""
        for leg in ("queue", "settle", "webhook"):
            self.v[f"{name}_{leg}"].append(s.get(f"{leg}_ms") or math.nan)

    async def e2e(self, rep: int) -> None:
        """Light load latency, a capacity probe, then a sustained run near that capacity."""
        if not self.system.workers:
            await self.system.start_workers()
        await self.light(rep)
        capacity = await self.probe(rep)
        await self.sustained(rep, capacity)

    async def light(self, rep: int) -> None:
        """Paced load at --light-rate (100/s): accept -> webhook latency."""
        await self.fresh()
        if self.cfg.warmup_seconds > 0:
            # Unmeasured, at the same rate: the first second after fresh() (new connections,
            # first plans, the simulator's first requests) held the slowest 1 % of every
            # light run (its tail note), which is a start, not the steady state measured here.
            warm = await self.open_load(f"w{rep}", self.cfg.light_rate, self.cfg.warmup_seconds)
            await self.wait_settled(self.drain_timeout(warm.requests))
        prefix = f"l{rep}"
        mark = self.cpu_mark()
        before = await self.conn.fetchrow(sql.BACKGROUND)
        if rep == 0:
            await self.statements_reset()
        res = await self.open_load(prefix, self.cfg.light_rate, self.cfg.light_seconds)
        self.cpu_since(mark, f"e2e light {self.cfg.light_rate:.0f}/s", res.ok)
        settled = await self.wait_settled(self.drain_timeout(res.requests))
        after = await self.conn.fetchrow(sql.BACKGROUND)
        s = await self.e2e_stats(prefix)
        if rep == 0:
            await self.statements_report(f"e2e light {self.cfg.light_rate:.0f}/s", s["accepted"])
        await self.light_tail(rep, prefix, before, after)
        self.v["light_p50"].append(s.get("p50_ms") or math.nan)
        self.v["light_p99"].append(s.get("p99_ms") or math.nan)
        self.breakdown("light", s)
        self.v["light_rate"].append(
            _rate(s["accepted"], _seconds(s.get("first_req"), s.get("last_req")))
        )
        if not settled or s["delivered"] != s["accepted"]:
            self.notes.append(f"light run {rep + 1}: {s['delivered']}/{s['accepted']} delivered")
        self.log(
            f"light run {rep + 1}: {s['accepted']} payments at {self.cfg.light_rate:.0f}/s,"
            f" accept->webhook p50 {s.get('p50_ms') or math.nan:.1f} ms,"
            f" p99 {s.get('p99_ms') or math.nan:.1f} ms"
        )

    async def light_tail(
        self, rep: int, prefix: str, before: asyncpg.Record, after: asyncpg.Record
    ) -> None:
        """A note on the light run's slowest 1 %: when they came and which leg was slow."""
        rows = await self.conn.fetch(sql.LIGHT_TAIL, prefix)
        if not rows:
            return
        legs = {
            leg: statistics.median(r[f"{leg}_ms"] for r in rows)
            for leg in ("queue", "settle", "webhook")
        }
        seconds = sorted({int(r["at_s"]) for r in rows})
        totals = [r["total_ms"] for r in rows]
        note = (
            f"light run {rep + 1} tail: the {len(rows)} slowest (>= "
            f"{min(totals):.0f} ms, max {max(totals):.0f})"
            f" came in seconds {seconds} of the run; their median legs: queue"
            f" {legs['queue']:.1f}, settle {legs['settle']:.1f}, webhook {legs['webhook']:.1f} ms;"
            f" meanwhile {after['checkpoints'] - before['checkpoints']} checkpoint(s) and"
            f" {after['autovacuums'] - before['autovacuums']} autovacuum/analyze pass(es)"
        )
        self.notes.append(note)
        self.log(note)

    async def probe(self, rep: int) -> float:
        """Closed-loop saturation: webhooks delivered/s in the second half of the window."""
        await self.fresh()
        prefix = f"x{rep}"
        mark = self.cpu_mark()
        await self.closed_load(prefix, self.cfg.probe_concurrency, self.cfg.probe_seconds)
        self.cpu_since(mark, "e2e probe (saturated)")
        s = await self.e2e_stats(prefix)
        half = _seconds(s.get("first_req"), s.get("last_req")) / 2
        capacity = _rate(s.get("delivered_second_half") or 0, half)
        intake = _rate(s["accepted"], 2 * half)
        self.v["probe_capacity"].append(capacity)
        self.log(
            f"probe run {rep + 1}: intake {intake:,.0f}/s while delivering"
            f" {capacity:,.0f} webhooks/s"
        )
        # The flood's own rate, first request to last webhook (issue 15: overload must keep
        # the capacity): the workers deliver its backlog, then every payment is counted.
        settled = await self.wait_settled(self.drain_timeout(s["accepted"]))
        s = await self.e2e_stats(prefix)
        if settled and s["delivered"] == s["accepted"]:
            flood = _rate(s["accepted"], _seconds(s.get("first_req"), s.get("last_delivered")))
        else:
            flood = math.nan
            self.notes.append(f"probe run {rep + 1}: {s['delivered']}/{s['accepted']} delivered")
        self.v["flood_rate"].append(flood)
        self.log(f"probe run {rep + 1}: first request -> last webhook {flood:,.0f} payments/s")
        await self.fresh()
        return capacity

    async def sustained(self, rep: int, capacity: float) -> None:
        """Paced load at --e2e-rate for --e2e-seconds.

        By default it offers 5 % more than the target: a system that keeps up then passes,
        one that does not builds a backlog and shows its capacity instead. If the probe
        found more capacity than that, 90 % of it is offered.
        """
        probed = math.floor(0.9 * capacity / 10) * 10 if math.isfinite(capacity) else 0.0
        rate = self.cfg.e2e_rate or max(E2E_TARGET * 1.05, probed)
        prefix = f"s{rep}"
        spy = None
        if rep == 0:
            spy = await self.profile(
                "worker-e2e", self.system.pids()["worker"][0], min(30.0, self.cfg.e2e_seconds)
            )
        await self.statements_reset()
        mark = self.cpu_mark()
        res = await self.open_load(prefix, rate, self.cfg.e2e_seconds)
        settled = await self.wait_settled(max(30.0, self.cfg.e2e_seconds))
        s = await self.e2e_stats(prefix)
        self.cpu_since(mark, "e2e sustained (to delivered)", s["delivered"])
        await self.statements_report("e2e sustained", s["delivered"])
        if spy:
            await spy
        span = _seconds(s.get("first_req"), s.get("last_delivered"))
        all_delivered = settled and s["delivered"] == s["accepted"] and s["dead"] == 0
        self.v["e2e_offered"].append(rate)
        self.v["e2e_accepted"].append(
            _rate(s["accepted"], _seconds(s.get("first_req"), s.get("last_req")))
        )
        self.v["e2e_sustained"].append(_rate(s["delivered"], span))
        self.v["e2e_undelivered"].append(s["accepted"] - s["delivered"])
        self.v["e2e_backlog"].append(s["accepted"] - (s.get("delivered_in_window") or 0))
        self.v["e2e_p50"].append(s.get("p50_ms") or math.nan)
        self.v["e2e_p99"].append(s.get("p99_ms") or math.nan)
        self.breakdown("e2e", s)
        self.v["e2e_all_delivered"].append(1.0 if all_delivered else 0.0)
        if res.late_100:
            self.notes.append(
                f"e2e run {rep + 1}: {res.late_100} requests went over 100 ms "
                "after their slot (every wrk connection was busy)"
            )
        elif res.late_p99_ms > 100 or res.skipped:
            self.notes.append(
                f"e2e run {rep + 1}: load generator behind schedule (late p99 "
                f"{res.late_p99_ms:.0f} ms, {res.skipped} skipped)"
            )
        self.log(
            f"e2e run {rep + 1}: offered {rate:,.0f}/s for {self.cfg.e2e_seconds:.0f}s,"
            f" {s['accepted']} accepted, {s['delivered']} delivered, sustained"
            f" {self.v['e2e_sustained'][-1]:,.0f}/s, p50 {s.get('p50_ms') or math.nan:.0f}"
            f" ms, p99 {s.get('p99_ms') or math.nan:.0f} ms"
        )

    async def scale(self) -> None:
        """Claim latency at each table size (most rows final), with EXPLAIN ANALYZE."""
        name = "engine_bench_scale"
        await self.conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await self.conn.execute(f"CREATE DATABASE {name}")
        url = with_database(self.pg.url, name)
        conn = await db.connect(url)
        try:
            await db.migrate(conn)
            await conn.execute("SET session_replication_role = replica")  # fill: triggers off
            pending = max(100, min(1000, min(self.cfg.scale_rows) // 10))
            await conn.execute(sql.SCALE_FILL, 1, pending, True)
            filled = pending
            for size in sorted(self.cfg.scale_rows):
                started = time.monotonic()
                while filled < size:
                    upto = min(size, filled + 1_000_000)
                    await conn.execute(sql.SCALE_FILL, filled + 1, upto, False, timeout=3600)
                    filled = upto
                await conn.execute("VACUUM (ANALYZE) payment_processes", timeout=3600)
                # Flush the fill now, not while claims are timed (8 GB at 10,000,000 rows).
                await conn.execute("CHECKPOINT", timeout=3600)
                self.sizes[size] = await conn.fetchval(
                    "SELECT pg_size_pretty(pg_total_relation_size('payment_processes'))"
                )
                self.log(
                    f"scale: {size:,} rows ({self.sizes[size]}, {pending} PENDING) "
                    f"filled in {time.monotonic() - started:.0f}s"
                )
                await self.claims(conn, size)
        finally:
            await conn.close()
            await self.conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    async def claims(self, conn: asyncpg.Connection, size: int) -> None:
        """Time the claim statement (rolled back each time, so every sample sees the same)."""
        claim = load("payments")["claim_pending"]
        args = ("bench-claim", self.cfg.batch_size, 30.0)
        for _ in range(20):  # warm: plan cache, buffers (rolled back like every sample)
            tr = conn.transaction()
            await tr.start()
            await conn.fetch(claim, *args)
            await tr.rollback()
        spreads = []
        for _ in range(self.cfg.repeats):
            samples = []
            for _ in range(self.cfg.claim_samples):
                tr = conn.transaction()
                await tr.start()
                started = time.perf_counter()
                rows = await conn.fetch(claim, *args)
                samples.append((time.perf_counter() - started) * 1000)
                await tr.rollback()
            assert len(rows) == self.cfg.batch_size, f"claimed {len(rows)}"
            samples.sort()
            self.v[f"claim_{size}"].append(statistics.median(samples))
            self.v[f"claim_p99_{size}"].append(samples[int(len(samples) * 0.99)])
            q1, q3 = samples[len(samples) // 4], samples[3 * len(samples) // 4]
            spreads.append(q3 - q1)
        self.v[f"claim_iqr_{size}"].append(median(spreads))
        tr = conn.transaction()
        await tr.start()
        plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + claim, *args)
        await tr.rollback()
        self.explains[size] = "\n".join(r[0] for r in plan)
        self.log(
            f"scale: claim at {size:,} rows: median {median(self.v[f'claim_{size}']):.3f}"
            f" ms, p99 {median(self.v[f'claim_p99_{size}']):.3f} ms"
        )

    def sample_rss(self, t: float) -> None:
        """RSS of every process of the system now."""
        out: dict[str, list[int]] = {}
        for role, pids in self.system.pids().items():
            out[role] = []
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    out[role].append(psutil.Process(pid).memory_info().rss)
        self.rss.append((t, out))

    async def soak(self) -> None:
        """Fresh workers under steady load for --soak-seconds; their RSS sampled throughout."""
        d = self.cfg.soak_seconds
        await self.system.stop_workers()
        await self.fresh()
        await self.system.start_workers()
        sustained = median(self.v.get("e2e_sustained", []))
        rate = self.cfg.soak_rate or (
            max(20.0, round(sustained / 2)) if math.isfinite(sustained) else 200.0
        )
        await asyncio.sleep(1.0)
        start = time.monotonic()
        self.sample_rss(0.0)
        interval = max(1.0, d / 60)

        async def sampler() -> None:
            last_reset = time.monotonic()
            while time.monotonic() - start < d + 120:  # cancelled when the load ends
                await asyncio.sleep(interval)
                self.sample_rss(time.monotonic() - start)
                if time.monotonic() - last_reset > 30:  # the simulator keeps every webhook
                    await self.system.reset_simulator()
                    last_reset = time.monotonic()

        task = asyncio.create_task(sampler())
        try:
            await self.open_load("k", rate, d)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.sample_rss(time.monotonic() - start)
        settled = await self.wait_settled(max(30.0, d / 4))
        s = await self.e2e_stats("k")
        self.v["soak_rate"].append(rate)
        self.v["soak_undelivered"].append(s["accepted"] - s["delivered"])
        if not settled:
            self.notes.append(f"soak: {s['accepted'] - s['delivered']} webhooks undelivered")
        self.log(
            f"soak: {d:.0f}s at {rate:.0f}/s, {s['accepted']} accepted, {s['delivered']} delivered"
        )

    # --- the table -----------------------------------------------------------------------

    def rss_summary(self) -> dict[str, float]:
        """Worker RSS (MiB, the largest worker) at start, after warm-up, at the end."""
        if len(self.rss) < 2:
            return {}
        d = self.rss[-1][0]
        warm = next((s for s in self.rss if s[0] >= max(0.1 * d, 2.0)), self.rss[-1])

        def mib(sample: tuple[float, dict[str, list[int]]], role: str) -> float:
            values = sample[1].get(role) or [0]
            return max(values) / 2**20

        start, end = self.rss[0], self.rss[-1]
        growth = (
            max(
                (e - w) / 2**20
                for w, e in zip(warm[1].get("worker", []), end[1].get("worker", []), strict=False)
            )
            if warm[1].get("worker")
            else math.nan
        )
        return {
            "start": mib(start, "worker"),
            "warm": mib(warm, "worker"),
            "end": mib(end, "worker"),
            "growth": growth,
            "warm_at": warm[0],
            "web_start": mib(start, "web"),
            "web_end": mib(end, "web"),
            "sim_end": mib(end, "simulator"),
        }

    def table(self) -> Table:
        """Every line of the issue's list, in its order."""
        t = Table()
        v = self.v
        for c in self.cfg.concurrency:
            t.add(Row("physical", f"pgbench one-row INSERT, c={c}", v[f"pgbench_{c}"], "tps"))
            t.add(
                Row(
                    "physical",
                    f"pgbench payment_processes INSERT (triggers), c={c}",
                    v[f"pgbench_pay_{c}"],
                    "tps",
                    note="info",
                )
            )
        tool = "wrk" if self.use_wrk else f"aiohttp x{self.cfg.loadgen_procs}"
        for c in self.cfg.concurrency:
            t.add(
                Row(
                    "intake",
                    f"POST /api/payment accepted, c={c}",
                    v[f"intake_{c}"],
                    "/s",
                    note=tool,
                )
            )
            t.add(Row("intake", f"latency p50, c={c}", v[f"intake_p50_{c}"], "ms", 1))
            t.add(Row("intake", f"latency p99, c={c}", v[f"intake_p99_{c}"], "ms", 1))
            ratio = t.add(
                Row("intake", f"intake / pgbench, c={c}", v[f"intake_ratio_{c}"], "x", 2, ">= 0.40")
            )
            ratio.verdict = _verdict(ratio.value, lambda x: x >= 0.40)
            t.add(
                Row(
                    "intake",
                    f"ceiling: aiohttp doing nothing (bench/hello.py), c={c}",
                    v[f"hello_{c}"],
                    "/s",
                    note="info",
                )
            )
            t.add(
                Row(
                    "intake",
                    f"ceiling / pgbench, c={c}",
                    v[f"hello_ratio_{c}"],
                    "x",
                    2,
                    note="info",
                )
            )
        self.drain_rows(t)
        self.e2e_rows(t)
        self.scale_rows(t)
        self.soak_rows(t)
        return t

    def drain_rows(self, t: Table) -> None:
        """Engine drain, the pgqueuer peer and their ratios."""
        v, n = self.v, self.cfg.drain_n
        if not v.get("drain_final") and not v.get("peer"):
            return
        t.add(
            Row(
                "drain",
                f"pre-fill {n:,} PENDING (one INSERT ... SELECT, triggers on)",
                v["drain_insert_s"],
                "s",
                2,
                note="info",
            )
        )
        t.add(Row("drain", "engine: all final", v["drain_final"], "payments/s"))
        t.add(
            Row(
                "drain",
                "engine: all final + webhooks delivered",
                v["drain_delivered"],
                "payments/s",
            )
        )
        t.add(
            Row(
                "peer",
                f"pgqueuer {self.peer_version or '(not installed)'}: enqueue {n:,}",
                v["peer_enqueue_s"],
                "s",
                2,
                note="info",
            )
        )
        t.add(Row("peer", "pgqueuer: drain no-op jobs", v["peer"], "jobs/s"))
        for kind, label in (("final", "final"), ("delivered", "final + webhooks")):
            row = t.add(
                Row(
                    "peer",
                    f"engine ({label}) / pgqueuer",
                    v[f"peer_ratio_{kind}"],
                    "x",
                    2,
                    ">= 1.00",
                )
            )
            row.verdict = _verdict(row.value, lambda x: x >= 1.0)
        # Like for like: pgqueuer jobs doing the payment's authorize call and webhook.
        t.add(
            Row(
                "peer",
                "pgqueuer: drain jobs making a payment's two HTTP calls",
                v["peer_calls"],
                "jobs/s",
                note="info",
            )
        )
        for kind, label in (("final", "final"), ("delivered", "final + webhooks")):
            t.add(
                Row(
                    "peer",
                    f"engine ({label}) / pgqueuer with the same calls",
                    v[f"peer_calls_ratio_{kind}"],
                    "x",
                    2,
                    note="info",
                )
            )

    def e2e_rows(self, t: Table) -> None:
        """Light-load latency and the sustained run."""
        v = self.v
        if not v.get("light_p50"):
            return
        lr = self.cfg.light_rate
        t.add(Row("e2e", f"light load achieved (offered {lr:.0f}/s, paced)", v["light_rate"], "/s"))
        p50 = t.add(
            Row("e2e", f"accept -> webhook p50 at {lr:.0f}/s", v["light_p50"], "ms", 1, "<= 50")
        )
        p50.verdict = _verdict(p50.value, lambda x: x <= 50)
        t.add(Row("e2e", f"accept -> webhook p99 at {lr:.0f}/s", v["light_p99"], "ms", 1))
        self.leg_rows(t, "light", f"at {lr:.0f}/s")
        t.add(
            Row(
                "e2e",
                "capacity probe: webhooks delivered under saturation",
                v["probe_capacity"],
                "/s",
                note="info",
            )
        )
        t.add(
            Row(
                "e2e",
                "  that flood, first request -> last webhook (info)",
                v["flood_rate"],
                "payments/s",
            )
        )
        t.add(Row("e2e", "offered (paced)", v["e2e_offered"], "/s"))
        t.add(Row("e2e", "accepted", v["e2e_accepted"], "/s"))
        d = self.cfg.e2e_seconds
        sus = t.add(
            Row(
                "e2e",
                f"sustained intake -> webhook delivered, {d:.0f} s",
                v["e2e_sustained"],
                "payments/s",
                0,
                f">= {E2E_TARGET:.0f}, all delivered",
            )
        )
        everything = all(x == 1.0 for x in v["e2e_all_delivered"])
        sus.verdict = _verdict(sus.value, lambda x: x >= E2E_TARGET and everything)
        if d < 60:
            sus.note = f"{d:.0f} s run, target says 60 s"
        if v.get("flood_rate") and v.get("e2e_sustained"):
            ratios = [f / x for f, x in zip(v["flood_rate"], v["e2e_sustained"], strict=False)]
            flood = t.add(Row("e2e", "overload: flood / sustained", ratios, "x", 2, ">= 0.90"))
            flood.verdict = _verdict(flood.value, lambda x: x >= 0.90)
        t.add(Row("e2e", "webhooks not delivered at the end", v["e2e_undelivered"], ""))
        t.add(Row("e2e", "backlog when the offered load stopped", v["e2e_backlog"], "payments"))
        t.add(Row("e2e", "accept -> webhook p50 at that load", v["e2e_p50"], "ms", 1))
        t.add(Row("e2e", "accept -> webhook p99 at that load", v["e2e_p99"], "ms", 1))
        self.leg_rows(t, "e2e", "at that load")

    def leg_rows(self, t: Table, name: str, where: str) -> None:
        """The p50 of each leg of accept -> webhook."""
        legs = (
            ("queue", "accepted -> claimed"),
            ("settle", "claimed -> final"),
            ("webhook", "final -> webhook delivered"),
        )
        for leg, label in legs:
            t.add(
                Row("e2e", f"  p50 {label} {where}", self.v[f"{name}_{leg}"], "ms", 1, note="info")
            )

    def scale_rows(self, t: Table) -> None:
        """Claim latency at each size, and whether the largest matches the smallest."""
        sizes = sorted(s for s in self.cfg.scale_rows if self.v.get(f"claim_{s}"))
        for s in sizes:
            t.add(
                Row(
                    "scale",
                    f"claim_pending median, {s:,} rows ({self.sizes.get(s, '?')})",
                    self.v[f"claim_{s}"],
                    "ms",
                    3,
                )
            )
            t.add(Row("scale", f"claim_pending p99, {s:,} rows", self.v[f"claim_p99_{s}"], "ms", 3))
        if len(sizes) >= 2:
            small, big = sizes[0], sizes[-1]
            diff = median(self.v[f"claim_{big}"]) - median(self.v[f"claim_{small}"])
            noise = max(
                2 * max(median(self.v[f"claim_iqr_{small}"]), median(self.v[f"claim_iqr_{big}"])),
                0.1,
            )
            row = t.add(
                Row(
                    "scale",
                    f"claim {big:,} minus {small:,} rows",
                    [diff],
                    "ms",
                    3,
                    f"|diff| <= noise {noise:.3f}",
                )
            )
            row.verdict = abs(diff) <= noise

    def soak_rows(self, t: Table) -> None:
        """Worker RSS at the start and the end of the long run."""
        r = self.rss_summary()
        if not r:
            return
        d = self.cfg.soak_seconds
        rate = median(self.v.get("soak_rate", []))
        t.add(
            Row(
                "memory",
                f"worker RSS at start ({d:.0f} s run at {rate:.0f}/s)",
                [r["start"]],
                "MiB",
                1,
            )
        )
        t.add(
            Row("memory", f"worker RSS after warm-up ({r['warm_at']:.0f} s)", [r["warm"]], "MiB", 1)
        )
        t.add(Row("memory", "worker RSS at end", [r["end"]], "MiB", 1))
        limit = max(5.0, 0.05 * r["warm"])
        row = t.add(
            Row(
                "memory",
                "worker RSS growth after warm-up (largest worker)",
                [r["growth"]],
                "MiB",
                1,
                f"<= {limit:.1f} (flat)",
            )
        )
        row.verdict = _verdict(r["growth"], lambda x: x <= limit)
        if d < 600:
            row.note = f"{d:.0f} s run; --long soaks 600 s"
        t.add(Row("memory", "web RSS at start", [r["web_start"]], "MiB", 1, note="info"))
        t.add(Row("memory", "web RSS at end", [r["web_end"]], "MiB", 1, note="info"))
        t.add(
            Row(
                "memory",
                "simulator RSS at end (keeps what it receives)",
                [r["sim_end"]],
                "MiB",
                1,
                note="info",
            )
        )


def _verdict(value: float, ok: Any) -> bool | None:
    return bool(ok(value)) if value is not None and math.isfinite(value) else None


def results_markdown(
    cfg: Config,
    bench: Bench,
    table: Table,
    info: dict[str, str],
    other: tuple[float, float],
    started: datetime,
    seconds: float,
) -> str:
    """bench/RESULTS.md: when, where, how, and the numbers."""
    kind = {
        "full": "",
        "quick": " (QUICK: harness validation only, not a result)",
        "smoke": " (SMOKE)",
    }.get(cfg.preset.split()[0], "")
    command = "make bench" + (f' BENCH_ARGS="{shlex.join(cfg.argv)}"' if cfg.argv else "")
    lines = [
        f"# Benchmark results{kind}",
        "",
        f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}, took {seconds / 60:.1f} min",
        "- machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        f"- command: `{command}`",
        f"- system: 1 simulator, {cfg.webs} web, {cfg.workers} workers, embedded PostgreSQL 18 "
        f"(own folder, max_connections 300, other settings default); ENGINE_LOG_LEVEL="
        f"{cfg.log_level}; SIM_LATENCY_MS={cfg.sim_latency_ms}; extra env {cfg.env or 'none'}",
        f"- runs: {cfg.repeats} per figure (median; single values listed under runs); "
        f"intake {cfg.intake_seconds:g} s, drain {cfg.drain_n:,} payments, e2e "
        f"{cfg.e2e_seconds:g} s, light {cfg.light_seconds:g} s, soak {cfg.soak_seconds:g} s",
        "- load generator: "
        + (
            "wrk + bench/payment.lua, closed-loop for intake and the probe, paced (a send slot "
            "per request on a fixed schedule) for the e2e and soak runs"
            if bench.use_wrk
            else "aiohttp processes, closed-loop, and open-loop for the e2e and soak runs"
        ),
        f"- other processes on the machine used {other[0]:.0f} CPU-s during the run "
        f"({100 * other[1]:.0f}% of all cores): figures are only as quiet as that",
        "",
        "```",
        table.render(),
        "```",
    ]
    if bench.cpu:
        lines += ["", "```", bench.cpu_text(), "```"]
    if bench.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in bench.notes]
    for size, plan in sorted(bench.explains.items()):
        lines += ["", f"## claim_pending plan at {size:,} rows", "", "```", plan, "```"]
    if bench.rss:
        lines += [
            "",
            "## RSS samples (MiB, per process)",
            "",
            "| t (s) | workers | web | simulator |",
            "| ---: | --- | --- | --- |",
        ]
        step = max(1, len(bench.rss) // 15)
        for t, roles in bench.rss[::step] + ([bench.rss[-1]] if len(bench.rss) % step else []):
            cells = [
                " ".join(f"{x / 2**20:.1f}" for x in roles.get(r, []))
                for r in ("worker", "web", "simulator")
            ]
            lines.append(f"| {t:.0f} | " + " | ".join(cells) + " |")
    for name, text in bench.statements.items():
        lines += ["", f"## Statements: {name} (pg_stat_statements)", "", "```", text, "```"]
    for name, path in sorted(bench.profiles.items()):
        lines += ["", f"## py-spy: {name}", "", "```", summarize_pyspy(path.read_text()), "```"]
    return "\n".join(lines) + "\n"


async def run(cfg: Config) -> int:
    """Start everything, run the phases, print the table, write RESULTS.md."""
    started_at = datetime.now(UTC)
    t_start = time.monotonic()
    run_dir = make_run_dir(cfg.keep)
    (run_dir / "logs").mkdir()
    print(f"bench: run folder {run_dir}", file=sys.stderr)
    pg = await asyncio.to_thread(lambda: Postgres(run_dir, statements=cfg.statements))
    system: System | None = None
    try:
        await pg.configure()
        system = System(
            pg,
            run_dir / "logs",
            webs=cfg.webs,
            workers=cfg.workers,
            log_level=cfg.log_level,
            sim_latency_ms=cfg.sim_latency_ms,
            extra_env=cfg.env,
        )
        conn = await asyncpg.connect(pg.url)
        try:
            await conn.execute(sql.CREATE_BENCH_INSERT)
            if pgqueuer_peer.available() and "peer" in cfg.phases:
                await pgqueuer_peer.install(conn)
            key = await system.create_merchant(MID)
            await system.start()
            bench = Bench(cfg, pg, system, key, run_dir, conn)
            bench.log(
                f"system up: {cfg.webs} web, {cfg.workers} workers, simulator; preset "
                f"{cfg.preset}; closed-loop load by "
                f"{'wrk' if bench.use_wrk else 'aiohttp'}"
            )
            cpu0 = machine.snapshot(pg.postmaster_pid())
            await run_phases(bench, cfg)
            cpu1 = machine.snapshot(pg.postmaster_pid())
            versions = {"postgresql": str(await conn.fetchval("SHOW server_version"))}
            versions["pgqueuer"] = pgqueuer_peer.available() or "not installed"
        finally:
            await conn.close()
        table = bench.table()
        print(table.render())
        if bench.cpu:
            print()
            print(bench.cpu_text())
        for note in bench.notes:
            print(f"note: {note}")
        other = machine.foreign_load(cpu0, cpu1)
        print(
            f"other processes on the machine: {other[0]:.0f} CPU-s "
            f"({100 * other[1]:.0f}% of all cores) during the run"
        )
        if cfg.results:
            info = machine.describe() | versions
            text = results_markdown(
                cfg, bench, table, info, other, started_at, time.monotonic() - t_start
            )
            cfg.results.write_text(text)
            print(f"results written to {cfg.results}")
        return 0
    finally:
        if system is not None:
            await asyncio.to_thread(system.stop)
        await asyncio.to_thread(pg.stop_server if cfg.keep else pg.remove)
        if cfg.keep:
            print(f"bench: kept {run_dir}", file=sys.stderr)


async def run_phases(bench: Bench, cfg: Config) -> None:
    """Each repeat runs its phases in order; scale and soak run once (they sample inside)."""
    for rep in range(cfg.repeats):
        for name in ("intake", "drain", "peer", "e2e"):
            if name in cfg.phases:
                await _guarded(bench, name, getattr(bench, name)(rep))
    if "scale" in cfg.phases:
        await _guarded(bench, "scale", bench.scale())
    if "soak" in cfg.phases:
        await _guarded(bench, "soak", bench.soak())


async def _guarded(bench: Bench, name: str, phase: Any) -> None:
    """A phase that times out is noted and the run goes on; anything else stops it."""
    try:
        await phase
    except (PhaseTimeout, TimeoutError) as exc:
        bench.notes.append(f"{name}: {exc or type(exc).__name__}")
        bench.log(f"{name}: timed out: {exc}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bench`."""
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    logs.configure("console", "warning")  # the engine modules this process imports
    return asyncio.run(run(cfg))
