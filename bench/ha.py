"""`python -m bench.ha`: what synchronous replication costs, and how long a failover takes.

The same system twice, one right after the other: the real processes (web, `--workers`
workers, simulator) first on one embedded PostgreSQL (as `make run`), then on three Patroni
nodes in synchronous mode (as `make run-ha`, engine/commands/ha.py). For each:

- intake: `POST /api/payment` closed loop with `--concurrency` connections for `--seconds`,
  workers stopped (the intake's own figure, as in `python -m bench`): accepted/s, p50, p99;
- end to end: paced load at `--rate` per second for `--seconds` with the workers running,
  then every webhook awaited; accept -> webhook delivered p50/p99 from the database, and the
  sustained rate (delivered payments over first request to last delivery).

Then, on the three nodes only, `--failovers` times: a prober posts a payment every
`--probe-ms` while the primary's PostgreSQL is SIGKILLed; measured are the time to Patroni's
new leader and the time to the first 202 for a request sent after the kill (target: under
15 s). Between two failovers the cluster is let heal (the old primary back as a standby, a
synchronous standby named).

Results go to bench/HA.md (`--no-results` to skip). See bench/README.md for the machine notes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import loadgen, machine, sql
from bench.system import Postgres, System, free_port, make_run_dir
from engine import logs
from engine.commands.ha import Cluster, Node
from engine.store import db

MID = "bench_ha"
RESULTS = Path(__file__).resolve().parent / "HA.md"
HA_DATABASE = "bench"


@dataclass
class Config:
    """The run's sizes and where its results go."""

    seconds: float = 20.0
    concurrency: int = 32
    rate: float = 200.0
    failovers: int = 5
    probe_ms: float = 20.0
    workers: int = 2
    results: Path | None = RESULTS
    keep: bool = False
    argv: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> Config:
    """Command-line options; `--quick` is 5 s windows and 2 failovers (a harness check)."""
    p = argparse.ArgumentParser(prog="python -m bench.ha", description=__doc__)
    p.add_argument("--seconds", type=float, default=20.0, help="each load window (20)")
    p.add_argument("--concurrency", type=int, default=32, help="intake connections (32)")
    p.add_argument("--rate", type=float, default=200.0, help="paced e2e payments/s (200)")
    p.add_argument("--failovers", type=int, default=5, help="primaries killed (5)")
    p.add_argument("--probe-ms", type=float, default=20.0, help="prober interval (20)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="5 s windows, 2 failovers")
    p.add_argument("--results", type=Path, default=RESULTS, help="Markdown results file")
    p.add_argument("--no-results", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the run's folder")
    a = p.parse_args(argv)
    cfg = Config(
        seconds=5.0 if a.quick else a.seconds,
        concurrency=a.concurrency,
        rate=a.rate,
        failovers=2 if a.quick else a.failovers,
        probe_ms=a.probe_ms,
        workers=a.workers,
        results=None if a.no_results else a.results,
        keep=a.keep,
        argv=argv,
    )
    if cfg.failovers < 0 or cfg.seconds <= 0 or cfg.rate <= 0:
        p.error("--failovers >= 0, --seconds and --rate > 0")
    return cfg


@dataclass
class ClusterDatabase:
    """What bench.system.System needs of its PostgreSQL: the URL (every node's)."""

    url: str


async def _settled(url: str, prefix: str, timeout: float) -> dict[str, Any]:
    """Wait until every payment of `prefix` has its webhook delivered; its E2E_RESULT row."""
    conn = await db.connect(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            row = await conn.fetchrow(sql.E2E_RESULT, prefix)
            if row and row["delivered"] == row["accepted"]:
                return dict(row)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{prefix}: not every webhook delivered: {dict(row or {})}")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def measure(
    pg: Any, cfg: Config, folder: Path, name: str
) -> tuple[dict[str, Any], System, str]:
    """Intake and end-to-end figures on `pg`; returns them, the running system and its key."""
    logs_dir = folder / f"logs-{name}"
    logs_dir.mkdir()
    system = System(
        pg,
        logs_dir,
        webs=1,
        workers=cfg.workers,
        log_level="info",
        sim_latency_ms=0,
        extra_env={},
    )
    await system.start()
    key = await system.create_merchant(MID)
    # A warm-up, then the intake on its own (workers stopped).
    await loadgen.run_aiohttp(
        system.web, key, MID, f"{name}w", mode="closed", duration=2, concurrency=8
    )
    intake = await loadgen.run_aiohttp(
        system.web,
        key,
        MID,
        f"{name}i",
        mode="closed",
        duration=cfg.seconds,
        concurrency=cfg.concurrency,
    )
    await system.start_workers()
    # The intake's payments (accepted with the workers stopped) drain first, so the paced run
    # measures its own payments, not the queue the intake left.
    await _settled(pg.url, f"{name}i", timeout=cfg.seconds * 10 + 60)
    paced = await loadgen.run_aiohttp(
        system.web,
        key,
        MID,
        f"{name}e",
        mode="open",
        duration=cfg.seconds,
        rate=cfg.rate,
        max_inflight=max(200, int(cfg.rate * 5)),
    )
    row = await _settled(pg.url, f"{name}e", timeout=cfg.seconds * 10 + 60)
    span = (row["last_delivered"] - row["first_req"]).total_seconds() if row["accepted"] else 0
    figures = {
        "intake_per_s": intake.ok_per_s,
        "intake_p50_ms": intake.p50_ms,
        "intake_p99_ms": intake.p99_ms,
        "intake_errors": intake.errors,
        "e2e_offered_per_s": cfg.rate,
        "e2e_accepted": paced.ok,
        "e2e_sustained_per_s": row["delivered"] / span if span else 0.0,
        "e2e_p50_ms": row["p50_ms"],
        "e2e_p99_ms": row["p99_ms"],
        "e2e_client_p50_ms": paced.p50_ms,
        "e2e_client_p99_ms": paced.p99_ms,
    }
    return figures, system, key


async def _probe(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    every: float,
    prefix: str,
    answers: list[tuple[float, float, int]],
) -> None:
    """Post a payment every `every` seconds until cancelled; (sent, answered, status) each."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    n = 0

    async def one(i: int) -> None:
        sent = time.monotonic()
        try:
            async with session.post(
                f"{url}/api/payment", data=loadgen.body(prefix, i, MID), headers=headers
            ) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        answers.append((sent, time.monotonic(), status))

    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            n += 1
            task = asyncio.create_task(one(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(every)
    except asyncio.CancelledError:
        await asyncio.gather(*tasks, return_exceptions=True)


async def failovers(
    cluster: Cluster, system: System, key: str, cfg: Config
) -> list[dict[str, float]]:
    """Kill the primary `cfg.failovers` times under a prober; what each took."""
    runs: list[dict[str, float]] = []
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for _ in range(cfg.failovers):
            await asyncio.to_thread(cluster.wait_ready, 120)
            old = await asyncio.to_thread(cluster.leader_name)
            assert old is not None
            answers: list[tuple[float, float, int]] = []
            prober = asyncio.create_task(
                _probe(session, system.web, key, cfg.probe_ms / 1000, f"probe{len(runs)}", answers)
            )
            await asyncio.sleep(1.0)
            killed = time.monotonic()
            await asyncio.to_thread(cluster.kill_postgres, cluster.node(old))
            promoted = None
            while promoted is None:
                leader = await asyncio.to_thread(cluster.leader_name)
                if leader not in (None, old):
                    promoted = time.monotonic() - killed
                else:
                    await asyncio.sleep(0.05)
            # Until a request sent after the kill has been accepted, and a little more.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                if any(sent > killed and status == 202 for sent, _, status in answers):
                    break
            await asyncio.sleep(0.5)
            prober.cancel()
            await asyncio.gather(prober, return_exceptions=True)
            first = min(
                (done for sent, done, status in answers if sent > killed and status == 202),
                default=float("nan"),
            )
            refused = sum(1 for _, _, status in answers if status not in (200, 202, 503))
            runs.append(
                {
                    "promoted_s": promoted,
                    "accepting_s": first - killed,
                    "probes": len(answers),
                    "not_202_or_503": refused,
                }
            )
            print(f"failover {len(runs)}: {runs[-1]}", file=sys.stderr)
    return runs


def report(single: dict[str, Any], three: dict[str, Any], runs: list[dict[str, float]]) -> str:
    """The Markdown table of one run."""
    lines = [
        "| figure | 1 node | 3 nodes, synchronous | 3 / 1 |",
        "|---|---:|---:|---:|",
    ]
    for label, k, fmt in (
        ("intake accepted/s", "intake_per_s", "{:,.0f}"),
        ("intake p50 ms", "intake_p50_ms", "{:.1f}"),
        ("intake p99 ms", "intake_p99_ms", "{:.1f}"),
        (
            "e2e sustained/s (offered " + f"{single['e2e_offered_per_s']:.0f}/s)",
            "e2e_sustained_per_s",
            "{:,.0f}",
        ),
        ("e2e accept -> webhook p50 ms", "e2e_p50_ms", "{:.1f}"),
        ("e2e accept -> webhook p99 ms", "e2e_p99_ms", "{:.1f}"),
        ("e2e client p50 ms", "e2e_client_p50_ms", "{:.1f}"),
        ("e2e client p99 ms", "e2e_client_p99_ms", "{:.1f}"),
    ):
        a, b = float(single[k]), float(three[k])
        ratio = f"{b / a:.2f}" if a else "n/a"
        lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {ratio} |")
    if runs:
        accepting = [r["accepting_s"] for r in runs]
        promoted = [r["promoted_s"] for r in runs]
        lines += [
            "",
            "| failover | promoted after s | first 202 after s | probes | neither 202 nor 503 |",
            "|---|---:|---:|---:|---:|",
        ]
        for i, r in enumerate(runs, 1):
            lines.append(
                f"| {i} | {r['promoted_s']:.2f} | {r['accepting_s']:.2f} | {r['probes']:.0f}"
                f" | {r['not_202_or_503']:.0f} |"
            )
        lines.append(
            f"| median (max) | {statistics.median(promoted):.2f} ({max(promoted):.2f})"
            f" | {statistics.median(accepting):.2f} ({max(accepting):.2f}) | | |"
        )
    return "\n".join(lines)


async def run(cfg: Config) -> str:
    """Both topologies, then the failovers; returns the table."""
    folder = make_run_dir(cfg.keep)
    pg = Postgres(folder / "single")
    system: System | None = None
    cluster: Cluster | None = None
    removed = False
    try:
        await pg.configure()
        single, system, _ = await measure(pg, cfg, folder, "one")
        system.stop()
        system = None
        pg.remove()
        removed = True
        nodes = [Node(f"node{i + 1}", free_port(), free_port(), free_port()) for i in range(3)]
        cluster = Cluster(folder / "cluster", nodes)
        await asyncio.to_thread(cluster.start)
        await asyncio.to_thread(cluster.wait_ready, 120)
        await cluster.create_database(HA_DATABASE)
        target = ClusterDatabase(cluster.url(HA_DATABASE))
        conn = await db.connect(target.url)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()
        three, system, key = await measure(target, cfg, folder, "three")
        runs = await failovers(cluster, system, key, cfg)
        table = report(single, three, runs)
        if cfg.results is not None:
            described = json.dumps(machine.describe())
            cfg.results.write_text(
                f"# bench.ha\n\n`python -m bench.ha {' '.join(cfg.argv)}`\n\n"
                f"Machine: {described}\n\n{table}\n"
            )
        return table
    finally:
        if system is not None:
            system.stop()
        if cluster is not None:
            cluster.kill()
        if not removed:
            pg.remove()
        if not cfg.keep:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    """Entry point."""
    logs.configure("console", "warning")
    print(asyncio.run(run(parse_args(argv))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
