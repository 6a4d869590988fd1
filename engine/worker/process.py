"""The worker process: drains payments and webhooks, woken by NOTIFY, paced by APScheduler.

Each kind of work has one loop. A pass that fills its batch runs again at once; otherwise the
loop sleeps until NOTIFY says work arrived, the scheduled safety-net poll fires, or a retry it
scheduled falls due. `python -m engine.worker` runs it; several may run at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol, cast

import aiohttp
import asyncpg
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from config import settings as config_settings
from engine import backoff, errors, logs, metrics
from engine import loop as event_loop
from engine.payments import claim
from engine.providers import acquirer, atom
from engine.providers.protocol import Provider, registry_key
from engine.refunds import settle
from engine.store import db, devdb
from engine.store.repository import Repository
from engine.webhooks import delivery as webhooks
from engine.webhooks import egress
from engine.worker import wakeup

log = structlog.get_logger()

PAYMENTS_CHANNEL = wakeup.PAYMENTS
REFUNDS_CHANNEL = wakeup.REFUNDS
WEBHOOKS_CHANNEL = wakeup.WEBHOOKS


class PassResult(Protocol):
    """What a loop needs to know of a pass."""

    @property
    def claimed(self) -> int: ...

    @property
    def retry_in(self) -> float | None: ...


class Doorbell:
    """Wakes one sleeping loop per ring, so a NOTIFY does not send every loop to the database.

    A ring while no loop sleeps is kept: the next loop that would sleep runs a pass instead.
    `ring_all` wakes every loop (the safety-net poll, the reaper, shutdown).
    """

    def __init__(self) -> None:
        self._sleepers: collections.deque[asyncio.Future[None]] = collections.deque()
        self._kept = False

    def ring(self) -> None:
        """Wake one sleeping loop, or keep the ring for the next one."""
        if not self._wake(every=False):
            self._kept = True

    def ring_all(self) -> None:
        """Wake every sleeping loop, and the next one to sleep."""
        self._wake(every=True)
        self._kept = True

    def _wake(self, *, every: bool) -> bool:
        """Wake the first sleeper still waiting (or all of them); False if none was."""
        woke = False
        while self._sleepers:
            sleeper = self._sleepers.popleft()
            if not sleeper.done():
                sleeper.set_result(None)
                woke = True
                if not every:
                    break
        return woke

    async def wait(self, timeout: float | None = None) -> None:
        """Sleep until rung or `timeout` seconds pass; at once if a ring was kept."""
        if self._kept:
            self._kept = False
            return
        sleeper = asyncio.get_running_loop().create_future()
        self._sleepers.append(sleeper)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sleeper, timeout)
        finally:
            if not sleeper.done():
                sleeper.cancel()
            with contextlib.suppress(ValueError):
                self._sleepers.remove(sleeper)


def worker_id() -> str:
    """A lease owner name unique to this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """Runs the payment and webhook loops of one process until told to stop.

    `session` calls the providers; `webhook_session` (egress.client_session) the merchants.
    Without one, webhooks share `session`: the egress check before each attempt still
    applies, but a lookup between check and connect would not be checked (tests only).
    """

    def __init__(
        self,
        settings: config_settings.Settings,
        repo: Repository,
        session: aiohttp.ClientSession,
        *,
        owner: str | None = None,
        webhook_session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.session = session
        self.webhook_session = webhook_session or session
        self.egress = egress.policy_from(settings)
        self.owner = owner or worker_id()
        # The provider registry, one of each per mode: a test payment can only ever reach test
        # mode's providers. A new payment method is one module and one line here.
        self.providers: dict[str, Provider] = {}
        for mode in ("live", "test"):
            card = acquirer.AcquirerClient(
                session,
                config_settings.acquirer_url(settings, mode),
                settings.acquirer_timeout_seconds,
                settings.acquirer_max_attempts,
            )
            for provider in (card, atom.AtomProvider.from_settings(session, settings, mode)):
                self.providers[registry_key(mode, provider.name)] = provider
        self.atom = cast(atom.AtomProvider, self.providers[registry_key("test", "atom")])
        self.policy = claim.Policy(
            backoff.Backoff(
                settings.acquirer_requeue_seconds, settings.acquirer_requeue_max_seconds
            ),
            timedelta(seconds=settings.unresolved_after_seconds),
        )
        self.backoff = backoff.Backoff(
            settings.webhook_backoff_initial_seconds, settings.webhook_backoff_max_seconds
        )
        self.payments_wake = Doorbell()
        self.refunds_wake = Doorbell()
        self.webhooks_wake = Doorbell()
        self.stopping = asyncio.Event()
        self.log = log.bind(worker=self.owner)

    def wake(self) -> None:
        """Make every loop look for work now (the safety-net poll, the reaper, stopping)."""
        self.payments_wake.ring_all()
        self.refunds_wake.ring_all()
        self.webhooks_wake.ring_all()

    def stop(self) -> None:
        """Stop claiming; loops finish the pass they are in and return."""
        if not self.stopping.is_set():
            self.log.info("worker.stopping")
        self.stopping.set()
        self.wake()

    async def payments_pass(self) -> claim.Pass:
        """One pass over payments with this worker's settings."""
        s = self.settings
        result = await claim.run_once(
            self.repo,
            self.providers,
            owner=self.owner,
            batch_size=s.batch_size,
            lease_seconds=s.lease_seconds,
            policy=self.policy,
        )
        if result.settled:
            self.webhooks_wake.ring()  # their webhooks are in the outbox: this worker sends them
        return result

    async def refunds_pass(self) -> claim.Pass:
        """One pass over due refunds with this worker's settings."""
        s = self.settings
        result = await settle.run_once(
            self.repo,
            self.providers,
            owner=self.owner,
            batch_size=s.batch_size,
            lease_seconds=s.lease_seconds,
            policy=self.policy,
        )
        if result.settled:
            self.webhooks_wake.ring()
        return result

    async def webhooks_pass(self) -> webhooks.Pass:
        """One pass over due webhooks with this worker's settings."""
        s = self.settings
        return await webhooks.run_once(
            self.repo,
            self.webhook_session,
            owner=self.owner,
            batch_size=s.webhook_batch_size,
            lease_seconds=s.lease_seconds,
            timeout=s.webhook_timeout_seconds,
            max_attempts=s.webhook_max_attempts,
            backoff=self.backoff,
            default_secret=s.webhook_secret,
            default_url=str(s.default_webhook_url),
            policy=self.egress,
        )

    async def _sleep(self, wake: asyncio.Event, timeout: float | None) -> None:
        """Until `wake` is set, we are stopping, or `timeout` seconds pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)

    async def _loop(
        self, name: str, wake: Doorbell, one_pass: Callable[[], Awaitable[PassResult]]
    ) -> None:
        failures = 0
        batch = self.settings.webhook_batch_size if name == "webhooks" else self.settings.batch_size
        while not self.stopping.is_set():
            try:
                result = await one_pass()
            except errors.DatabaseUnavailable:
                metrics.ERRORS.labels("database_unavailable").inc()
                failures += 1
                delay = min(0.1 * 2**failures, 5.0)
                self.log.warning("worker.database_unavailable", loop=name, retry_in=delay)
                await self._sleep(self.stopping, delay)
                continue
            except Exception:
                failures += 1
                self.log.exception("worker.pass_failed", loop=name)
                await self._sleep(self.stopping, min(0.1 * 2**failures, 5.0))
                continue
            failures = 0
            if result.claimed >= batch:
                # A full batch: there is likely more. Bring in an idle loop and go again.
                wake.ring()
                await asyncio.sleep(0)
                continue
            # Sleep until rung, or until a retry this pass scheduled falls due. A ring that
            # came during the pass was kept, so this returns at once and nothing is missed.
            await wake.wait(result.retry_in)

    async def _reap(self) -> None:
        try:
            n = (
                await claim.reap(self.repo)
                + await settle.reap(self.repo)
                + await webhooks.reap(self.repo)
            )
        except errors.DatabaseUnavailable:
            return
        if n:
            self.wake()

    async def _listen(self, dsn: str) -> None:
        """Hold a LISTEN connection; reconnect if it drops (and poll once, in case we missed)."""
        while not self.stopping.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn)
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _c: closed.set())
                await conn.add_listener(PAYMENTS_CHANNEL, lambda *_: self.payments_wake.ring())
                await conn.add_listener(REFUNDS_CHANNEL, lambda *_: self.refunds_wake.ring())
                await conn.add_listener(WEBHOOKS_CHANNEL, lambda *_: self.webhooks_wake.ring())
                self.wake()
                stop_wait = asyncio.ensure_future(self.stopping.wait())
                closed_wait = asyncio.ensure_future(closed.wait())
                await asyncio.wait({stop_wait, closed_wait}, return_when=asyncio.FIRST_COMPLETED)
                stop_wait.cancel()
                closed_wait.cancel()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.log.warning("worker.listen_failed", error=str(exc))
                await self._sleep(self.stopping, 1.0)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)

    def _scheduler(self) -> AsyncIOScheduler:
        s = self.settings
        scheduler = AsyncIOScheduler()
        if s.polling_enabled:
            # The seed's poller, kept as the safety net: initialDelay, then every fixedDelay.
            scheduler.add_job(
                self.wake,
                "interval",
                id="poll",
                seconds=s.polling_fixed_delay_ms / 1000,
                next_run_time=datetime.now() + timedelta(milliseconds=s.polling_initial_delay_ms),
                max_instances=1,
                coalesce=True,
            )
        scheduler.add_job(
            self._reap,
            "interval",
            id="reap",
            seconds=s.reaper_interval_ms / 1000,
            max_instances=1,
            coalesce=True,
        )
        return scheduler

    async def serve(self, dsn: str) -> None:
        """Run until stop(); then finish or hand back what this worker holds."""
        self.log.info("worker.started", batch_size=self.settings.batch_size)
        scheduler = self._scheduler()
        scheduler.start()
        # Several loops of each kind keep several batches in flight: a pass mostly waits on
        # the provider and the database, so one loop alone leaves the CPU idle.
        loops = self.settings.worker_loops
        tasks = [
            *(
                asyncio.create_task(self._loop("payments", self.payments_wake, self.payments_pass))
                for _ in range(loops)
            ),
            *(
                asyncio.create_task(self._loop("refunds", self.refunds_wake, self.refunds_pass))
                for _ in range(loops)
            ),
            *(
                asyncio.create_task(self._loop("webhooks", self.webhooks_wake, self.webhooks_pass))
                for _ in range(loops)
            ),
            asyncio.create_task(self._listen(dsn)),
        ]
        await self.stopping.wait()
        scheduler.shutdown(wait=False)
        _, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace_seconds)
        for task in pending:
            task.cancel()  # their handlers give held rows back before they end
        await asyncio.gather(*pending, return_exceptions=True)
        self.log.info("worker.stopped", cancelled=len(pending))


async def run(settings: config_settings.Settings) -> None:
    """Open the pool and HTTP session, migrate, and serve until SIGTERM or SIGINT."""
    if settings.webhook_secret == config_settings.DEV_WEBHOOK_SECRET:
        # Fine for `make run`; anyone can forge webhooks signed with a secret that is public.
        log.warning("webhook.dev_secret", hint="set ENGINE_WEBHOOK_SECRET outside development")
    dsn = await asyncio.to_thread(devdb.database_url, settings)
    pool = await db.create_pool(dsn, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
        policy = egress.policy_from(settings)
        egress.log_allow_list(policy)
        connector = aiohttp.TCPConnector(limit=200, keepalive_timeout=30)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            # Merchants' endpoints get a pool of their own: a slow one cannot starve the
            # acquirer calls of connections.
            egress.client_session(settings, policy) as webhook_session,
        ):
            worker = Worker(settings, Repository(pool), session, webhook_session=webhook_session)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, worker.stop)
            await worker.serve(dsn)
    finally:
        await pool.close()


def main() -> None:
    """Entry point of the `worker` Procfile process."""
    settings = config_settings.load()
    logs.configure(settings.log_format, settings.log_level)
    if settings.worker_nice and hasattr(os, "nice"):
        os.nice(settings.worker_nice)
    event_loop.run(run(settings), settings.event_loop)


if __name__ == "__main__":
    main()
