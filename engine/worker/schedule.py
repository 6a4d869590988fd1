"""The worker's scheduled work, run by APScheduler: every pass is a scheduler job.

Each kind of work (payments, refunds, webhooks) is a `Lane` of a few jobs, one instance at a
time each: several jobs keep several batches in flight, since a pass mostly waits on the
provider and the database. A job runs the pass itself, again at once while passes fill their
batch, and then names its own next run: the seed's poll (its initial delay, then a fixed
delay after each run), or sooner when a retry it scheduled falls due (the inquiry of an
unknown outcome), or only when asked if polling is off. NOTIFY asks the scheduler to run an
idle job now; while every job is busy the ask is kept, and the next job to finish goes again.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import ParamSpec, Protocol

import structlog
from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from engine import errors, metrics
from engine.backoff import Backoff

log = structlog.get_logger()

P = ParamSpec("P")

# A pass that failed (the database down, or our own bug) is tried again after this backoff.
FAILED_PASS = Backoff(0.2, 5.0)


class PassResult(Protocol):
    """What a lane needs to know of a pass."""

    @property
    def claimed(self) -> int: ...

    @property
    def retry_in(self) -> float | None: ...


class WhenNamed(BaseTrigger):  # type: ignore[misc]
    """A lane job's trigger: it runs only at the times named for it, never by itself.

    A run names its successor when it ends (the seed's fixed delay counts from the end of a
    pass, which no trigger knows), and a ring names now. So no second run comes due while one
    lasts, however long, and nothing has to pause the job when a run starts.
    """

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        return NEVER


# What a lane job waits for when nothing has named its next run (None would remove it).
NEVER = datetime(9999, 1, 1, tzinfo=UTC)


class Schedule:
    """One APScheduler of a worker process, its lanes and its interval jobs."""

    def __init__(self, *, poll_every: float | None, first_poll: float) -> None:
        # The seed's fixed delay between polls (None: no polling) and its initial delay.
        self.poll_every = poll_every
        self.first_poll = first_poll
        # Run late rather than skip: every job is one that must run (no misfire grace).
        self.scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )
        self.lanes: list[Lane] = []
        self.running: set[asyncio.Task[None]] = set()
        self.serving = False

    def lane(
        self, name: str, one_pass: Callable[[], Awaitable[PassResult]], *, batch: int, jobs: int
    ) -> Lane:
        """A lane of `jobs` jobs running `one_pass`; `batch` is a full pass's claim."""
        lane = Lane(self, name, one_pass, batch=batch, jobs=jobs)
        self.lanes.append(lane)
        return lane

    def every(self, name: str, seconds: float, func: Callable[[], Awaitable[None]]) -> None:
        """Run `func` every `seconds` (one at a time; a late run is coalesced)."""
        self.scheduler.add_job(self._tracked(func), "interval", id=name, seconds=seconds)

    def _tracked(self, func: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
        """`func` as a job whose task `stop` can wait for, and cancel past the grace."""

        async def job(*args: P.args, **kwargs: P.kwargs) -> None:
            task = asyncio.current_task()
            assert task is not None
            self.running.add(task)
            try:
                await func(*args, **kwargs)
            except asyncio.CancelledError:
                # Only `stop` cancels jobs, and the pass already handed back what it held.
                # APScheduler would log a cancelled job as a crash.
                pass
            finally:
                self.running.discard(task)

        return job

    def wake(self) -> None:
        """Every lane looks for work now (after LISTEN connects, after the reaper freed rows)."""
        for lane in self.lanes:
            lane.ring_all()

    def start(self) -> None:
        """Start the scheduler on the running loop; polls begin after the initial delay."""
        self.scheduler.start()
        self.serving = True
        if self.poll_every is not None:
            first = datetime.now(UTC) + timedelta(seconds=self.first_poll)
            for lane in self.lanes:
                for job in lane.jobs:
                    job.modify(next_run_time=first)

    def halt(self) -> None:
        """Start no more jobs; the ones running end after the pass they are in."""
        self.serving = False
        if self.scheduler.running:
            self.scheduler.pause()

    async def stop(self, grace: float) -> int:
        """Halt; give running jobs `grace` seconds, then cancel them.

        Returns how many were cancelled. A cancelled pass hands back what it held.
        """
        self.halt()
        if not self.scheduler.running:
            return 0
        pending: set[asyncio.Task[None]] = set()
        if self.running:
            _, pending = await asyncio.wait(set(self.running), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.scheduler.shutdown(wait=False)
        return len(pending)


class Lane:
    """One kind of work as `jobs` scheduler jobs, each running the pass itself."""

    def __init__(
        self,
        schedule: Schedule,
        name: str,
        one_pass: Callable[[], Awaitable[PassResult]],
        *,
        batch: int,
        jobs: int,
    ) -> None:
        self.schedule = schedule
        self.name = name
        self.one_pass = one_pass
        self.batch = batch
        self.failures = 0
        self._kept = False
        self._idle: collections.deque[Job] = collections.deque()
        self.jobs = [
            schedule.scheduler.add_job(
                schedule._tracked(self._run),
                WhenNamed(),
                args=[n],
                id=f"{name}-{n}",
                # Nothing is due before `Schedule.start` (the initial delay) or a ring.
                next_run_time=None,
            )
            for n in range(jobs)
        ]
        self._idle.extend(self.jobs)

    def ring(self) -> None:
        """Run one idle job now; if none is idle, the next one to finish runs again."""
        if not self.schedule.serving:
            return
        if self._idle:
            self._idle.popleft().modify(next_run_time=datetime.now(UTC))
        else:
            self._kept = True

    def ring_all(self) -> None:
        """Run every idle job now, and again the next one to finish."""
        if not self.schedule.serving:
            return
        now = datetime.now(UTC)
        while self._idle:
            self._idle.popleft().modify(next_run_time=now)
        self._kept = True

    async def _run(self, n: int) -> None:
        job = self.jobs[n]
        if job in self._idle:  # it came due by itself, not by a ring
            self._idle.remove(job)
        rest: float | None = self.schedule.poll_every
        try:
            while self.schedule.serving:
                try:
                    result = await self.one_pass()
                except Exception as exc:
                    rest = self._failed(exc)
                    return
                self.failures = 0
                if result.claimed >= self.batch:
                    # A full batch: there is likely more. Bring in an idle job and go again
                    # (not a kept ring: this job is about to look anyway).
                    if self.schedule.serving and self._idle:
                        self._idle.popleft().modify(next_run_time=datetime.now(UTC))
                    await asyncio.sleep(0)
                    continue
                if self._kept:
                    # A ring came while every job was busy: its work may have been missed.
                    self._kept = False
                    continue
                if result.retry_in is not None and (rest is None or result.retry_in < rest):
                    rest = result.retry_in
                return
        finally:
            task = asyncio.current_task()
            assert task is not None
            # After APScheduler has counted this run as ended (its callback came first), or
            # a run due now would be refused as a second instance.
            task.add_done_callback(lambda _t: self._rest(job, rest))

    def _failed(self, exc: Exception) -> float:
        self.failures += 1
        delay = FAILED_PASS.delay(self.failures)
        if isinstance(exc, errors.DatabaseUnavailable):
            metrics.ERRORS.labels("database_unavailable").inc()
            log.warning("worker.database_unavailable", loop=self.name, retry_in=round(delay, 3))
        else:
            log.exception("worker.pass_failed", loop=self.name, exc_info=exc)
        return delay

    def _rest(self, job: Job, seconds: float | None) -> None:
        if not self.schedule.serving:
            return
        now = datetime.now(UTC)
        if self._kept:
            # A ring came after the run's last look and found no idle job: run again now.
            self._kept = False
            job.modify(next_run_time=now)
            return
        self._idle.append(job)
        if seconds is not None:
            job.modify(next_run_time=now + timedelta(seconds=seconds))
