"""Webhooks cannot be turned against our own network (issue 10, part B): each attack a test.

Targets are real servers on this host's loopback, which the policy refuses unless the
allow-list names them; the `settings` fixture allows only the simulator (and the discard port).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from config.settings import Settings
from engine.store.repository import Repository
from engine.webhooks import egress, signing
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.integration.engine_support import MID, insert_payments, tuned
from tests.waiting import wait_until

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Target:
    """A server on 127.0.0.1 that records what reaches it."""

    port: int
    hits: list[str] = field(default_factory=list)

    def url(self, host: str = "127.0.0.1", path: str = "/hook") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler | None], Awaitable[Target]]]:
    """Start targets on port 0, each answering with `handler` (default 200); stop them after."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler | None = None) -> Target:
        target = Target(0)

        async def record(request: web.Request) -> web.StreamResponse:
            target.hits.append(f"{request.method} {request.path}")
            if handler is not None:
                return await handler(request)
            return web.json_response({"received": True})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        target.port = runner.addresses[0][1]
        return target

    yield start
    for runner in runners:
        await runner.cleanup()


def allowing(settings: Settings, *targets: Target) -> Settings:
    """`settings` with the targets' host:port added to the allow-list."""
    extra = ",".join(f"127.0.0.1:{t.port}" for t in targets)
    return tuned(settings, webhook_allowed_hosts=f"{settings.webhook_allowed_hosts},{extra}")


async def delivery_to(
    pool: asyncpg.Pool, sim: SimulatorHandle, worker: Worker, url: str, *, first: int = 0
) -> int:
    """Settle one payment and point its (waiting) delivery at an endpoint of the merchant at
    `url`, registered without the policy's check (as if its DNS changed since); returns the
    delivery id."""
    [tid] = await insert_payments(pool, sim, 1, first=first)
    assert (await worker.payments_pass()).settled == 1
    endpoint_id = await worker.repo.endpoints.endpoint_by_url(MID, "test", url)
    if endpoint_id is None:
        endpoint = await worker.repo.endpoints.add_endpoint(MID, "test", url, signing.new_secret())
        assert endpoint is not None
        endpoint_id = endpoint.id
    delivery_id: int = await pool.fetchval(
        "UPDATE webhook_deliveries d SET url = $2, endpoint_id = $3 FROM payment_processes p"
        " WHERE p.id = d.payment_id AND p.tid = $1 RETURNING d.id",
        tid,
        url,
        endpoint_id,
    )
    return delivery_id


async def delivery(pool: asyncpg.Pool, delivery_id: int) -> asyncpg.Record:
    row: asyncpg.Record = await pool.fetchrow(
        "SELECT * FROM webhook_deliveries WHERE id = $1", delivery_id
    )
    return row


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "017700000001", "localhost"]
)
async def test_a_delivery_to_loopback_is_refused_dead_and_listed(
    client: TestClient,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
    serve: Callable[..., Awaitable[Target]],
    host: str,
) -> None:
    target = await serve()  # not on the allow-list
    async with egress.client_session(settings) as hooks:
        worker = Worker(settings, repo, http, owner="w", webhook_session=hooks)
        did = await delivery_to(pool, sim, worker, target.url(host))
        result = await worker.webhooks_pass()
    assert (result.claimed, result.delivered) == (1, 0)
    row = await delivery(pool, did)
    # DEAD at once, never retried blindly; the merchant sees the reason code.
    assert (row["status"], row["attempts"]) == ("DEAD", 1)
    assert row["last_error"] == "refused:loopback" and row["last_response_code"] is None
    assert target.hits == []

    resp = await client.get("/api/webhooks/dead")
    assert resp.status == 200, await resp.text()
    [listed] = (await resp.json())["deliveries"]
    assert (listed["id"], listed["lastError"]) == (did, "refused:loopback")


async def test_the_connection_itself_is_checked_not_only_the_url(
    settings: Settings, serve: Callable[..., Awaitable[Target]]
) -> None:
    """The webhook session refuses a private address at connect time (a DNS answer that
    changed after the check), so a lookup between check and connect cannot slip through."""
    target = await serve()
    async with egress.client_session(settings) as hooks:
        with pytest.raises(egress.EgressRefused) as caught:
            await hooks.post(target.url("localhost"), data=b"{}")
        assert caught.value.reason == "loopback"
    async with (
        egress.client_session(allowing(settings, target)) as allowed,
        allowed.post(target.url("localhost"), data=b"{}") as resp,
    ):
        assert resp.status == 200
    assert target.hits == ["POST /hook"]


async def test_a_redirect_into_our_network_is_not_followed(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
    serve: Callable[..., Awaitable[Target]],
) -> None:
    inside = await serve()  # a private service the merchant must not reach

    async def bounce(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(inside.url(path="/admin/reset"))

    outside = await serve(bounce)
    s = allowing(settings, outside)
    async with egress.client_session(s) as hooks:
        worker = Worker(s, repo, http, owner="w", webhook_session=hooks)
        did = await delivery_to(pool, sim, worker, outside.url())
        assert (await worker.webhooks_pass()).delivered == 0
    row = await delivery(pool, did)
    assert row["status"] != "DELIVERED"
    assert (row["last_response_code"], row["last_error"]) == (302, "redirect")
    assert outside.hits == ["POST /hook"]
    assert inside.hits == []


FLOOD = 50 * 1024 * 1024


async def test_a_huge_answer_is_not_read(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
    serve: Callable[..., Awaitable[Target]],
) -> None:
    written = 0
    finished = asyncio.Event()

    async def flood(request: web.Request) -> web.StreamResponse:
        nonlocal written
        resp = web.StreamResponse(status=200)
        resp.content_length = FLOOD
        await resp.prepare(request)
        chunk = b"x" * 65536
        try:
            while written < FLOOD:
                await resp.write(chunk)
                written += len(chunk)
        except ConnectionError:
            pass  # the client hung up: what we are waiting for
        finally:
            finished.set()
        return resp

    target = await serve(flood)
    s = allowing(settings, target)
    async with egress.client_session(s) as hooks:
        worker = Worker(s, repo, http, owner="w", webhook_session=hooks)
        did = await delivery_to(pool, sim, worker, target.url())
        result = await worker.webhooks_pass()
        await asyncio.wait_for(finished.wait(), 10)
    # The 200 counts; the body was dropped after a few KiB, so the server could write only
    # what the sockets' buffers hold (a few MB), not the 50 MB it read before the fix.
    assert result.delivered == 1
    assert (await delivery(pool, did))["status"] == "DELIVERED"
    assert written < 20 * 1024 * 1024, f"the client let {written:,} bytes in"


async def test_a_tarpit_endpoint_holds_only_its_own_connections(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
    serve: Callable[..., Awaitable[Target]],
) -> None:
    release = asyncio.Event()
    holding = 0
    peak = 0

    async def tarpit(_request: web.Request) -> web.StreamResponse:
        nonlocal holding, peak
        holding += 1
        peak = max(peak, holding)
        try:
            await release.wait()
        finally:
            holding -= 1
        return web.json_response({})

    target = await serve(tarpit)
    s = tuned(
        allowing(settings, target), webhook_connections_per_host=2, webhook_timeout_seconds=10
    )
    async with egress.client_session(s) as hooks:
        worker = Worker(s, repo, http, owner="w", webhook_session=hooks)
        for i in range(6):
            await delivery_to(pool, sim, worker, target.url(), first=i)
        stuck = asyncio.create_task(worker.webhooks_pass())
        await wait_until(lambda: holding == 2, what="the tarpit to hold two connections")
        # Meanwhile the acquirer calls go on, on their own pool.
        await insert_payments(pool, sim, 5, first=100)
        settled = await asyncio.wait_for(worker.payments_pass(), 5)
        assert settled.settled == 5
        assert peak == 2  # six deliveries waiting, two connections per host
        release.set()
        assert (await stuck).delivered >= 2
