"""bench.hotpath's loop runs the engine's own statements through a whole payment's life.

Not a performance test: no figure is compared with a target. It checks that the loop does
what its figures claim to measure (every payment inserted, claimed, settled, its webhook
claimed and recorded) and that the triggers it disables for a variant are enabled again.
"""

from __future__ import annotations

import asyncpg

from bench import hotpath


async def test_the_loop_takes_every_payment_to_a_delivered_webhook(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO merchants (mid, name) VALUES ($1, 'bench')", hotpath.MID)
        got = await hotpath.loop(conn, 100, ("payment_processes_search",))

    assert got["cpu ms"] >= 0 and got["wal bytes"] > 0
    assert all(got[f"{step} ms"] > 0 for step in hotpath.STEPS)
    statuses = await pool.fetch("SELECT status, count(*) FROM payment_processes GROUP BY 1")
    assert [tuple(r) for r in statuses] == [("SUCCESS", 100)]
    delivered = await pool.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE status = 'DELIVERED'"
    )
    assert delivered == 100
    # The variant's trigger is on again: the next insert is indexed for search.
    disabled = await pool.fetchval(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'payment_processes'::regclass"
        " AND NOT tgisinternal AND tgenabled = 'D'"
    )
    assert disabled == 0
