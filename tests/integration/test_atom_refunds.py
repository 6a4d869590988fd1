"""Refunds of Atom payments end to end: the API, a worker, PostgreSQL and the simulated Atom.

Payments are taken with "provider": "atom" and charged at the simulator's Atom endpoint, which is
written separately from engine/providers/atom.py; refunds are then asked for through the API
and settled by a worker's refund pass, so both sides must agree on the refund protocol too.
"""

from __future__ import annotations

import itertools
import json
import socket
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from config.settings import Settings
from engine.models import ClaimedRefund
from engine.providers.atom import AtomProvider
from engine.providers.atom_crypto import (
    TXN_REFUND,
    derive_key,
    encrypt,
    refund_response_signature,
)
from engine.providers.atom_messages import credentials, seal_refund_request
from engine.providers.protocol import ProviderRejected, ProviderUnavailable
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.conftest import SEED_REQUEST
from tests.integration.engine_support import tuned
from tests.waiting import wait_until

_orders = itertools.count()


def _atom(settings: Settings, sim: SimulatorHandle) -> Settings:
    return tuned(
        settings,
        atom_url=f"{sim.url}/atom",
        atom_timeout_seconds=1.0,
        acquirer_requeue_seconds=0.01,
        acquirer_requeue_max_seconds=0.02,
    )


async def _config(http: aiohttp.ClientSession, sim: SimulatorHandle, **body: Any) -> None:
    async with http.post(f"{sim.url}/atom/admin/config", json=body) as resp:
        assert resp.status == 200, await resp.text()


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _pay(client: TestClient, amount: int) -> str:
    body = SEED_REQUEST | {
        "orderId": f"ORD_AR{next(_orders)}",
        "amount": amount,
        "provider": "atom",
    }
    resp = await client.post("/api/payment", json=body)
    assert resp.status == 202, await resp.text()
    return str((await resp.json())["transactionId"])


async def _captured(
    client: TestClient,
    worker: Worker,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    amount: int = 10_000,
) -> str:
    """A payment charged at Atom (its success_rate must be 1.0)."""
    tid = await _pay(client, amount)
    assert (await worker.payments_pass()).settled == 1
    payment = await (await client.get(f"/api/payment/transaction/{tid}")).json()
    assert payment["status"] == "SUCCESS"
    charges = (await _get(http, f"{sim.url}/atom/ledger"))["charges"]
    assert tid in {c["merchTxnId"] for c in charges}
    return tid


async def _refund(client: TestClient, tid: str, amount: int, key: str) -> str:
    resp = await client.post(
        f"/api/payments/{tid}/refunds", json={"amount": amount}, headers={"Idempotency-Key": key}
    )
    assert resp.status == 202, await resp.text()
    return str((await resp.json())["refundId"])


async def _payment(pool: asyncpg.Pool, tid: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
    assert row is not None
    return row


async def _refund_row(pool: asyncpg.Pool, refund_id: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM refunds WHERE public_id = $1", refund_id)
    assert row is not None
    return row


async def _atom_refunds(http: aiohttp.ClientSession, sim: SimulatorHandle) -> dict[str, Any]:
    """Atom's refund ledger (money returned) by refundTxnId; one entry each, or it fails."""
    body = await _get(http, f"{sim.url}/atom/refunds")
    by_ref = {r["refundTxnId"]: r for r in body["refunds"]}
    assert len(by_ref) == body["count"], "Atom returned the money of one refund twice"
    return by_ref


async def test_full_and_partial_refunds_settle_with_atoms_refund_id(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    await _config(http, sim, success_rate=1.0)
    worker = Worker(_atom(settings, sim), repo, http, owner="w")
    full = await _captured(client, worker, http, sim)
    part = await _captured(client, worker, http, sim)
    whole = await _refund(client, full, 10_000, "full")
    first = await _refund(client, part, 3_000, "part-1")
    second = await _refund(client, part, 2_000, "part-2")
    assert (await worker.refunds_pass()).settled == 3

    ledger = await _atom_refunds(http, sim)
    assert set(ledger) == {whole, first, second}
    for refund_id, tid, amount in (
        (whole, full, 10_000),
        (first, part, 3_000),
        (second, part, 2_000),
    ):
        row = await _refund_row(pool, refund_id)
        assert row["status"] == "REFUNDED" and row["fail_reason"] is None
        assert row["provider_refund_no"] == ledger[refund_id]["atomRefundId"] != ""
        assert (ledger[refund_id]["merchTxnId"], ledger[refund_id]["amount"]) == (tid, amount)

    row = await _payment(pool, full)
    assert (row["status"], row["refunded_amount"], row["refund_reserved"]) == (
        "REFUNDED",
        10_000,
        10_000,
    )
    row = await _payment(pool, part)
    assert (row["status"], row["refunded_amount"]) == ("PARTIALLY_REFUNDED", 5_000)
    listed = await (await client.get(f"/api/payments/{full}/refunds")).json()
    assert [(r["refundId"], r["refundNo"]) for r in listed["refunds"]] == [
        (whole, ledger[whole]["atomRefundId"])
    ]

    rest = await _refund(client, part, 5_000, "part-3")
    await worker.refunds_pass()
    row = await _payment(pool, part)
    assert (row["status"], row["refunded_amount"]) == ("REFUNDED", 10_000)
    assert rest in await _atom_refunds(http, sim)
    # Settled at Atom alone: the card acquirer saw no refund, and every answer verified.
    assert (await _get(http, f"{sim.url}/acquirer/refunds"))["count"] == 0
    assert worker.atom.signature_failures == 0


async def test_a_lost_refund_answer_is_resolved_by_the_refund_status_inquiry_alone(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    await _config(http, sim, success_rate=1.0)
    worker = Worker(_atom(settings, sim), repo, http, owner="w")
    tid = await _captured(client, worker, http, sim)
    await _config(http, sim, lost_answer_rate=1.0)
    refund_id = await _refund(client, tid, 4_000, "lost")
    await worker.refunds_pass()
    row = await _refund_row(pool, refund_id)
    # Refunded at Atom, but the engine never saw the answer: unknown, not failed.
    assert row["status"] == "REFUND_PENDING" and row["outcome_unknown_since"] is not None
    ledger = await _atom_refunds(http, sim)
    assert list(ledger) == [refund_id]

    await _config(http, sim, lost_answer_rate=0.0)

    async def settled() -> asyncpg.Record | None:
        await worker.refunds_pass()
        found = await _refund_row(pool, refund_id)
        return found if found["status"] == "REFUNDED" else None

    row = await wait_until(settled, timeout=5, what="refund settled after inquiry")
    assert row["provider_refund_no"] == ledger[refund_id]["atomRefundId"]
    stats = await _get(http, f"{sim.url}/atom/stats")
    assert stats["refundCalls"] == 1, "the refund was sent again instead of inquired"
    assert stats["refundStatusCalls"] == 1
    assert list(await _atom_refunds(http, sim)) == [refund_id]
    assert (await _payment(pool, tid))["refunded_amount"] == 4_000


async def test_an_error_then_recovery_is_inquired_and_refunded_exactly_once(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    await _config(http, sim, success_rate=1.0)
    worker = Worker(_atom(settings, sim), repo, http, owner="w")
    tid = await _captured(client, worker, http, sim)
    await _config(http, sim, error_rate=1.0)
    refund_id = await _refund(client, tid, 10_000, "error")
    await worker.refunds_pass()
    row = await _refund_row(pool, refund_id)
    # A 503 may have refunded, as far as the engine can tell.
    assert row["status"] == "REFUND_PENDING" and row["outcome_unknown_since"] is not None
    assert await _atom_refunds(http, sim) == {}

    await _config(http, sim, error_rate=0.0)

    async def settled() -> bool:
        await worker.refunds_pass()
        return bool((await _refund_row(pool, refund_id))["status"] == "REFUNDED")

    await wait_until(settled, timeout=5, what="refund settled after recovery")
    assert list(await _atom_refunds(http, sim)) == [refund_id]
    stats = await _get(http, f"{sim.url}/atom/stats")
    # The inquiry found no record (OTS0404), and only then was the refund sent again.
    assert (stats["refundStatusCalls"], stats["refundCalls"]) == (1, 2)
    assert (await _payment(pool, tid))["status"] == "REFUNDED"


async def test_a_tampered_refund_answer_is_never_trusted_and_waits_for_a_person(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    await _config(http, sim, success_rate=1.0)
    worker = Worker(_atom(settings, sim), repo, http, owner="w")
    tid = await _captured(client, worker, http, sim)
    await _config(http, sim, tamper_rate=1.0)
    refund_id = await _refund(client, tid, 6_000, "tampered")
    with capture_logs() as logs:
        result = await worker.refunds_pass()
    assert (result.claimed, result.settled) == (1, 0)

    row = await _refund_row(pool, refund_id)
    assert row["status"] == "REFUND_UNRESOLVED" and row["provider_refund_no"] is None
    assert row["unresolved_reason"] == "BAD_SIGNATURE"
    # Atom may well have refunded: whoever resolves it must ask Atom first.
    assert row["outcome_unknown_since"] is not None
    assert worker.atom.signature_failures == 1
    failed = [e for e in logs if e["event"] == "atom.signature_failed"]
    assert [(e["tid"], e["refund"]) for e in failed] == [(tid, refund_id)]
    # Flagged, not retried, and the money stays reserved until a person settles it.
    assert (await worker.refunds_pass()).claimed == 0
    assert (await _refund_row(pool, refund_id))["status"] == "REFUND_UNRESOLVED"
    payment = await _payment(pool, tid)
    assert (payment["status"], payment["refunded_amount"], payment["refund_reserved"]) == (
        "SUCCESS",
        0,
        6_000,
    )
    stats = await _get(http, f"{sim.url}/atom/stats")
    assert (stats["refundCalls"], stats["tampered"]) == (1, 1)


async def test_a_refund_of_a_payment_atom_never_charged_fails_and_frees_its_reservation(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    # Settled by hand with a test key: Atom never charged it, so it rejects the refund.
    tid = await _pay(client, 10_000)
    resp = await client.post(f"/api/payment/webhook/trigger/{tid}?status=SUCCESS")
    assert resp.status == 202, await resp.text()
    refund_id = await _refund(client, tid, 10_000, "never-charged")
    worker = Worker(_atom(settings, sim), repo, http, owner="w")
    assert (await worker.refunds_pass()).settled == 1

    row = await _refund_row(pool, refund_id)
    assert (row["status"], row["fail_reason"], row["provider_refund_no"]) == (
        "REFUND_FAILED",
        "NOT_CAPTURED",
        None,
    )
    payment = await _payment(pool, tid)
    assert (payment["status"], payment["refunded_amount"], payment["refund_reserved"]) == (
        "SUCCESS",
        0,
        0,
    )
    assert await _atom_refunds(http, sim) == {}
    stats = await _get(http, f"{sim.url}/atom/stats")
    assert (stats["refundCalls"], stats["refundsRejected"]) == (1, 1)


async def test_a_refund_beyond_what_atom_still_holds_fails_and_frees_its_reservation(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    await _config(http, sim, success_rate=1.0)
    atom_settings = _atom(settings, sim)
    worker = Worker(atom_settings, repo, http, owner="w")
    tid = await _captured(client, worker, http, sim)
    # Part of it refunded at Atom behind the engine's back (say, from Atom's own console).
    creds = credentials(atom_settings)
    enc = seal_refund_request(creds, tid, "RF-console", 3_000, "KRW", TXN_REFUND)
    body = {"merchId": creds.merch_id, "encData": enc}
    async with http.post(f"{sim.url}/atom/refund", json=body) as resp:
        assert resp.status == 200, await resp.text()

    refund_id = await _refund(client, tid, 10_000, "too-much")
    assert (await worker.refunds_pass()).settled == 1
    row = await _refund_row(pool, refund_id)
    assert (row["status"], row["fail_reason"]) == ("REFUND_FAILED", "EXCEEDS_CAPTURED")
    payment = await _payment(pool, tid)
    assert (payment["status"], payment["refunded_amount"], payment["refund_reserved"]) == (
        "SUCCESS",
        0,
        0,
    )
    assert list(await _atom_refunds(http, sim)) == ["RF-console"]
    # The freed reservation can be asked for again, for what Atom still holds.
    rest = await _refund(client, tid, 7_000, "the-rest")
    assert (await worker.refunds_pass()).settled == 1
    assert (await _refund_row(pool, rest))["status"] == "REFUNDED"
    assert set(await _atom_refunds(http, sim)) == {"RF-console", rest}


_CLAIMED = ClaimedRefund(
    id=1,
    public_id="RF0AbCdEfGhIj",
    payment_id=1,
    tid="DUMMY_20260101_00000001",
    amount=400,
    currency="KRW",
    attempts=1,
    provider="atom",
    outcome_unknown_since=None,
)


def _genuine_answer(settings: Settings, **fields: str) -> str:
    """A correctly signed, encrypted refund answer for `_CLAIMED`, with `fields` changed."""
    creds = credentials(settings)
    answer = {
        "merchTxnId": _CLAIMED.tid,
        "refundTxnId": _CLAIMED.public_id,
        "atomRefundId": "12000000000001",
        "statusCode": "OTS0000",
        "amount": "400",
        "currency": "KRW",
    } | fields
    signature = refund_response_signature(
        creds,
        answer["atomRefundId"],
        answer["merchTxnId"],
        answer["refundTxnId"],
        answer["statusCode"],
        answer["amount"],
        answer["currency"],
    )
    plain = json.dumps(answer | {"signature": signature}).encode()
    return encrypt(derive_key(creds.res_enc_key), plain)


@pytest.mark.parametrize(
    ("answer", "error", "maybe"),
    [
        # Genuine, but about another refund (a mix-up at Atom, or a replay): never settled on.
        ({"refundTxnId": "RF0AbCdEfGhIk"}, ProviderRejected, True),
        ({"amount": "4000"}, ProviderRejected, True),
        ({"merchTxnId": "DUMMY_20260101_00000002"}, ProviderRejected, True),
        # Sent, but the answer cannot be read: the refund may have happened.
        ("00" * 16, ProviderUnavailable, True),
        ("not hex", ProviderUnavailable, True),
        # Genuine, but a code no refund answer has.
        ({"statusCode": "OTS9999"}, ProviderUnavailable, True),
    ],
)
async def test_answers_that_cannot_settle_a_refund_raise_with_money_maybe_moved(
    settings: Settings,
    aiohttp_server: Any,
    answer: dict[str, str] | str,
    error: type[Exception],
    maybe: bool,
) -> None:
    enc = answer if isinstance(answer, str) else _genuine_answer(settings, **answer)

    async def atom(request: web.Request) -> web.Response:
        return web.json_response({"encData": enc})

    app = web.Application()
    app.router.add_post("/atom/refund", atom)
    app.router.add_post("/atom/refund-status", atom)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        provider = AtomProvider.from_settings(
            session, tuned(settings, atom_url=str(server.make_url("/atom")))
        )
        for call in (provider.refund, provider.inquire_refund):
            with pytest.raises(error) as caught:
                await call(_CLAIMED)
            assert caught.value.maybe_processed is maybe  # type: ignore[attr-defined]
        assert provider.signature_failures == 0
        # The same server with a faithful answer settles it: the cases above differ only there.
        enc = _genuine_answer(settings)
        outcome = await provider.refund(_CLAIMED)
        assert (outcome.status, outcome.refund_no) == ("REFUNDED", "12000000000001")


async def test_a_refused_connection_surely_did_not_refund(settings: Settings) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        provider = AtomProvider.from_settings(
            session, tuned(settings, atom_url=f"http://127.0.0.1:{port}/atom")
        )
        for call in (provider.refund, provider.inquire_refund):
            with pytest.raises(ProviderUnavailable) as caught:
                await call(_CLAIMED)
            assert caught.value.maybe_processed is False
