"""`python -m bench.workercpu`: a worker process's own CPU per drained payment.

The drain (bench/run.py's phase) is bound by CPU on two cores, and most of it is the
workers'. This measures that one figure, repeatably, in a minute or two: an embedded
PostgreSQL and the simulator (from the Procfile, at latency 0), and `--workers` worker
processes (the Procfile's `python -m engine.worker`, JSON logs at info to a file, as the bench
runs them). Each round:

1. fresh workers are started and drain `--warmup` payments, not counted;
2. the tables are emptied, the simulator forgets, a CHECKPOINT;
3. the workers' CPU time is read (utime + stime from /proc/<pid>/stat: other load on the
   machine barely moves it, unlike wall time);
4. `--payments` PENDING payments are inserted by the drain's own pre-fill (one
   INSERT ... SELECT, webhooks to the simulator's receiver) and the workers are poked;
5. when every payment is final and every webhook delivered (read from the database, each one
   checked), the CPU time is read again, and the workers are stopped.

`--compare DIR` runs the workers of another checkout (e.g. `git archive <commit> | tar -x -C
DIR`) in every other round, so two versions are measured back to back under the same load.
Each round prints the workers' CPU per payment and, for reference, PostgreSQL's (every
backend) and the simulator's, and the wall-clock drain rate (which, unlike CPU, moves with the
machine's load). `--profile PREFIX` runs one more round per version under `py-spy record`
(non-blocking, 100 Hz) on the first worker and prints its top frames. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg

from bench import machine, sql
from bench.report import summarize_pyspy
from bench.system import ROOT, Postgres, System, make_run_dir, wait_http, wait_listeners

MID = "bench_workercpu"

# One round's figures: CPU ms per payment by role, and the wall-clock rate (/s).
Round = dict[str, float]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def empty(conn: asyncpg.Connection, tries: int = 5) -> None:
    """TRUNCATE what a round writes; the idle workers' own jobs may deadlock with it once."""
    for attempt in range(tries):
        try:
            await conn.execute(sql.TRUNCATE)
            return
        except asyncpg.DeadlockDetectedError:
            if attempt == tries - 1:
                raise
            await asyncio.sleep(0.2)


async def drain(
    conn: asyncpg.Connection, system: System, pg: Postgres, n: int, tag: str, timeout: float
) -> Round:
    """Pre-fill n PENDING payments, let the workers drain them; CPU per payment by role."""
    await empty(conn)
    await system.reset_simulator()
    await conn.execute("CHECKPOINT")
    workers = [p.pid for p in system.workers]
    sim = [p.pid for p in system.sims]
    before = {pid: cpu_seconds(pid) for pid in workers + sim}
    pg_before = machine.role_cpu({}, pg.postmaster_pid()).get("postgres", 0.0)
    hook = f"{system.sim}/api/webhook/pg/DUMMY"
    await conn.execute(sql.PREFILL, MID, tag, hook, n)
    t0 = await conn.fetchval("SELECT clock_timestamp()")
    await conn.execute("SELECT pg_notify('payments_pending', '')")
    deadline = time.monotonic() + timeout
    while True:
        row = await conn.fetchrow(sql.OPEN_WORK)
        if row["open"] == 0 and row["undelivered"] == 0:
            break
        system.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"not drained after {timeout:.0f}s: {dict(row)}")
        await asyncio.sleep(0.05)
    after = {pid: cpu_seconds(pid) for pid in workers + sim}
    pg_after = machine.role_cpu({}, pg.postmaster_pid()).get("postgres", 0.0)
    r = await conn.fetchrow(sql.DRAIN_RESULT)
    if r["final"] != n or r["delivered"] != n:
        raise RuntimeError(
            f"{r['final']}/{n} final, {r['delivered']}/{n} delivered, {r['dead']} dead"
        )
    seconds = (r["last_delivered"] - t0).total_seconds()
    return {
        "worker": 1000 * sum(after[p] - before[p] for p in workers) / n,
        "postgres": 1000 * (pg_after - pg_before) / n,
        "simulator": 1000 * sum(after[p] - before[p] for p in sim) / n,
        "rate": n / seconds if seconds > 0 else float("nan"),
    }


async def start_workers(system: System, n: int, checkout: Path) -> None:
    """n workers of `checkout`, each holding its LISTEN connection."""
    await system.stop_workers()
    for _ in range(n):
        system.workers.append(system.start_process("worker", system.commands["worker"], checkout))
    await wait_listeners(system.pg.url, "%\\_pending%", n, 60, system)


async def profile(
    conn: asyncpg.Connection, system: System, pg: Postgres, n: int, out: Path, timeout: float
) -> str:
    """One more round with py-spy recording the first worker; its top frames."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return "(py-spy not installed: pip install py-spy)"
    args = [spy, "record", "--pid", str(system.workers[0].pid), "--rate", "100"]
    args += ["--nonblocking", "--format", "raw", "--output", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await asyncio.sleep(1.0)  # attached before the work arrives
        await drain(conn, system, pg, n, "p", timeout)
    finally:
        proc.send_signal(2)  # SIGINT: py-spy stops sampling and writes what it has
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
    if not out.exists():
        return f"(py-spy wrote nothing: {err.decode(errors='replace')[-500:]})"
    return summarize_pyspy(out.read_text(), top=25)


def show(name: str, r: Round) -> str:
    """A round's line."""
    return (
        f"{name}: worker {r['worker']:.3f} ms CPU per payment; postgres {r['postgres']:.3f},"
        f" simulator {r['simulator']:.3f} (info); drained {r['rate']:,.0f}/s wall (info)"
    )


async def run(a: argparse.Namespace) -> int:
    """Start, measure the rounds (alternating versions), profile; print the medians."""
    versions = {"this checkout": Path(a.checkout).resolve() if a.checkout else ROOT}
    if a.compare:
        versions["compared"] = Path(a.compare).resolve()
    folder = make_run_dir(a.keep)
    (folder / "logs").mkdir()
    print(f"workercpu: run folder {folder}", file=sys.stderr)
    pg = await asyncio.to_thread(Postgres, folder)
    system = System(
        pg,
        folder / "logs",
        webs=0,
        workers=a.workers,
        log_level=a.log_level,
        sim_latency_ms=0,
        extra_env=dict(kv.split("=", 1) for kv in a.env),
    )
    if a.sim_port:
        system.sim_port = a.sim_port
        system.sim = f"http://127.0.0.1:{a.sim_port}"
    timeout = max(60.0, a.payments / 20)
    rounds: dict[str, list[Round]] = {v: [] for v in versions}
    profiles: dict[str, str] = {}
    try:
        await pg.configure()
        conn = await asyncpg.connect(pg.url)
        try:
            await conn.execute(sql.CREATE_BENCH_INSERT)  # sql.TRUNCATE names it
            await conn.execute("INSERT INTO merchants (mid, name) VALUES ($1, 'bench')", MID)
            # The simulator alone: no web process, nothing here calls the API.
            system.sims.append(system.start_process("simulator", system.commands["simulator"]))
            async with aiohttp.ClientSession() as s:
                await wait_http(s, f"{system.sim}/health", 60, system)
            for i in range(a.rounds):
                for version, checkout in versions.items():
                    await start_workers(system, a.workers, checkout)
                    await drain(conn, system, pg, a.warmup, "w", timeout)
                    got = await drain(conn, system, pg, a.payments, f"r{i}", timeout)
                    rounds[version].append(got)
                    print(show(f"round {i + 1}, {version}", got), flush=True)
            if a.profile:
                for version, checkout in versions.items():
                    await start_workers(system, a.workers, checkout)
                    await drain(conn, system, pg, a.warmup, "w", timeout)
                    out = Path(f"{a.profile}-{'compared' if version == 'compared' else 'this'}.txt")
                    profiles[version] = f"{out}\n" + await profile(
                        conn, system, pg, a.payments, out.resolve(), timeout
                    )
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(system.stop)
        await asyncio.to_thread(pg.stop_server if a.keep else pg.remove)
    print(
        f"\n{a.payments:,} payments per round, {a.rounds} rounds, {a.workers} worker(s),"
        f" extra env {' '.join(a.env) or 'none'}; medians:"
    )
    med: dict[str, float] = {}
    for version, runs in rounds.items():
        m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        med[version] = m["worker"]
        each = ", ".join(f"{r['worker']:.3f}" for r in runs)
        print(
            f"{version} ({versions[version]}): worker CPU per payment {m['worker']:.3f} ms"
            f" (rounds {each}); postgres {m['postgres']:.3f} ms, simulator"
            f" {m['simulator']:.3f} ms; drained {m['rate']:,.0f}/s wall (info)"
        )
    if a.compare:
        ratio = med["this checkout"] / med["compared"]
        print(f"this checkout / compared: {ratio:.3f} ({100 * (ratio - 1):+.1f} %)")
    for version, text in profiles.items():
        print(f"\npy-spy, first worker, one more round, {version}: {text}")
    return 0


def main() -> int:
    """Parse arguments and run."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--payments", type=int, default=5_000, help="payments per measured round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=500, help="payments drained before each round")
    p.add_argument("--workers", type=int, default=1, help="worker processes (CPU is summed)")
    p.add_argument("--log-level", default="info", help="the engine's, as in production")
    p.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="more worker settings"
    )
    p.add_argument("--compare", metavar="DIR", help="another checkout, measured in turn")
    p.add_argument("--checkout", metavar="DIR", help="measure this checkout's workers instead")
    p.add_argument("--sim-port", type=int, default=0, help="the simulator's port (0: any free)")
    p.add_argument("--profile", metavar="PREFIX", help="py-spy raw output: PREFIX-this.txt ...")
    p.add_argument("--keep", action="store_true", help="keep the run folder (logs)")
    a = p.parse_args()
    return asyncio.run(run(a))


if __name__ == "__main__":
    sys.exit(main())
