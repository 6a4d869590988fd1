"""`python -m bench.hotpath`: what PostgreSQL pays per payment on the hot path, in SQL alone.

One connection runs the engine's own statements (engine/store/*.sql) in the order a payment
meets them: the intake's insert (batches of 25, as its group commit), the worker's claim and
settle (batches of 50), the webhook's claim and the record of its answer (50). No HTTP, no
Python between them but the driver, so the figures are the database's alone:

- CPU time of the connection's server process per payment (utime + stime from /proc, so
  other processes on the machine do not count in it, unlike wall time);
- WAL bytes per payment (pg_current_wal_lsn before and after, from a checkpoint);
- wall time per payment of each step (round trips included; only as quiet as the machine).

Each round measures the schema as migrated ("as is") and, for reference, the same loop with
some of payment_processes' triggers disabled: their share of the cost. Rounds alternate the
variants, so a change in the machine's load shows as spread, not as a difference.

Writes bench/HOTPATH.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.system import Postgres, make_run_dir
from engine.store import db
from engine.store.queries import load

RESULTS = Path(__file__).with_name("HOTPATH.md")
MID = "bench_hotpath"
INSERT_BATCH, WORK_BATCH = 25, 50
STEPS = ("insert", "claim", "settle", "webhook claim", "webhook record")
TRUNCATE = (
    "TRUNCATE payment_processes, payment_search, webhook_deliveries, webhook_attempts,"
    " payment_events, payment_rollup_delta, payment_latency_delta RESTART IDENTITY CASCADE"
)
# Name -> the triggers of payment_processes it disables (none: the schema as migrated).
VARIANTS: dict[str, tuple[str, ...]] = {
    "as is": (),
    "without the search trigger": ("payment_processes_search",),
    "without the history triggers": ("payment_processes_events", "payment_processes_status_events"),
    "without the rollup trigger": ("payment_processes_rollup",),
    "without any trigger": ("USER",),
}


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _new_batch(n: int) -> list[list[object]]:
    """insert_payments' 16 parameter arrays for n new payments."""
    return [
        [f"pub{uuid.uuid4().hex}" for _ in range(n)],
        [f"T{secrets.token_hex(10)}" for _ in range(n)],
        [MID] * n,
        [uuid.uuid4().hex for _ in range(n)],
        ["USR_1"] * n,
        [1000] * n,
        ["KRW"] * n,
        [json.dumps({"orderNumber": "bench"})] * n,
        ["digest"] * n,
        [None] * n,
        ["card"] * n,
        ["bench order"] * n,
        ["merchant:bench"] * n,
        ["http://127.0.0.1:9/hook"] * n,
        ["test"] * n,
        [None] * n,
    ]


async def loop(conn: asyncpg.Connection, n: int, disabled: tuple[str, ...]) -> dict[str, float]:
    """Run n payments through the hot path; per payment: cpu ms, wal bytes, each step's ms."""
    payments, deliveries = load("payments"), load("deliveries")
    await conn.execute(TRUNCATE)
    for trigger in disabled:
        await conn.execute(f"ALTER TABLE payment_processes DISABLE TRIGGER {trigger}")
    try:
        await conn.execute("CHECKPOINT")
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        wall = dict.fromkeys(STEPS, 0.0)
        wal0 = await conn.fetchval("SELECT pg_current_wal_lsn()")
        cpu0 = _cpu_seconds(pid)
        done = 0

        async def step(name: str, query: str, *args: object) -> list[asyncpg.Record]:
            started = time.perf_counter()
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            wall[name] += time.perf_counter() - started
            return rows

        while done < n:
            for _ in range(WORK_BATCH // INSERT_BATCH):
                await step("insert", payments["insert_payments"], *_new_batch(INSERT_BATCH))
            claimed = await step("claim", payments["claim_pending"], "w1", WORK_BATCH, 30.0)
            ids = [r["id"] for r in claimed]
            k = len(ids)
            await step(
                "settle",
                payments["settle_batch"],
                ids,
                ["SUCCESS"] * k,
                ["A1"] * k,
                [None] * k,
                "w1",
            )
            sent = await step(
                "webhook claim", deliveries["claim_deliveries"], "w1", WORK_BATCH, 30.0
            )
            m, now = len(sent), datetime.now(UTC)
            await step(
                "webhook record",
                deliveries["deliveries_succeeded"],
                [r["id"] for r in sent],
                "w1",
                [200] * m,
                [now] * m,
                [1] * m,
                ['{"webhook-id": "evt"}'] * m,
                ['{"status": "SUCCESS"}'] * m,
                ["ok"] * m,
            )
            done += k
        cpu = _cpu_seconds(pid) - cpu0
        wal = await conn.fetchval("SELECT pg_current_wal_lsn() - $1::pg_lsn", wal0)
    finally:
        await conn.execute("ALTER TABLE payment_processes ENABLE TRIGGER USER")
    result = {"cpu ms": cpu * 1000 / done, "wal bytes": float(wal) / done}
    result.update({f"{name} ms": seconds * 1000 / done for name, seconds in wall.items()})
    return result


async def run(n: int, rounds: int, variants: list[str], keep: bool) -> int:
    """Measure every variant `rounds` times, alternating; write HOTPATH.md."""
    folder = make_run_dir(keep)
    pg = Postgres(folder)
    try:
        await pg.configure()
        conn = await db.connect(pg.url)
        try:
            await conn.execute("INSERT INTO merchants (mid, name) VALUES ($1, 'bench')", MID)
            # Warm-up: the first pass pays for catalog caches and the first pages.
            await loop(conn, min(n, 2_000), ())
            results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
            for r in range(rounds):
                for variant in variants:
                    got = await loop(conn, n, VARIANTS[variant])
                    results[variant].append(got)
                    print(
                        f"[hotpath] round {r + 1} {variant}: {got['cpu ms']:.3f} ms CPU,"
                        f" {got['wal bytes']:,.0f} B WAL per payment",
                        flush=True,
                    )
        finally:
            await conn.close()
    finally:
        pg.stop_server()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    RESULTS.write_text(report(results, n, rounds))
    print(RESULTS.read_text())
    return 0


def report(results: dict[str, list[dict[str, float]]], n: int, rounds: int) -> str:
    """The table: medians over the rounds, with each round's CPU figure."""
    head = (
        "| variant | PostgreSQL CPU per payment (ms) | rounds | WAL per payment (bytes) | "
        + " | ".join(f"{s} (ms, wall)" for s in STEPS)
        + " |"
    )
    lines = [
        "# PostgreSQL's cost per payment on the hot path (bench/hotpath.py)",
        "",
        f"`python -m bench.hotpath {' '.join(sys.argv[1:])}`".rstrip()
        + f": {n:,} payments per round, {rounds} rounds, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC,"
        f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "CPU is the server process's own (from /proc), so other load on the machine barely moves"
        " it; wall times include round trips and the machine's load.",
        "",
        head,
        "|" + " --- |" * (4 + len(STEPS)),
    ]
    for variant, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        each = ", ".join(f"{r['cpu ms']:.3f}" for r in runs)
        lines.append(
            f"| {variant} | {med['cpu ms']:.3f} | {each} | {med['wal bytes']:,.0f} | "
            + " | ".join(f"{med[f'{s} ms']:.3f}" for s in STEPS)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    """Parse arguments and run."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--payments", type=int, default=6_000, help="payments per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}"
    )
    p.add_argument("--keep", action="store_true", help="keep the database folder")
    a = p.parse_args()
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants: {unknown}")
    return asyncio.run(run(a.payments, a.rounds, variants, a.keep))


if __name__ == "__main__":
    sys.exit(main())
