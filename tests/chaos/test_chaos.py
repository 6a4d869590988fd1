"""The chaos suite at CI size: every invariant must hold."""

from __future__ import annotations

import pytest

from tests.chaos.harness import ChaosConfig, run

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(400)]


async def test_invariants_hold_under_chaos() -> None:
    cfg = ChaosConfig(payments=300, workers=2, concurrency=8, kill_every=1.0, rate=25.0)
    report = await run(cfg)
    print(report.table())
    assert report.ok, report.table()
    # The chaos really happened.
    assert report.chaos["worker_kills"] >= 1
    assert report.chaos["postgres_restarts"] == 1
    assert report.chaos["acquirer_outage"]
