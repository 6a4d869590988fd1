"""The worker's schedule: passes are APScheduler jobs, rung by NOTIFY, and no ring is lost."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from engine.worker.schedule import Schedule
from tests.waiting import wait_until


@dataclass(frozen=True)
class Result:
    claimed: int
    retry_in: float | None = None


class Passes:
    """A pass that counts its runs; `gate`, when set, holds each run until it opens."""

    def __init__(self, claimed: list[int] | None = None, gate: asyncio.Event | None = None):
        self.runs = 0
        self.running = 0
        self.claimed = claimed or []
        self.gate = gate
        self.fail_first = False

    async def __call__(self) -> Result:
        self.runs += 1
        self.running += 1
        try:
            if self.fail_first and self.runs == 1:
                raise RuntimeError("a bug in the first pass")
            if self.gate is not None:
                await self.gate.wait()
            return Result(self.claimed.pop(0) if self.claimed else 0)
        finally:
            self.running -= 1


async def _turns(n: int = 50) -> None:
    """Many turns of the loop: a job that was due would have started by now."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_ring_runs_one_idle_job_once() -> None:
    schedule = Schedule(poll_every=None, first_poll=0)
    passes = Passes()
    lane = schedule.lane("payments", passes, batch=10, jobs=3)
    schedule.start()
    try:
        lane.ring()
        await wait_until(lambda: passes.runs == 1, what="one pass after one ring")
        await _turns()
        assert passes.runs == 1
    finally:
        await schedule.stop(1.0)


async def test_a_full_batch_runs_again_at_once() -> None:
    schedule = Schedule(poll_every=None, first_poll=0)
    passes = Passes(claimed=[10, 10, 10])
    lane = schedule.lane("payments", passes, batch=10, jobs=1)
    schedule.start()
    try:
        lane.ring()
        await wait_until(lambda: passes.runs == 4, what="three full batches, then one more")
        await _turns()
        assert passes.runs == 4
    finally:
        await schedule.stop(1.0)


async def test_a_ring_while_every_job_is_busy_is_kept() -> None:
    gate = asyncio.Event()
    schedule = Schedule(poll_every=None, first_poll=0)
    passes = Passes(gate=gate)
    lane = schedule.lane("webhooks", passes, batch=10, jobs=1)
    schedule.start()
    try:
        lane.ring()
        await wait_until(lambda: passes.running == 1, what="the only job busy")
        lane.ring()  # no idle job: kept, and the busy one must go again
        gate.set()
        await wait_until(lambda: passes.runs == 2, what="the kept ring's pass")
        await _turns()
        assert passes.runs == 2
    finally:
        await schedule.stop(1.0)


async def test_the_poll_runs_passes_without_any_ring() -> None:
    schedule = Schedule(poll_every=0.02, first_poll=0.0)
    passes = Passes()
    schedule.lane("refunds", passes, batch=10, jobs=1)
    schedule.start()
    try:
        await wait_until(lambda: passes.runs >= 3, what="three polls")
    finally:
        await schedule.stop(1.0)


async def test_a_failed_pass_is_tried_again() -> None:
    schedule = Schedule(poll_every=None, first_poll=0)
    passes = Passes()
    passes.fail_first = True
    lane = schedule.lane("payments", passes, batch=10, jobs=1)
    schedule.start()
    try:
        lane.ring()
        await wait_until(lambda: passes.runs == 2, what="the pass after the failed one")
    finally:
        await schedule.stop(1.0)


async def test_stop_cancels_a_pass_past_the_grace_and_starts_no_more() -> None:
    schedule = Schedule(poll_every=None, first_poll=0)
    passes = Passes(gate=asyncio.Event())  # never opens
    lane = schedule.lane("payments", passes, batch=10, jobs=2)
    schedule.start()
    lane.ring()
    await wait_until(lambda: passes.running == 1, what="one pass held")
    assert await schedule.stop(0.05) == 1
    assert passes.running == 0
    lane.ring()
    await _turns()
    assert passes.runs == 1
