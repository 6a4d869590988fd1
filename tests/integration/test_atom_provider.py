"""The Atom provider end to end: engine worker, real PostgreSQL, the simulator's Atom endpoint.

The simulator's endpoint is written separately from engine/providers/atom.py, so a payment
settling here means both sides agree on keys, encryption, signatures and fields.
"""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import asyncpg
import pytest
from structlog.testing import capture_logs

from config.settings import Settings
from engine.models import Status
from engine.providers.atom_crypto import AtomProtocolError, AtomSignatureError
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.acquirer import DECLINE_REASONS
from simulator.server import SimulatorHandle
from tests.integration.engine_support import insert_payments, tuned
from tests.waiting import wait_until


def _atom(settings: Settings, sim: SimulatorHandle, **changes: Any) -> Settings:
    return tuned(
        settings,
        atom_url=f"{sim.url}/atom",
        atom_timeout_seconds=1.0,
        acquirer_requeue_seconds=0.01,
        acquirer_requeue_max_seconds=0.02,
        **changes,
    )


async def _atom_payments(pool: asyncpg.Pool, sim: SimulatorHandle, n: int) -> list[str]:
    tids = await insert_payments(pool, sim, n)
    await pool.execute("UPDATE payment_processes SET provider = 'atom' WHERE tid = ANY($1)", tids)
    return tids


async def _config(http: aiohttp.ClientSession, sim: SimulatorHandle, **body: Any) -> None:
    async with http.post(f"{sim.url}/atom/admin/config", json=body) as resp:
        assert resp.status == 200, await resp.text()


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _row(pool: asyncpg.Pool, tid: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
    assert row is not None
    return row


async def _settle_with(worker: Worker, pool: asyncpg.Pool, tid: str) -> asyncpg.Record:
    async def final() -> asyncpg.Record | None:
        await worker.payments_pass()
        row = await _row(pool, tid)
        return row if row["status"] in ("SUCCESS", "FAILED") else None

    return await wait_until(final, timeout=5, what=f"{tid} final")


async def test_approvals_and_declines_settle_with_atoms_transaction_id(
    settings: Settings,
    repo: Repository,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    await _config(http, sim, success_rate=1.0)
    [approved] = await _atom_payments(pool, sim, 1)
    worker = Worker(_atom(settings, sim), repo, http, owner="w")
    assert (await worker.payments_pass()).settled == 1

    row = await _row(pool, approved)
    assert row["status"] == "SUCCESS"
    ledger = await _get(http, f"{sim.url}/atom/ledger")
    assert [c["merchTxnId"] for c in ledger["charges"]] == [approved]
    assert row["approval_no"] == ledger["charges"][0]["atomTxnId"]
    assert ledger["charges"][0]["amount"] == row["amount"]
    # It went to Atom, not to the card acquirer.
    assert (await _get(http, f"{sim.url}/acquirer/charges"))["count"] == 0

    await _config(http, sim, success_rate=0.0)
    [declined] = await insert_payments(pool, sim, 1, first=1)
    await pool.execute("UPDATE payment_processes SET provider = 'atom' WHERE tid = $1", declined)
    assert (await worker.payments_pass()).settled == 1
    row = await _row(pool, declined)
    assert row["status"] == "FAILED" and row["fail_reason"] in DECLINE_REASONS
    assert (await _get(http, f"{sim.url}/atom/ledger"))["count"] == 1
    assert worker.atom.signature_failures == 0


async def test_a_tampered_answer_is_never_trusted_and_waits_for_a_person(
    settings: Settings,
    repo: Repository,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    await _config(http, sim, success_rate=1.0, tamper_rate=1.0)
    [tid] = await _atom_payments(pool, sim, 1)
    worker = Worker(_atom(settings, sim), repo, http, owner="w")
    with capture_logs() as logs:
        result = await worker.payments_pass()
    assert (result.claimed, result.settled) == (1, 0)

    row = await _row(pool, tid)
    assert row["status"] == "UNRESOLVED"
    assert row["approval_no"] is None
    # A reason code for the merchant; the provider's words are in the log only.
    assert row["unresolved_reason"] == "BAD_SIGNATURE"
    # The charge may have happened: whoever resolves it must ask Atom first.
    assert row["outcome_unknown_since"] is not None
    assert worker.atom.signature_failures == 1
    assert [e["tid"] for e in logs if e["event"] == "atom.signature_failed"] == [tid]
    # Flagged, not retried: nothing more reaches Atom, and it never becomes SUCCESS by itself.
    assert (await worker.payments_pass()).claimed == 0
    assert (await _row(pool, tid))["status"] == "UNRESOLVED"
    stats = await _get(http, f"{sim.url}/atom/stats")
    assert (stats["authCalls"], stats["tampered"]) == (1, 1)


async def test_an_error_then_recovery_is_inquired_and_charged_exactly_once(
    settings: Settings,
    repo: Repository,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    await _config(http, sim, success_rate=1.0, error_rate=1.0)
    [tid] = await _atom_payments(pool, sim, 1)
    worker = Worker(_atom(settings, sim), repo, http, owner="w")
    await worker.payments_pass()
    row = await _row(pool, tid)
    # A 503 may have charged, as far as the engine can tell: unknown, not failed.
    assert row["status"] == "PENDING" and row["outcome_unknown_since"] is not None
    assert (await _get(http, f"{sim.url}/atom/ledger"))["count"] == 0

    await _config(http, sim, error_rate=0.0)
    row = await _settle_with(worker, pool, tid)
    assert row["status"] == "SUCCESS"
    ledger = await _get(http, f"{sim.url}/atom/ledger")
    assert ledger["count"] == 1 and row["approval_no"] == ledger["charges"][0]["atomTxnId"]
    stats = await _get(http, f"{sim.url}/atom/stats")
    # The inquiry found no record (OTS0404), and only then was the charge sent again.
    assert (stats["statusCalls"], stats["authCalls"]) == (1, 2)


async def test_a_lost_answer_is_resolved_by_the_status_inquiry_alone(
    settings: Settings,
    repo: Repository,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    await _config(http, sim, success_rate=1.0, lost_answer_rate=1.0)
    [tid] = await _atom_payments(pool, sim, 1)
    worker = Worker(_atom(settings, sim), repo, http, owner="w")
    await worker.payments_pass()
    assert (await _row(pool, tid))["outcome_unknown_since"] is not None
    ledger = await _get(http, f"{sim.url}/atom/ledger")
    assert ledger["count"] == 1  # charged, but the engine never saw the answer

    await _config(http, sim, lost_answer_rate=0.0)
    row = await _settle_with(worker, pool, tid)
    assert row["status"] == "SUCCESS"
    assert row["approval_no"] == ledger["charges"][0]["atomTxnId"]
    stats = await _get(http, f"{sim.url}/atom/stats")
    assert stats["authCalls"] == 1, "the charge was sent again instead of inquired"
    assert stats["statusCalls"] == 1
    assert (await _get(http, f"{sim.url}/atom/ledger"))["count"] == 1


async def test_connection_refused_is_retried_as_surely_not_processed(
    settings: Settings,
    repo: Repository,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    [tid] = await _atom_payments(pool, sim, 1)
    refused = tuned(_atom(settings, sim), atom_url=f"http://127.0.0.1:{port}/atom")
    await Worker(refused, repo, http, owner="w").payments_pass()
    row = await _row(pool, tid)
    assert row["status"] == "PENDING"
    assert row["outcome_unknown_since"] is None  # never reached Atom: sending again is safe
    row = await _settle_with(Worker(_atom(settings, sim), repo, http, owner="w"), pool, tid)
    assert row["status"] in ("SUCCESS", "FAILED")
    assert (await _get(http, f"{sim.url}/atom/stats"))["statusCalls"] == 0


async def test_wrong_credentials_are_refused_by_atom_and_flagged(
    settings: Settings,
    repo: Repository,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    [tid] = await _atom_payments(pool, sim, 1)
    wrong = _atom(settings, sim, atom_req_hash_key="not-what-atom-has")
    await Worker(wrong, repo, http, owner="w").payments_pass()
    row = await _row(pool, tid)
    assert row["status"] == "UNRESOLVED"
    # Atom's own error text ("bad_signature") stays in the log; the row holds a code.
    assert row["unresolved_reason"] == "PROVIDER_HTTP_401"
    stats = await _get(http, f"{sim.url}/atom/stats")
    assert (stats["badSignatures"], stats["approved"] + stats["declined"]) == (1, 0)


@pytest.mark.parametrize("tamper", [False, True])
async def test_verify_callback_accepts_genuine_and_rejects_tampered(
    settings: Settings,
    repo: Repository,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
    tamper: bool,
) -> None:
    await _config(http, sim, success_rate=1.0)
    [tid] = await _atom_payments(pool, sim, 1)
    worker = Worker(_atom(settings, sim), repo, http, owner="w")
    await worker.payments_pass()
    row = await _row(pool, tid)
    await _config(http, sim, tamper_rate=1.0 if tamper else 0.0)
    enc_data = (await _get(http, f"{sim.url}/atom/callbacks/{tid}"))["encData"]

    if not tamper:
        callback = worker.atom.verify_callback(enc_data)
        assert (callback.merch_txn_id, callback.status) == (tid, Status.SUCCESS)
        assert callback.atom_txn_id == row["approval_no"]
        assert (callback.amount, callback.reason) == (row["amount"], None)
        assert worker.atom.signature_failures == 0
        # Any change to the ciphertext is refused too, whichever check catches it.
        flipped = enc_data[:40] + ("0" if enc_data[40] != "0" else "1") + enc_data[41:]
        with pytest.raises(AtomProtocolError):
            worker.atom.verify_callback(flipped)
        return
    with capture_logs() as logs, pytest.raises(AtomSignatureError) as caught:
        worker.atom.verify_callback(enc_data)
    assert caught.value.merch_txn_id == tid
    assert worker.atom.signature_failures == 1
    assert [e["tid"] for e in logs if e["event"] == "atom.signature_failed"] == [tid]
