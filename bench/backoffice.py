"""`python -m bench.backoffice`: the back office's reads on a large table.

On N payments (10,000,000 by default; `--quick` 1,000,000) filled by generate_series with
triggers off, in an own embedded PostgreSQL (the wheel's default settings, as `make run`):

- page(): p95 time of the first page and of a page deep in the walk (the 20th), for each
  filter and with none, as the caller sees it (round trips included), with EXPLAIN ANALYZE
  of the first page saved; target 50 ms;
- the CSV export of about 1,000,000 rows (a date range sized to it): rows/s through
  export_csv, and this process's RSS sampled throughout; target 50,000 rows/s;
- overview() for today, 7 and 30 days: p95; target 200 ms.

The figures go to bench/BACKOFFICE.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench import backoffice_sql as sql
from bench.system import Postgres, make_run_dir
from engine import reports
from engine.reports import PaymentQuery
from engine.reports.query import decode_cursor
from engine.store import db
from engine.store.queries import load
from engine.store.reports import SEARCH_PAGE, SEARCH_SET_MAX, ReportsStore, page_statement

MID, MODE = "bo_big", "live"
# "Index Scan using X on T", "Bitmap Index Scan on X", "Seq Scan on T".
_SCANS = re.compile(
    r"(?:Index (?:Only )?Scan using (\S+)|Bitmap Index Scan on (\S+)|(Seq Scan on \S+))"
)
SECRET = "bench-cursor-secret"
RESULTS = Path(__file__).resolve().parent / "BACKOFFICE.md"
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def p95(samples: list[float]) -> float:
    """The 95th percentile (nearest rank) of samples in ms."""
    ordered = sorted(samples)
    return ordered[max(0, int(len(ordered) * 0.95 + 0.5) - 1)]


def cases(n: int) -> dict[str, PaymentQuery]:
    """Each filter alone, none, and a combination; the values exist in the fill."""
    day = NOW - timedelta(days=30)
    some = 123_451  # a row of bo_big (g % 10 < 6) in live mode (g % 5 != 0)
    return {
        "none": PaymentQuery(),
        "kind=payment": PaymentQuery(kinds=frozenset({"payment"})),
        "kind=cancel": PaymentQuery(kinds=frozenset({"cancel"})),
        "kind=refund": PaymentQuery(kinds=frozenset({"refund"})),
        "status=SUCCESS": PaymentQuery(statuses=frozenset({"SUCCESS"})),
        "status=FAILED": PaymentQuery(statuses=frozenset({"FAILED"})),
        "status=REFUNDED": PaymentQuery(statuses=frozenset({"REFUNDED"})),
        "status=UNRESOLVED": PaymentQuery(statuses=frozenset({"UNRESOLVED"})),
        "date range (1 day)": PaymentQuery(created_from=day, created_to=day + timedelta(days=1)),
        "amount 1000..1100": PaymentQuery(amount_min=1000, amount_max=1100),
        "amount >= 100000": PaymentQuery(amount_min=100_000),
        "currency=USD (9 %)": PaymentQuery(currency="USD"),
        "currency=JPY (1 %)": PaymentQuery(currency="JPY"),
        "search order id": PaymentQuery(search=f"O{some}"),
        "search tid": PaymentQuery(search=f"BO_20260101_{some:010d}"),
        # Customers are CUST_0 .. CUST_99999 evenly: CUST_4242 and CUST_42420..9 are 0.011 %.
        "search customer": PaymentQuery(search="CUST_4242"),
        "search customer 0.11 %": PaymentQuery(search="CUST_424"),
        "search customer 1.1 %": PaymentQuery(search="CUST_42"),
        "search name prefix (4 %)": PaymentQuery(search="blue sh"),
        "payment+FAILED+USD+7d": PaymentQuery(
            kinds=frozenset({"payment"}),
            statuses=frozenset({"FAILED"}),
            currency="USD",
            created_from=NOW - timedelta(days=7),
        ),
    }


async def fill(conn: asyncpg.Connection, n: int, log: Any) -> None:
    """N payments and their refunds, triggers off, indexes built after; then the rollup."""
    started = time.monotonic()
    await conn.execute("SET maintenance_work_mem = '512MB'")
    indexes = await conn.fetch(sql.PLAIN_INDEXES)
    for r in indexes:
        await conn.execute(f"DROP INDEX {r['indexname']}")
    await conn.execute("SET session_replication_role = replica")  # fill: triggers off
    step = 500_000
    for first in range(1, n + 1, step):
        await conn.execute(sql.FILL, first, min(n, first + step - 1), n, NOW, timeout=7200)
        log(f"filled {min(n, first + step - 1):,} rows ({time.monotonic() - started:.0f}s)")
    await conn.execute(sql.REFUNDS, timeout=7200)
    await conn.execute("SET session_replication_role = origin")
    # The search columns' table (migration 0017), which the insert's trigger would have written.
    await conn.execute("SELECT rebuild_payment_search()", timeout=7200)
    for r in indexes:
        await conn.execute(r["indexdef"], timeout=7200)
    log(f"indexes rebuilt ({time.monotonic() - started:.0f}s)")
    await conn.execute("SELECT rebuild_payment_rollup()", timeout=7200)
    await conn.execute("VACUUM (ANALYZE) payment_processes", timeout=7200)
    await conn.execute("VACUUM (ANALYZE) payment_search", timeout=7200)
    await conn.execute("VACUUM (ANALYZE) refunds", timeout=7200)
    await conn.execute("CHECKPOINT", timeout=7200)
    log(f"fill done in {time.monotonic() - started:.0f}s")


async def timed(coro_fn: Any, samples: int) -> list[float]:
    """Wall times in ms of `samples` calls (after 3 to warm up)."""
    for _ in range(3):
        await coro_fn()
    out = []
    for _ in range(samples):
        t = time.perf_counter()
        await coro_fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


async def explain(
    conn: asyncpg.Connection, query: PaymentQuery, after: str | None = None
) -> tuple[str, float, str]:
    """EXPLAIN (ANALYZE, BUFFERS) of a page (the first, or the one after cursor `after`), its
    execution time in ms (the count of a search's matches not included), and which statement
    page() runs (from a search's matches or walking the history by time)."""
    position = None if after is None else decode_cursor(after, MID, MODE, SECRET)
    params = query.params(MID, MODE, position, 51)
    async with conn.transaction(readonly=True):
        await conn.execute(load("reports")["custom_plans"])
        statement = await page_statement(conn, params)
        plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + statement, *params)
    text = "\n".join(r[0] for r in plan)
    execution = float(text.rsplit("Execution Time:", 1)[1].split("ms")[0])
    return text, execution, "matches" if statement == SEARCH_PAGE else "walk"


async def pages(store: ReportsStore, conn: asyncpg.Connection, n: int, samples: int) -> list[str]:
    """The page() lines and the EXPLAINs."""
    lines, plans = [], []
    for name, query in cases(n).items():
        first = await reports.page(store, MID, MODE, query, None, 50, secret=SECRET)
        cursor = first.next_cursor
        for _ in range(18):
            if cursor is None:
                break
            cursor = (
                await reports.page(store, MID, MODE, query, cursor, 50, secret=SECRET)
            ).next_cursor
        deep = cursor

        async def first_page(query: PaymentQuery = query) -> None:
            await reports.page(store, MID, MODE, query, None, 50, secret=SECRET)

        async def deep_page(query: PaymentQuery = query, deep: str | None = deep) -> None:
            await reports.page(store, MID, MODE, query, deep, 50, secret=SECRET)

        t1 = await timed(first_page, samples)
        t20 = await timed(deep_page, samples) if deep else []
        text, execution, how = await explain(conn, query)
        used = sorted({"".join(m) for m in _SCANS.findall(text)})
        lines.append(
            f"| {name} | {len(first.rows)} | {p95(t1):.1f} | "
            + (f"{p95(t20):.1f}" if t20 else "(one page)")
            + f" | {execution:.1f} | {how} | {', '.join(used)} |"
        )
        plans.append(f"### {name}\n\n```\n{text}\n```\n")
        if deep:
            deep_text = (await explain(conn, query, deep))[0]
            plans.append(f"### {name}, 20th page\n\n```\n{deep_text}\n```\n")
    return [
        "| filter | rows | p95 first page ms | p95 20th page ms | EXPLAIN ANALYZE ms | reads"
        " | indexes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *lines,
        "",
        "<details><summary>EXPLAIN (ANALYZE, BUFFERS) of each first and 20th page</summary>",
        "",
        *plans,
        "</details>",
    ]


async def export(store: ReportsStore, conn: asyncpg.Connection, target: int) -> list[str]:
    """Stream about `target` rows to CSV; rows/s and this process's RSS along the way."""
    since = await conn.fetchval(
        "SELECT requested_at FROM payment_processes WHERE mid = $1 AND mode = $2"
        " ORDER BY requested_at DESC, id DESC OFFSET $3 LIMIT 1",
        MID,
        MODE,
        target,
    )
    query = PaymentQuery(created_from=since)
    me = psutil.Process()
    rss = [me.memory_info().rss]
    rows = size = 0

    async def write(chunk: bytes) -> None:
        nonlocal rows, size
        size += len(chunk)
        rows += chunk.count(b"\n")
        if len(rss) < rows // 50_000 + 1:
            rss.append(me.memory_info().rss)

    started = time.perf_counter()
    await reports.export_csv(store, MID, MODE, query, write)
    seconds = time.perf_counter() - started
    rss.append(me.memory_info().rss)
    rows -= 1  # the header
    mib = [r / 2**20 for r in rss]
    after = mib[min(2, len(mib) - 1)]
    return [
        f"- rows: {rows:,} ({size / 2**20:.0f} MiB of CSV) in {seconds:.1f} s: "
        f"**{rows / seconds:,.0f} rows/s** (target >= 50,000)",
        f"- RSS of the exporting process: {mib[0]:.0f} MiB before, {after:.0f} MiB after 100,000"
        f" rows, peak {max(mib):.0f} MiB, {mib[-1]:.0f} MiB at the end (sampled every 50,000"
        f" rows: {len(mib)} samples); growth after the first 100,000 rows: "
        f"{max(mib) - after:.1f} MiB",
    ]


async def overviews(store: ReportsStore, samples: int) -> list[str]:
    """overview() for each range."""
    out = ["| range | buckets | payments | p95 ms |", "| --- | --- | --- | --- |"]
    for range_ in ("today", "7d", "30d"):

        async def call(range_: str = range_) -> None:
            await reports.overview(store, MID, MODE, range_, "Asia/Seoul", now=NOW)

        t = await timed(call, samples)
        got = await reports.overview(store, MID, MODE, range_, "Asia/Seoul", now=NOW)
        out.append(
            f"| {range_} | {len(got.buckets)} | {sum(b.count for b in got.buckets):,} |"
            f" {p95(t):.1f} |"
        )
    return out


PARTS = ("pages", "export", "overview")


async def run(
    n: int,
    samples: int,
    export_rows: int,
    keep: bool,
    reuse: Path | None,
    only: frozenset[str] = frozenset(PARTS),
    results: Path | None = None,
) -> int:
    """Fill (or reuse a kept fill), measure `only` those parts, write BACKOFFICE.md when all
    were measured (else print them only)."""
    folder = reuse or make_run_dir(keep)
    keep = keep or reuse is not None
    pg = Postgres(folder)

    def log(message: str) -> None:
        print(f"[backoffice] {message}", flush=True)

    try:
        if reuse is None:
            await pg.configure()
        conn = await db.connect(pg.url)
        pool = await db.create_pool(pg.url, min_size=2, max_size=4)
        try:
            if reuse is None:
                await fill(conn, n, log)
            else:
                await db.migrate(conn)  # any migration since the fill
                n = await conn.fetchval("SELECT count(*) FROM payment_processes")
                log(f"reusing {n:,} payments in {folder}")
            size = await conn.fetchval(
                "SELECT pg_size_pretty(pg_total_relation_size('payment_processes'))"
            )
            mine = await conn.fetchval(
                "SELECT count(*) FROM payment_processes WHERE mid = $1 AND mode = $2", MID, MODE
            )
            store = ReportsStore(pool)
            page_lines = export_lines = overview_lines = ["(not measured: --only)"]
            if "pages" in only:
                page_lines = await pages(store, conn, n, samples)
                log("pages measured")
            if "export" in only:
                export_lines = await export(store, conn, min(export_rows, n // 2))
                log("export measured")
            if "overview" in only:
                overview_lines = await overviews(store, samples)
        finally:
            await pool.close()
            await conn.close()
        text = "\n".join(
            [
                "# Back office bench (bench/backoffice.py)",
                "",
                f"`python -m bench.backoffice {' '.join(sys.argv[1:])}`".rstrip()
                if reuse is None
                else f"`python -m bench.backoffice --rows {n} --keep`, measured again with"
                " `--reuse` on the folder it kept",
                "",
                f"{n:,} payments ({size} with indexes), {mine:,} of them {MID}'s in {MODE} mode"
                f" (the merchant measured); {samples} samples per figure; "
                f"{psutil.cpu_count()} CPUs, load average before the run "
                f"{psutil.getloadavg()[0]:.1f}.",
                "",
                "## page()",
                "",
                "reads: `matches` when a search matched fewer than"
                f" {SEARCH_SET_MAX:,} of the merchant's payments (found through the tid and"
                " prefix indexes, then filtered and sorted; the count is in the page's time, not"
                " in EXPLAIN's), else `walk` (each branch walks its index by time).",
                "",
                *page_lines,
                "",
                "## CSV export",
                "",
                *export_lines,
                "",
                "## overview() (Asia/Seoul)",
                "",
                *overview_lines,
                "",
            ]
        )
        if only == frozenset(PARTS):
            RESULTS.write_text(text)
        if results is not None:
            results.write_text(text)
        if keep:
            log(f"database kept in {folder} (measure again with --reuse {folder})")
        print(text.split("<details>")[0])
        print("\n".join(["## CSV export", *export_lines, "## overview()", *overview_lines]))
        return 0
    finally:
        pg.stop_server()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    """Parse arguments and run."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1,000,000 payments")
    p.add_argument("--rows", type=int, help="payments to fill (default 10,000,000)")
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--export-rows", type=int, default=1_000_000)
    p.add_argument("--keep", action="store_true", help="keep the database folder")
    p.add_argument(
        "--reuse", type=Path, help="measure again on the folder a --keep run kept (no fill)"
    )
    p.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="measure only this part (repeatable); BACKOFFICE.md is written only when all are",
    )
    p.add_argument(
        "--results", type=Path, help="also write the whole report (plans included) to this file"
    )
    a = p.parse_args()
    n = a.rows or (1_000_000 if a.quick else 10_000_000)
    only = frozenset(a.only or PARTS)
    return asyncio.run(run(n, a.samples, a.export_rows, a.keep, a.reuse, only, a.results))


if __name__ == "__main__":
    sys.exit(main())
