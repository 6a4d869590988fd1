"""What operations read from the database: the /metrics snapshot, a node id per process."""

from __future__ import annotations

from typing import Any

from engine.store.base import Store, translated
from engine.store.queries import load

Q = load("ops")


class Ops(Store):
    """Whole-system reads, across merchants."""

    @translated
    async def metrics_snapshot(self) -> dict[str, Any]:
        """Counts of active states and oldest ages, for /metrics."""
        row = await self.pool.fetchrow(Q["metrics_snapshot"])
        assert row is not None
        return {
            k: (float(v) if k.startswith("oldest") and v is not None else v) for k, v in row.items()
        }

    @translated
    async def next_node_id(self) -> int:
        """A Snowflake node id for this process."""
        return int(await self.pool.fetchval(Q["next_node_id"]))
