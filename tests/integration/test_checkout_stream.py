"""The session's SSE stream: one LISTEN per process fans out, events carry the version, the
stream closes after the final event, a reconnect with Last-Event-ID gets the final event once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.checkout.stream import HUB, Hub
from config.settings import Settings
from engine.checkout import sessions
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.integration.checkout_support import PUBLIC, act, create, publishable, shopper
from tests.waiting import wait_until

Client = TestClient[Any, Any]


async def _events(resp: aiohttp.ClientResponse, count: int | None = None) -> list[dict[str, Any]]:
    """Events read off a stream until it ends (or `count` of them)."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with asyncio.timeout(10):
        async for raw in resp.content:
            line = raw.decode().rstrip("\r\n")
            if not line:
                if current:
                    events.append(current)
                    current = {}
                    if count is not None and len(events) >= count:
                        break
                continue
            name, _, value = line.partition(": ")
            if name in ("id", "event"):
                current[name] = value
            elif name == "data":
                current["data"] = json.loads(value)
    return events


async def _stream(client: Client, pk: str, made: dict[str, Any], last: str | None = None) -> Any:
    headers = {"Authorization": "", "Origin": "https://shop.example"}
    if last is not None:
        headers["Last-Event-ID"] = last
    return await client.get(
        PUBLIC.format(made["id"]) + "/events",
        params={"key": pk, "clientSecret": made["clientSecret"]},
        headers=headers,
    )


async def test_stream_pushes_changes_and_closes_after_the_final_one(
    client: Client, repo: Repository, settings: Settings, sim: SimulatorHandle
) -> None:
    hub = client.app[HUB]
    await wait_until(hub.connected.is_set, what="the LISTEN connection")
    pk = await publishable(repo, settings)
    made = await create(client)
    resp = await _stream(client, pk, made)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    first = await _events(resp, 1)
    assert first == [
        {
            "id": "1",
            "event": "changed",
            "data": {"status": "open", "paymentStatus": None, "final": False},
        }
    ]
    await wait_until(lambda: len(hub) == 1, what="the stream waiting")
    jane = await shopper(repo, sim)
    assert (await act(client, jane, made["id"], "cancel"))[0] == 200
    rest = await _events(resp)  # ends: the stream closed after the final event
    assert rest[-1]["data"] == {"status": "canceled", "paymentStatus": None, "final": True}
    assert [e["event"] for e in rest] == ["changed"] * len(rest)
    await wait_until(lambda: len(hub) == 0, what="the stream gone from the hub")
    again = await _stream(client, pk, made, last=rest[-1]["id"])
    assert again.status == 204  # EventSource stops reconnecting


async def test_dropped_stream_reconnects_to_one_final_event(
    client: Client, repo: Repository, settings: Settings, sim: SimulatorHandle
) -> None:
    hub = client.app[HUB]
    await wait_until(hub.connected.is_set, what="the LISTEN connection")
    pk = await publishable(repo, settings)
    made = await create(client)
    resp = await _stream(client, pk, made)
    seen = await _events(resp, 1)
    resp.close()  # the connection drops while the customer pays
    jane = await shopper(repo, sim)
    assert (await act(client, jane, made["id"], "confirm"))[0] == 200
    async with aiohttp.ClientSession() as http:
        worker = Worker(settings, repo, http, owner="test-worker")
        assert (await worker.payments_pass()).settled == 1
    back = await _stream(client, pk, made, last=seen[0]["id"])
    events = await _events(back)
    assert len(events) == 1 and events[0]["data"]["final"] is True
    assert events[0]["data"]["paymentStatus"] in ("SUCCESS", "FAILED")
    assert int(events[0]["id"]) > int(seen[0]["id"])


async def test_stream_limits_per_session(
    client: Client, repo: Repository, settings: Settings
) -> None:
    hub = client.app[HUB]
    hub.per_session = 2
    pk = await publishable(repo, settings)
    made = await create(client)
    open_ = [await _stream(client, pk, made) for _ in range(2)]
    for resp in open_:
        await _events(resp, 1)
    refused = await _stream(client, pk, made)
    assert refused.status == 429 and (await refused.json())["code"] == "rate_limited"
    for resp in open_:
        resp.close()


async def test_stream_limits_come_from_the_settings(
    aiohttp_client: Any, repo: Repository, settings: Settings, api_key: str
) -> None:
    """ENGINE_CHECKOUT_STREAMS_PER_ADDRESS and _PER_SESSION, and the heartbeat, reach the hub:
    the third stream from one address is refused although each session has room."""
    tight = settings.model_copy(
        update={
            "checkout_streams_per_address": 2,
            "checkout_streams_per_session": 5,
            "checkout_stream_heartbeat_seconds": 7.5,
        }
    )
    client = await aiohttp_client(create_app(tight), headers={"Authorization": f"Bearer {api_key}"})
    hub = client.app[HUB]
    assert (hub.per_address, hub.per_session, hub.ping_seconds) == (2, 5, 7.5)
    pk = await publishable(repo, settings)
    made = [await create(client, orderId=f"ORD-{n}") for n in range(3)]
    open_ = [await _stream(client, pk, m) for m in made[:2]]
    for resp in open_:
        await _events(resp, 1)
    refused = await _stream(client, pk, made[2])
    assert refused.status == 429 and (await refused.json())["code"] == "rate_limited"
    for resp in open_:
        resp.close()


async def test_expiry_reaches_the_stream_without_a_reader(
    client: Client, repo: Repository, settings: Settings
) -> None:
    *_, resp = await _waiting(client, repo, settings)
    await repo.pool.execute("UPDATE checkout_sessions SET expires_at = now()")
    # The stream's own timer was set for three minutes: the sweep's NOTIFY wakes it.
    assert await sessions.expire_due(repo) == 1
    events = await _events(resp)
    assert events[-1]["data"] == {"status": "expired", "paymentStatus": None, "final": True}


async def test_a_customer_step_notifies_after_its_commit_not_inside_it(
    client: Client, repo: Repository, database_url: str, sim: SimulatorHandle
) -> None:
    """The customer's steps leave the trigger's in-transaction NOTIFY out (it would hold the
    notification lock through their commit, one commit at a time) and send their notice once
    committed; any other change to a session still notifies in its own transaction."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("checkout", lambda *a: heard.put_nowait(a[3]))
        await listener.add_listener("marker", lambda *a: heard.put_nowait("marker"))
        made = await create(client)
        jane = await shopper(repo, sim)
        # In a customer step's transaction the trigger stays silent: only the marker, sent
        # after that commit, arrives.
        async with repo.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("SET LOCAL hamster.checkout_notify = 'after_commit'")
                await conn.execute(
                    "UPDATE checkout_sessions SET version = version + 1 WHERE public_id = $1",
                    made["id"],
                )
            await conn.execute("NOTIFY marker")
            async with asyncio.timeout(10):
                assert await heard.get() == "marker"
            # Outside one (a worker's change), the trigger notifies as before.
            await conn.execute(
                "UPDATE checkout_sessions SET version = version + 1 WHERE public_id = $1",
                made["id"],
            )
            async with asyncio.timeout(10):
                assert await heard.get() == f"{made['id']} 3 open -"
        # The app's scan (opening the session) sends its own notice once committed.
        resp = await client.get(f"/app/pay/{made['id']}", headers=jane.headers())
        assert resp.status == 200
        async with asyncio.timeout(10):
            assert await heard.get() == f"{made['id']} 4 scanned -"
        assert (await act(client, jane, made["id"], "cancel"))[0] == 200
        async with asyncio.timeout(10):
            assert await heard.get() == f"{made['id']} 5 canceled -"
        assert heard.empty()
    finally:
        await listener.close()


async def test_every_notice_says_the_state_it_announces(
    client: Client, repo: Repository, settings: Settings, database_url: str, sim: SimulatorHandle
) -> None:
    """NOTIFY checkout '<session> <version> <status> <payment status>' (migration 0020): the
    confirm's notice after its commit, then the worker's claim and settle in their own
    transactions, each with the payment's status."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("checkout", lambda *a: heard.put_nowait(a[3]))
        made = await create(client)
        jane = await shopper(repo, sim)
        status, body = await act(client, jane, made["id"], "confirm")
        assert status == 200
        async with asyncio.timeout(10):
            assert await heard.get() == f"{made['id']} 2 confirmed PENDING"
        # The answer is the compare-and-set's (no read after it), and it is what was stored.
        stored = await repo.pool.fetchrow(
            "SELECT p.tid, s.version FROM payment_processes p"
            " JOIN checkout_sessions s ON s.id = p.checkout_session_id WHERE s.public_id = $1",
            made["id"],
        )
        assert body["session"]["status"] == "confirmed" and body["session"]["final"] is False
        assert body["session"]["payment"]["tid"] == stored["tid"]
        assert body["session"]["payment"]["status"] == "PENDING"
        async with aiohttp.ClientSession() as http:
            worker = Worker(settings, repo, http, owner="test-worker")
            assert (await worker.payments_pass()).settled == 1
        async with asyncio.timeout(10):
            claimed, settled = await heard.get(), await heard.get()
        assert claimed == f"{made['id']} 3 confirmed PROCESSING"
        assert settled == f"{made['id']} 4 confirmed SUCCESS"
        assert heard.empty()
    finally:
        await listener.close()


async def _waiting(
    client: Client, repo: Repository, settings: Settings
) -> tuple[Hub, dict[str, Any], Any]:
    """A new session's stream, past its first event and waiting on the hub."""
    hub = client.app[HUB]
    await wait_until(hub.connected.is_set, what="the LISTEN connection")
    pk = await publishable(repo, settings)
    made = await create(client)
    resp = await _stream(client, pk, made)
    await _events(resp, 1)
    await wait_until(lambda: len(hub) == 1, what="the stream waiting")
    return hub, made, resp


async def _notify(repo: Repository, payload: str) -> None:
    await repo.pool.execute("SELECT pg_notify('checkout', $1)", payload)


async def test_a_stream_sends_what_a_notice_says_and_reads_when_it_cannot_tell(
    client: Client, repo: Repository, settings: Settings
) -> None:
    """A notice that says its state goes out as it says, without a read (the database, left
    as it was, would say otherwise), a final one included: a NOTIFY arrives only after its
    transaction committed. A notice that does not say its state (an older two-word one, a
    confirmed session's '?') is read first, and an older version is ignored."""
    _, made, resp = await _waiting(client, repo, settings)
    await _notify(repo, f"{made['id']} 2 scanned -")
    assert await _events(resp, 1) == [
        {
            "id": "2",
            "event": "changed",
            "data": {"status": "scanned", "paymentStatus": None, "final": False},
        }
    ]
    # None of these is sent: the reads the first two cause find the session open at version
    # 1, the third is older than what the stream sent, the last is not a notice.
    await _notify(repo, f"{made['id']} 3")
    await _notify(repo, f"{made['id']} 3 confirmed ?")
    await _notify(repo, f"{made['id']} 2 canceled -")
    await _notify(repo, "not a notice")
    await _notify(repo, f"{made['id']} 4 canceled -")
    assert await _events(resp) == [
        {
            "id": "4",
            "event": "changed",
            "data": {"status": "canceled", "paymentStatus": None, "final": True},
        }
    ]


async def test_a_stream_reads_when_notices_may_have_been_lost(
    client: Client, repo: Repository, settings: Settings
) -> None:
    """A change whose notice never came (a crash after its commit, or the LISTEN connection
    lost meanwhile) reaches the stream when the hub wakes every stream: each reads."""
    hub, made, resp = await _waiting(client, repo, settings)
    async with repo.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL hamster.checkout_notify = 'after_commit'")  # no notice
        await conn.execute(
            "UPDATE checkout_sessions SET status = 'canceled', version = 2, closed_at = now()"
            " WHERE public_id = $1",
            made["id"],
        )
    hub.wake_all()  # as after the LISTEN connection came back
    assert await _events(resp) == [
        {
            "id": "2",
            "event": "changed",
            "data": {"status": "canceled", "paymentStatus": None, "final": True},
        }
    ]
