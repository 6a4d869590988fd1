"""A session's changes pushed to the browser over Server-Sent Events (aiohttp-sse).

One LISTEN connection per web process (`Hub`) hears NOTIFY checkout '<session> <version>
<status> <payment status>' (migration 0020), sent when a session's or its payment's change
commits, and wakes the streams of that session: no database connection per stream. A woken
stream whose version moved sends `event: changed` with `id: <version>`, from the notice
alone while the state is not final; the SDK then reads the authoritative state. A final state
(and a notice that does not say its state) is read from the database first, so `final: true`
goes out only for what the server committed, read back. A stream closes after the final
event; a browser that reconnects with the final version as Last-Event-ID gets 204, which
tells EventSource to stop. After the LISTEN connection drops and comes back, and when the
session's time is up, every stream reads (a notice may have been missed; expiry is lazy).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import asyncpg
import structlog
from aiohttp import web
from aiohttp_sse import sse_response

from api import problems, state
from api.checkout.sessions import BROWSER_PARAMS, BROWSER_PROBLEMS, browser_session
from api.operations import EVENT_STREAM, documented, too_many
from api.schemas.checkout import SessionChange
from engine.checkout import sessions
from engine.store import db, devdb
from engine.store.checkout import CHANNEL, Notice, Session

log = structlog.get_logger()


class Hub:
    """The process's LISTEN connection and the streams waiting on it."""

    def __init__(
        self, *, per_session: int = 20, per_address: int = 200, ping_seconds: float = 15.0
    ) -> None:
        self.per_session = per_session
        self.per_address = per_address
        self.ping_seconds = ping_seconds
        self._waiting: dict[str, set[asyncio.Event]] = {}
        # The newest notice heard for each session with a stream waiting.
        self._latest: dict[str, Notice] = {}
        self._addresses: Counter[str] = Counter()
        self.closing = False
        self.connected = asyncio.Event()
        self.heard = 0
        # Raised by wake_all: a stream that sees it moved reads the session.
        self.generation = 0

    def __len__(self) -> int:
        return sum(len(s) for s in self._waiting.values())

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.heard += 1
        notice = Notice.parse(payload)
        if notice is None:
            return
        waiting = self._waiting.get(notice.public_id)
        if not waiting:
            return
        known = self._latest.get(notice.public_id)
        if known is None or notice.version > known.version:
            self._latest[notice.public_id] = notice
        for event in waiting:
            event.set()

    def latest(self, public_id: str) -> Notice | None:
        """The newest notice heard for this session while a stream waited on it."""
        return self._latest.get(public_id)

    def wake_all(self) -> None:
        """Every stream reads again (reconnected: a notice may be lost; or shutting down)."""
        self.generation += 1
        for waiting in self._waiting.values():
            for event in waiting:
                event.set()

    @contextlib.contextmanager
    def admit(self, public_id: str, address: str) -> Iterator[asyncio.Event]:
        """A stream's place: the event that wakes it. 429 past a session's or an address's
        limit."""
        waiting = self._waiting.setdefault(public_id, set())
        if len(waiting) >= self.per_session or self._addresses[address] >= self.per_address:
            if not waiting:
                del self._waiting[public_id]
            log.warning("checkout.stream_refused", session=public_id, client=address)
            raise problems.Problem(
                429,
                "Too Many Requests",
                "too many open streams for this session or from this address",
                slug="too-many-streams",
                extra={"code": "rate_limited"},
                headers={"Retry-After": "5"},
            )
        event = asyncio.Event()
        waiting.add(event)
        self._addresses[address] += 1
        try:
            yield event
        finally:
            waiting.discard(event)
            if not waiting:
                self._waiting.pop(public_id, None)
                self._latest.pop(public_id, None)
            self._addresses[address] -= 1
            if self._addresses[address] <= 0:
                del self._addresses[address]

    async def listen(self, dsn: str) -> None:
        """Hold the LISTEN connection until closing; reconnect with a pause when it drops."""
        while not self.closing:
            forever = asyncio.Event()  # held until lost: run_hub cancels this task to stop
            conn: asyncpg.Connection | None = None
            try:
                conn = await db.connect(dsn)
                await conn.add_listener(CHANNEL, self._heard)
                self.connected.set()
                self.wake_all()
                await db.hold(conn, forever)
                log.warning("checkout.listen_lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("checkout.listen_failed", error=repr(exc))
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            await asyncio.sleep(0.5)


HUB = web.AppKey("checkout_hub", Hub)


async def run_hub(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the hub's LISTEN task for the app's life."""
    hub = app[HUB]
    dsn = await asyncio.to_thread(devdb.database_url, app[state.SETTINGS])
    task = asyncio.create_task(hub.listen(dsn))
    yield
    hub.closing = True
    hub.wake_all()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _shutdown(app: web.Application) -> None:
    # Open streams end now, so a graceful shutdown does not wait for them.
    hub = app[HUB]
    hub.closing = True
    hub.wake_all()


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    if raw and raw.isascii() and raw.isdigit() and len(raw) < 10:
        return int(raw)
    return None


def _payload(status: str, payment_status: str | None) -> str:
    final = sessions.is_final_state(status, payment_status)
    return SessionChange(status=status, payment_status=payment_status, final=final).data()


def _until_expiry(session: Session, status: str) -> float | None:
    if status not in sessions.OPEN:
        return None
    return max(0.0, (session.expires_at - datetime.now(UTC)).total_seconds()) + 0.05


class _Follow:
    """What one stream knows of its session: the last read, and what notices said since."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.version = session.version
        self.status = session.status
        self.payment_status = session.payment_status

    @property
    def final(self) -> bool:
        return sessions.is_final_state(self.status, self.payment_status)

    def read(self, session: Session) -> None:
        """A fresh read: it is the truth, whatever notices said."""
        self.session = session
        self.version = session.version
        self.status = session.status
        self.payment_status = session.payment_status

    def heard(self, notice: Notice | None) -> bool:
        """Take a newer notice's state; True if a read is needed to know it (a notice that
        does not say it). A final state is taken from the notice too: a NOTIFY reaches us only
        once its transaction committed, so what it says is committed, and the SDK reads the
        session's view itself before it fires `success` or `failure`. (Reading here as well
        cost a round trip per final state, all of them queued on the web's pool: at 500 final
        payments a second on two cores the events came seconds late, bench/SSE.md.)"""
        if notice is None or notice.version <= self.version:
            return False
        if not notice.known or notice.status is None:
            return True
        self.version = notice.version
        self.status = notice.status
        self.payment_status = notice.payment_status
        return False


@documented(
    "checkoutSessionEvents",
    "Server-Sent Events: `changed`, the version as id; closes when final.",
    params=BROWSER_PARAMS,
    ok={
        200: (
            SessionChange,
            "The event stream: each `changed` event's data is a SessionChange (x-event-data).",
            [EVENT_STREAM],
        ),
        204: {"description": "Final already, and Last-Event-ID says it was seen."},
    },
    problems={429: too_many("Too many streams for this session or address.")} | BROWSER_PROBLEMS,
)
async def events(request: web.Request) -> web.StreamResponse:
    """GET /api/public/checkout/sessions/{id}/events?key=&clientSecret=: the session's SSE."""
    session = await browser_session(request)
    last = _last_event_id(request)
    if sessions.is_final(session) and last is not None and last >= session.version:
        return web.Response(status=204)  # EventSource stops reconnecting
    hub = request.app[HUB]
    repo = request.app[state.REPO]
    with hub.admit(session.public_id, request.remote or "unknown") as woken:
        async with sse_response(request) as resp:
            resp.ping_interval = hub.ping_seconds
            gone = asyncio.ensure_future(resp.wait())
            sent = last if last is not None else 0
            known = _Follow(session)
            generation = hub.generation
            try:
                while not hub.closing:
                    if known.version > sent:
                        data = _payload(known.status, known.payment_status)
                        await resp.send(data, id=str(known.version), event="changed")
                        sent = known.version
                    if known.final:
                        break
                    waiter = asyncio.ensure_future(woken.wait())
                    done, _ = await asyncio.wait(
                        {waiter, gone},
                        timeout=_until_expiry(known.session, known.status),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    waiter.cancel()
                    if gone in done or hub.closing:
                        break
                    woken.clear()
                    must_read = not done or hub.generation != generation  # timed out, or lost
                    generation = hub.generation
                    if known.heard(hub.latest(session.public_id)) or must_read:
                        fresh = await sessions.read(repo, session.public_id)
                        if fresh is not None:
                            known.read(fresh)
            except (ConnectionResetError, RuntimeError):
                pass  # the browser left
            finally:
                gone.cancel()
    return resp


def add_routes(app: web.Application) -> None:
    """Mount the stream and its hub."""
    settings = app[state.SETTINGS]
    app[HUB] = Hub(
        per_session=settings.checkout_streams_per_session,
        per_address=settings.checkout_streams_per_address,
        ping_seconds=settings.checkout_stream_heartbeat_seconds,
    )
    app.router.add_get("/api/public/checkout/sessions/{id}/events", events)
    app.cleanup_ctx.append(run_hub)
    app.on_shutdown.append(_shutdown)
