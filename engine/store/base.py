"""What every store shares: the pool it runs on, and one translation of driver errors.

A store is one aggregate's door to the database (payments, refunds, deliveries, ...): a class
in engine/store/<name>.py whose SQL is named in engine/store/<name>.sql and loaded with
`queries.load("<name>")`. Each public method is wrapped in `translated`, so a caller sees
`errors.DatabaseUnavailable` when the database is not there, whatever the driver raised.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import asyncpg

from engine import errors
from engine.models import Requeue

P = ParamSpec("P")
T = TypeVar("T")

# Failures that mean "the database is not there right now", as opposed to a bug or bad data.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # The driver's own state broken under it: a pooled connection whose server died while
    # it sat idle ("cannot switch to state 12; another operation is in progress"). The socket
    # is gone, so the pool opens a new connection next time. It also covers, with several
    # hosts in DATABASE_URL (target_session_attrs=read-write), none of them accepting writes
    # right now (TargetServerAttributeNotMatched), as while Patroni promotes a standby.
    asyncpg.InternalClientError,
    # The node this connection reached no longer takes writes (a primary fenced or demoted
    # under us): the primary has moved, which a caller sees as the database being away.
    asyncpg.ReadOnlySQLTransactionError,
)
# The driver's own of those: what a web handler may safely read as "the database is away"
# (an OSError or a timeout there may be the client's or another service's).
DRIVER_UNAVAILABLE = tuple(e for e in UNAVAILABLE if e.__module__.startswith("asyncpg"))


def translated(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Raise errors.DatabaseUnavailable for a connection failure, anything else unchanged."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except UNAVAILABLE as exc:
            raise errors.DatabaseUnavailable() from exc

    return wrapper


class Store:
    """A store runs its aggregate's named queries on a shared pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool


def requeue_columns(items: Sequence[Requeue]) -> tuple[list[Any], ...]:
    """The unnest arrays of a requeue (payments' and refunds'): ids, statuses, delays, ..."""
    return (
        [i.id for i in items],
        [i.status for i in items],
        [i.delay for i in items],
        [i.unknown for i in items],
        [i.reason for i in items],
    )


def outcome_columns(outcomes: Sequence[Any], number: str) -> tuple[list[Any], ...]:
    """The unnest arrays of a settle (payments' and refunds'): ids, statuses, the provider's
    numbers (attribute `number`), fail reasons."""
    return (
        [o.id for o in outcomes],
        [o.status.value for o in outcomes],
        [getattr(o, number) for o in outcomes],
        [o.fail_reason for o in outcomes],
    )
