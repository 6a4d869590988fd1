"""The session read's plan on a new database (migration 0020): through the indexes, even
when it is cached while payment_processes is still empty.

Each pooled connection caches a generic plan of a statement after its fifth run. Planned
while payment_processes looked analyzed and empty (migration 0014's ANALYZE on a new
database), the session read seq-scanned payment_processes on every call for as long as that
plan lived: bench.sse's busiest statement. Not a timing: the plan's shape is asserted.
"""

from __future__ import annotations

import asyncpg

from engine.store.queries import load
from tests.conftest import MID

SESSION = load("checkout")["session"]


async def _plan(conn: asyncpg.Connection, public_id: str) -> str:
    rows = await conn.fetch(f"EXPLAIN (COSTS OFF) EXECUTE session_read('{public_id}')")
    return "\n".join(r[0] for r in rows)


async def test_a_new_database_does_not_look_analyzed_and_empty(pool: asyncpg.Pool) -> None:
    tuples = await pool.fetchval(
        "SELECT reltuples FROM pg_class WHERE oid = 'payment_processes'::regclass"
    )
    assert tuples == -1  # never analyzed: the planner costs it at ten pages at least


async def test_the_session_read_cached_on_an_empty_table_uses_the_indexes(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO checkout_sessions (public_id, client_secret, mid, mode, order_id,"
            " order_name, amount, currency, request_digest, actor, expires_at)"
            " SELECT 'cs_' || lpad(g::text, 22, '0'), 's', $1, 'test', 'o' || g, 'n', 1000,"
            " 'KRW', 'd', 'a', now() + interval '1 hour' FROM generate_series(1, 2000) g",
            MID,
        )
        assert await conn.fetchval("SELECT count(*) FROM payment_processes") == 0
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE session_read(text) AS {SESSION}")
        plan = await _plan(conn, "cs_0000000000000000000001")
        assert "Index Scan using payment_processes_checkout_session_key" in plan, plan
        assert "Seq Scan on payment_processes" not in plan, plan
        await conn.execute("DEALLOCATE session_read")
        await conn.execute("RESET plan_cache_mode")
