"""The worker process: drains payments, refunds and webhooks as APScheduler jobs.

The passes, the poll and the reaper are scheduler jobs (engine/worker/schedule.py); NOTIFY
only asks the scheduler to run a pass now. `python -m engine.worker` runs it; several may run
at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
from datetime import timedelta
from typing import cast

import aiohttp
import asyncpg
import structlog

from config import settings as config_settings
from engine import backoff, errors, logs
from engine import loop as event_loop
from engine.checkout import returns, sessions
from engine.models import Claimed
from engine.payments import actions, claim
from engine.providers import acquirer, atom
from engine.providers.protocol import Provider, registry_key
from engine.refunds import settle
from engine.store import db, devdb
from engine.store.base import UNAVAILABLE
from engine.store.reports import ReportsStore
from engine.store.repository import Repository
from engine.webhooks import delivery as webhooks
from engine.webhooks import egress
from engine.worker import schedule, wakeup

log = structlog.get_logger()

PAYMENTS_CHANNEL = wakeup.PAYMENTS
REFUNDS_CHANNEL = wakeup.REFUNDS
WEBHOOKS_CHANNEL = wakeup.WEBHOOKS


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
            hosted = atom.AtomProvider.from_settings(session, settings, mode, self._hosted_urls)
            for provider in (card, hosted):
                self.providers[registry_key(mode, provider.name)] = provider
        self.atom = cast(atom.AtomProvider, self.providers[registry_key("test", "atom")])
        self.policy = claim.Policy(
            backoff.Backoff(
                settings.acquirer_requeue_seconds, settings.acquirer_requeue_max_seconds
            ),
            timedelta(seconds=settings.unresolved_after_seconds),
            timedelta(seconds=settings.atom_action_expiry_seconds),
            settings.atom_action_inquiry_seconds,
        )
        self.claimer = claim.Claimer(
            self.owner, settings.batch_size, settings.lease_seconds, self.policy
        )
        self.backoff = backoff.Backoff(
            settings.webhook_backoff_initial_seconds, settings.webhook_backoff_max_seconds
        )
        self.stopping = asyncio.Event()
        self.log = log.bind(worker=self.owner)
        self.schedule = schedule.Schedule(
            poll_every=settings.polling_fixed_delay_ms / 1000 if settings.polling_enabled else None,
            first_poll=settings.polling_initial_delay_ms / 1000,
        )
        # Several jobs of each kind keep several batches in flight: a pass mostly waits on
        # the provider and the database, so one alone leaves the CPU idle.
        # The passes are looked up when they run, so a test may wrap one.
        jobs, batch = settings.worker_loops, settings.batch_size
        lane = self.schedule.lane
        self.payments = lane("payments", lambda: self.payments_pass(), batch=batch, jobs=jobs)
        self.refunds = lane("refunds", lambda: self.refunds_pass(), batch=batch, jobs=jobs)
        self.webhooks = lane(
            "webhooks", lambda: self.webhooks_pass(), batch=settings.webhook_batch_size, jobs=jobs
        )
        self.schedule.every("reap", settings.reaper_interval_ms / 1000, self._reap)
        # Checkout sessions past their time: expired (and announced) even if nobody reads them.
        self.schedule.every("checkout-expiry", 1.0, self._expire_sessions)
        # Payments at the provider's page: inquired when due (no callback yet), or expired.
        self.schedule.every("requires-action", 1.0, self._actions)
        # The overview's counts, appended by each settle, folded into its rollup (migration
        # 0019; the overview reads what is not folded yet too, so this only keeps it small).
        self.schedule.every("rollup-fold", 2.0, self._fold_rollup)

    def wake(self) -> None:
        """Make every lane look for work now (LISTEN connected, the reaper freed rows)."""
        self.schedule.wake()

    def stop(self) -> None:
        """Stop claiming; the passes in flight finish (or are cancelled past the grace)."""
        if not self.stopping.is_set():
            self.log.info("worker.stopping")
        self.stopping.set()
        self.schedule.halt()

    async def payments_pass(self) -> claim.Pass:
        """One pass over payments with this worker's settings."""
        result = await claim.run_once(self.repo, self.providers, self.claimer)
        if result.settled:
            self.webhooks.ring()  # their webhooks are in the outbox: this worker sends them
        return result

    async def refunds_pass(self) -> claim.Pass:
        """One pass over due refunds with this worker's settings."""
        result = await settle.run_once(self.repo, self.providers, self.claimer)
        if result.settled:
            self.webhooks.ring()
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

    def _hosted_urls(self, payment: Claimed) -> dict[str, str]:
        public = str(self.settings.public_url)
        return {
            "returnUrl": returns.return_url(
                public, self.settings.api_key_secret, payment.mode, payment.tid
            ),
            "callbackUrl": returns.callback_url(public),
        }

    async def actions_pass(self) -> actions.ActionPass:
        """One pass over payments waiting at the provider's page (inquire, settle, expire)."""
        result = await actions.run_once(
            self.repo,
            self.providers,
            actor=self.owner,
            batch_size=self.settings.batch_size,
            lease_seconds=self.settings.atom_action_inquiry_seconds,
        )
        if result.settled or result.expired:
            self.webhooks.ring()
        return result

    async def _actions(self) -> None:
        with contextlib.suppress(errors.DatabaseUnavailable):
            await self.actions_pass()

    async def _fold_rollup(self) -> None:
        with contextlib.suppress(errors.DatabaseUnavailable):
            await ReportsStore(self.repo.pool).fold_rollup()

    async def _expire_sessions(self) -> None:
        with contextlib.suppress(errors.DatabaseUnavailable):
            await sessions.expire_due(self.repo)

    async def _listen(self, dsn: str) -> None:
        """Hold a LISTEN connection; reconnect if it drops (and poll once, in case we missed).

        With several hosts in the DSN (a Patroni cluster) the new connection goes to whichever
        node is the primary now: a standby refuses LISTEN, and the DSN asks for read-write.
        """
        while not self.stopping.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await db.connect(dsn)
                await conn.add_listener(PAYMENTS_CHANNEL, lambda *_: self.payments.ring())
                await conn.add_listener(REFUNDS_CHANNEL, lambda *_: self.refunds.ring())
                await conn.add_listener(WEBHOOKS_CHANNEL, lambda *_: self.webhooks.ring())
                self.wake()
                await db.hold(conn, self.stopping)
                if not self.stopping.is_set():
                    self.log.warning("worker.listen_lost")
            except (*UNAVAILABLE, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.log.warning("worker.listen_failed", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), 1.0)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)

    async def serve(self, dsn: str) -> None:
        """Run until stop(); then finish or hand back what this worker holds."""
        self.log.info("worker.started", batch_size=self.settings.batch_size)
        self.schedule.start()
        listening = asyncio.create_task(self._listen(dsn))
        await self.stopping.wait()
        cancelled = await self.schedule.stop(self.settings.shutdown_grace_seconds)
        await listening
        self.log.info("worker.stopped", cancelled=cancelled)


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
            event_loop.steady_heap()  # everything above lives as long as the process
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
