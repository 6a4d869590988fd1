"""Accepting a payment: idempotent on (mid, orderId), committed before anyone hears 202.

Concurrent requests share their INSERT (group commit, `GroupCommit`): while a few inserts are
in flight, the requests that arrive wait and then go in together, as one statement and one
transaction. Nobody waits for a timer: a request that finds an insert slot free goes at once,
so a lone request costs what it always did, and a busy intake commits hundreds of payments per
WAL flush instead of one. Each request still hears 202 only after its own row is committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from engine import errors, ids
from engine.models import NewPayment, Payment
from engine.store.payments import NewRow, Payments, TidCollision

log = structlog.get_logger()

# A tid has 10**8 values a day; a collision is rare and another draw fixes it.
_TID_DRAWS = 8


def request_digest(fields: dict[str, Any]) -> str:
    """A digest of a request that ignores key order, so a replay matches its original."""
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Accepted:
    """The stored payment and whether this request created it."""

    payment: Payment
    created: bool


class Writer(Protocol):
    """Where accept() writes: the payments' store itself, or a GroupCommit in front of it."""

    def insert_payment(
        self, new: NewPayment, *, public_id: str, tid: str, default_webhook_url: str
    ) -> Awaitable[Payment | None]: ...

    def payment_by_order(self, mid: str, order_id: str, mode: str) -> Awaitable[Payment | None]: ...


class GroupCommit:
    """Inserts of concurrent requests, batched into one statement each (see the module doc).

    At most `in_flight` statements run at once, each with at most `max_batch` rows. A batch
    that fails for one row's sake (a taken tid, a value the database refuses) is retried row
    by row, so one request's trouble never becomes another's.
    """

    def __init__(self, payments: Payments, *, max_batch: int = 256, in_flight: int = 4) -> None:
        self.payments = payments
        self.max_batch = max_batch
        self.in_flight = in_flight
        self._queue: list[tuple[NewRow, asyncio.Future[Payment | None]]] = []
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Batch sizes, for the metrics and the tests: how many statements carried how many rows.
        self.statements = 0
        self.rows = 0

    async def insert_payment(
        self, new: NewPayment, *, public_id: str, tid: str, default_webhook_url: str
    ) -> Payment | None:
        """Payments.insert_payment, sharing the statement with concurrent callers."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Payment | None] = loop.create_future()
        self._queue.append((NewRow(new, public_id, tid, default_webhook_url), future))
        if self._running < self.in_flight:
            self._running += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def payment_by_order(self, mid: str, order_id: str, mode: str) -> Payment | None:
        """Payments.payment_by_order (reads are not batched)."""
        return await self.payments.payment_by_order(mid, order_id, mode)

    async def close(self) -> None:
        """Let the statements in flight finish."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                await self._insert(batch)
        finally:
            self._running -= 1

    async def _insert(self, batch: Sequence[tuple[NewRow, asyncio.Future[Payment | None]]]) -> None:
        self.statements += 1
        self.rows += len(batch)
        try:
            inserted = await self.payments.insert_payments([row for row, _ in batch])
        except errors.DatabaseUnavailable:
            for _, future in batch:
                _fail(future, errors.DatabaseUnavailable())
            return
        except Exception as exc:  # one row's fault fails the statement: go row by row
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            log.warning("intake.batch_retried_by_row", rows=len(batch), error=repr(exc))
            await asyncio.gather(*(self._insert_one(row, future) for row, future in batch))
            return
        by_tid = {p.tid: p for p in inserted}
        for row, future in batch:
            if not future.done():
                future.set_result(by_tid.get(row.tid))

    async def _insert_one(self, row: NewRow, future: asyncio.Future[Payment | None]) -> None:
        try:
            result = await self.payments.insert_payment(
                row.new,
                public_id=row.public_id,
                tid=row.tid,
                default_webhook_url=row.default_webhook_url,
            )
        except Exception as exc:
            _fail(future, exc)
            return
        if not future.done():
            future.set_result(result)


def _fail(future: asyncio.Future[Payment | None], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


async def accept(
    repo: Writer,
    new: NewPayment,
    *,
    snowflake: ids.Snowflake,
    tid_prefix: str,
    default_webhook_url: str,
) -> Accepted:
    """Store a PENDING payment, or return the one this order already has.

    The same order with the same request is a replay and gets the same transaction; the same
    order with a different request raises IdempotencyConflict.
    """
    for _ in range(_TID_DRAWS):
        tid = ids.new_tid(tid_prefix)
        try:
            created = await repo.insert_payment(
                new,
                public_id=snowflake.next_id(),
                tid=tid,
                default_webhook_url=default_webhook_url,
            )
        except TidCollision as exc:
            log.warning("payment.tid_collision", tid=str(exc))
            continue
        if created is not None:
            log.info(
                "payment.initiated",
                tid=created.tid,
                order_id=new.order_id,
                amount=new.amount,
                currency=new.currency,
            )
            return Accepted(created, True)
        existing = await repo.payment_by_order(new.mid, new.order_id, new.mode)
        if existing is None:  # no row for the order: the batch insert found the tid taken
            log.warning("payment.tid_collision", tid=tid)
            continue
        if existing.request_digest != new.request_digest:
            raise errors.IdempotencyConflict(new.order_id, existing.tid)
        log.info("payment.replayed", tid=existing.tid, order_id=new.order_id)
        return Accepted(existing, False)
    raise RuntimeError("could not draw a free transaction id")
