"""The simulator's Atom endpoint over real HTTP: signatures, idempotency, inquiries and faults.

Requests are built with the simulator's own seal/sign (never the engine's), so this suite
checks the endpoint alone; tests/unit/test_atom_crypto.py pins those helpers to openssl.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from simulator.acquirer import DECLINE_REASONS
from simulator.atom_wire import MerchantKeys, seal, sign, unseal
from simulator.server import SimulatorHandle, running
from simulator.settings import SimulatorSettings

SETTINGS = SimulatorSettings(
    port=0,
    seed="atom-tests",
    success_rate=1.0,
    fault_seed="atom-faults",
    atom_merch_id="700001",
    atom_password="pw",
    atom_req_hash_key="rq-hash",
    atom_res_hash_key="rs-hash",
    atom_req_enc_key="RQ-ENC",
    atom_res_enc_key="RS-ENC",
)
KEYS = MerchantKeys.from_settings(SETTINGS)


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    async with running(SETTINGS) as handle:
        yield handle


@pytest.fixture
async def http(sim: SimulatorHandle) -> AsyncIterator[aiohttp.ClientSession]:
    # Depends on `sim` so the session closes before the server stops.
    async with aiohttp.ClientSession(sim.url) as session:
        yield session


def envelope(
    txn_id: str,
    amount: int = 1000,
    txn_type: str = "AUTH",
    *,
    hash_key: str = KEYS.req_hash_key,
    changed: dict[str, str] | None = None,
) -> dict[str, str]:
    """A request body signed and sealed as a merchant would; `changed` is applied after signing."""
    signature = sign(hash_key, KEYS.merch_id, KEYS.password, txn_id, str(amount), "KRW", txn_type)
    payload = {
        "merchId": KEYS.merch_id,
        "merchTxnId": txn_id,
        "amount": str(amount),
        "currency": "KRW",
        "txnType": txn_type,
        "signature": signature,
    }
    return {"merchId": KEYS.merch_id, "encData": seal(KEYS.req_enc_key, payload | (changed or {}))}


def opened(body: dict[str, Any]) -> dict[str, Any]:
    """Decrypt an answer and check its signature: the simulator must always sign truthfully."""
    answer: dict[str, Any] = unseal(KEYS.res_enc_key, body["encData"])
    expected = sign(
        KEYS.res_hash_key,
        KEYS.merch_id,
        answer["atomTxnId"],
        answer["merchTxnId"],
        answer["statusCode"],
        answer["amount"],
        answer["currency"],
    )
    answer["signed"] = answer.pop("signature") == expected
    return answer


async def post(http: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, Any]:
    async with http.post(f"/atom/{path}", json=body) as resp:
        return resp.status, await resp.json()


async def get(http: aiohttp.ClientSession, path: str) -> Any:
    async with http.get(f"/atom/{path}") as resp:
        assert resp.status == 200
        return await resp.json()


async def config(http: aiohttp.ClientSession, **body: Any) -> None:
    status, answer = await post(http, "admin/config", body)
    assert status == 200, answer


async def test_auth_approves_with_a_signed_encrypted_answer_and_charges_once(
    http: aiohttp.ClientSession,
) -> None:
    status, body = await post(http, "auth", envelope("T-1"))
    assert status == 200 and set(body) == {"encData"}
    answer = opened(body)
    assert answer["signed"] is True
    assert answer["statusCode"] == "OTS0000" and answer["merchTxnId"] == "T-1"
    assert (answer["amount"], answer["currency"]) == ("1000", "KRW")
    assert answer["atomTxnId"].isdigit()
    ledger = await get(http, "ledger")
    assert ledger["count"] == 1
    assert ledger["charges"][0]["atomTxnId"] == answer["atomTxnId"]
    assert ledger["charges"][0]["amount"] == 1000


async def test_same_merch_txn_id_gets_the_same_answer_and_one_charge(
    http: aiohttp.ClientSession,
) -> None:
    first = opened((await post(http, "auth", envelope("T-2")))[1])
    again = await asyncio.gather(*(post(http, "auth", envelope("T-2")) for _ in range(10)))
    assert {opened(body)["atomTxnId"] for _, body in again} == {first["atomTxnId"]}
    assert (await get(http, "ledger"))["count"] == 1
    stats = await get(http, "stats")
    assert (stats["authCalls"], stats["approved"]) == (11, 1)


async def test_form_encoded_requests_are_accepted(http: aiohttp.ClientSession) -> None:
    async with http.post("/atom/auth", data=envelope("T-form")) as resp:
        assert resp.status == 200
        assert opened(await resp.json())["statusCode"] == "OTS0000"


async def test_bad_request_signature_is_401_counted_and_charges_nothing(
    http: aiohttp.ClientSession,
) -> None:
    status, body = await post(http, "auth", envelope("T-3", hash_key="not-the-key"))
    assert (status, body) == (401, {"error": "bad_signature"})
    # A field changed after signing is the same as a wrong key.
    status, body = await post(http, "auth", envelope("T-3", changed={"amount": "999"}))
    assert (status, body) == (401, {"error": "bad_signature"})
    assert (await get(http, "stats"))["badSignatures"] == 2
    assert (await get(http, "ledger"))["count"] == 0


async def test_unknown_merchant_undecryptable_and_wrong_txn_type_are_refused(
    http: aiohttp.ClientSession,
) -> None:
    unknown = envelope("T-4") | {"merchId": "someone-else"}
    assert await post(http, "auth", unknown) == (401, {"error": "unknown_merchant"})
    broken = envelope("T-4") | {"encData": "00" * 16}
    assert await post(http, "auth", broken) == (400, {"error": "bad_enc_data"})
    # A signed STATUS request replayed at /auth must not charge.
    assert await post(http, "auth", envelope("T-4", txn_type="STATUS")) == (
        400,
        {"error": "bad_request"},
    )
    status, _ = await post(http, "auth", {"merchId": KEYS.merch_id})
    assert status == 400
    assert (await get(http, "ledger"))["count"] == 0


async def test_status_of_an_unknown_merch_txn_id_is_a_signed_no_record(
    http: aiohttp.ClientSession,
) -> None:
    status, body = await post(http, "status", envelope("T-never", txn_type="STATUS"))
    assert status == 200
    answer = opened(body)
    assert answer == {
        "merchTxnId": "T-never",
        "atomTxnId": "",
        "statusCode": "OTS0404",
        "amount": "1000",
        "currency": "KRW",
        "signed": True,
    }


async def test_status_after_auth_tells_the_stored_answer(http: aiohttp.ClientSession) -> None:
    charged = opened((await post(http, "auth", envelope("T-5")))[1])
    found = opened((await post(http, "status", envelope("T-5", txn_type="STATUS")))[1])
    assert found == charged
    assert (await get(http, "stats"))["statusCalls"] == 1


async def test_declines_use_the_card_reasons_and_do_not_charge(
    http: aiohttp.ClientSession,
) -> None:
    await config(http, success_rate=0.0)
    answers = [opened((await post(http, "auth", envelope(f"D-{i}")))[1]) for i in range(10)]
    assert {a["statusCode"] for a in answers} == {"OTS0600"}
    assert {a["description"] for a in answers} <= set(DECLINE_REASONS)
    assert all(a["signed"] for a in answers)
    assert (await get(http, "ledger"))["count"] == 0


async def test_decisions_follow_the_card_acquirers_seeded_rule(
    http: aiohttp.ClientSession,
) -> None:
    await config(http, success_rate=0.5)
    await post(http, "../acquirer/admin/config", {"success_rate": 0.5})
    atom_says, card_says = [], []
    for i in range(20):
        atom_says.append(opened((await post(http, "auth", envelope(f"S-{i}")))[1])["statusCode"])
        card = {"reference": f"S-{i}", "amount": 1000, "currency": "KRW", "orderId": "O"}
        async with http.post("/acquirer/authorize", json=card) as resp:
            card_says.append((await resp.json())["status"])
    assert [s == "OTS0000" for s in atom_says] == [s == "APPROVED" for s in card_says]
    assert 0 < atom_says.count("OTS0000") < 20


async def test_a_different_amount_for_a_known_merch_txn_id_is_a_conflict(
    http: aiohttp.ClientSession,
) -> None:
    await post(http, "auth", envelope("T-6", 1000))
    assert await post(http, "auth", envelope("T-6", 2000)) == (409, {"error": "reference_conflict"})
    assert (await get(http, "ledger"))["count"] == 1


async def test_tamper_corrupts_the_answer_signature(http: aiohttp.ClientSession) -> None:
    await config(http, tamper_rate=1.0)
    answer = opened((await post(http, "auth", envelope("T-7")))[1])
    assert answer["signed"] is False
    assert answer["statusCode"] == "OTS0000"  # the charge is real; only its proof is broken
    assert (await get(http, "stats"))["tampered"] == 1
    await config(http, tamper_rate=0.0)
    assert opened((await post(http, "status", envelope("T-7", txn_type="STATUS")))[1])["signed"]


async def test_error_answers_503_without_charging_and_lost_answer_after_charging(
    http: aiohttp.ClientSession,
) -> None:
    await config(http, error_rate=1.0)
    assert await post(http, "auth", envelope("T-8")) == (503, {"error": "injected"})
    assert await post(http, "status", envelope("T-8", txn_type="STATUS")) == (
        503,
        {"error": "injected"},
    )
    assert (await get(http, "ledger"))["count"] == 0
    await config(http, error_rate=0.0, lost_answer_rate=1.0)
    assert await post(http, "auth", envelope("T-9")) == (503, {"error": "injected"})
    ledger = await get(http, "ledger")
    assert [c["merchTxnId"] for c in ledger["charges"]] == ["T-9"]
    found = opened((await post(http, "status", envelope("T-9", txn_type="STATUS")))[1])
    assert found["statusCode"] == "OTS0000"
    assert found["atomTxnId"] == ledger["charges"][0]["atomTxnId"]
    stats = await get(http, "stats")
    assert (stats["errors"], stats["lostAnswers"]) == (2, 1)


async def test_callback_body_is_the_sealed_answer(http: aiohttp.ClientSession) -> None:
    charged = opened((await post(http, "auth", envelope("T-10")))[1])
    assert opened(await get(http, "callbacks/T-10")) == charged
    async with http.get("/atom/callbacks/T-unknown") as resp:
        assert resp.status == 404


async def test_admin_config_rejects_unknown_knobs(http: aiohttp.ClientSession) -> None:
    status, body = await post(http, "admin/config", {"tamper_rat": 1.0})
    assert status == 400 and body["field"] == "tamper_rat"
    status, body = await post(http, "admin/config", {"error_rate": 1.5})
    assert status == 400
    await post(http, "auth", envelope("T-11"))
    assert (await post(http, "admin/reset", {}))[0] == 200
    assert (await get(http, "ledger"))["count"] == 0


def refund_envelope(
    txn_id: str,
    refund_id: str,
    amount: int = 400,
    txn_type: str = "REFUND",
    *,
    hash_key: str = KEYS.req_hash_key,
) -> dict[str, str]:
    """A REFUND or REFUND_STATUS body, signed and sealed as a merchant would."""
    signature = sign(
        hash_key, KEYS.merch_id, KEYS.password, txn_id, refund_id, str(amount), "KRW", txn_type
    )
    payload = {
        "merchId": KEYS.merch_id,
        "merchTxnId": txn_id,
        "refundTxnId": refund_id,
        "amount": str(amount),
        "currency": "KRW",
        "txnType": txn_type,
        "signature": signature,
    }
    return {"merchId": KEYS.merch_id, "encData": seal(KEYS.req_enc_key, payload)}


def opened_refund(body: dict[str, Any]) -> dict[str, Any]:
    """Decrypt a refund answer and check its signature, as opened() does for payments."""
    answer: dict[str, Any] = unseal(KEYS.res_enc_key, body["encData"])
    expected = sign(
        KEYS.res_hash_key,
        KEYS.merch_id,
        answer["atomRefundId"],
        answer["merchTxnId"],
        answer["refundTxnId"],
        answer["statusCode"],
        answer["amount"],
        answer["currency"],
    )
    answer["signed"] = answer.pop("signature") == expected
    return answer


async def refund(
    http: aiohttp.ClientSession, txn_id: str, refund_id: str, amount: int = 400
) -> dict[str, Any]:
    """A refund that Atom answers (200), opened."""
    status, body = await post(http, "refund", refund_envelope(txn_id, refund_id, amount))
    assert status == 200, body
    return opened_refund(body)


async def test_refund_of_a_charge_is_signed_recorded_once_and_repeats_get_the_same_answer(
    http: aiohttp.ClientSession,
) -> None:
    await post(http, "auth", envelope("R-1", 1000))
    done = await refund(http, "R-1", "RF-1", 400)
    assert done["signed"] is True
    assert (done["statusCode"], done["merchTxnId"], done["refundTxnId"]) == (
        "OTS0000",
        "R-1",
        "RF-1",
    )
    assert (done["amount"], done["currency"]) == ("400", "KRW")
    assert done["atomRefundId"].isdigit()
    again = await asyncio.gather(*(refund(http, "R-1", "RF-1", 400) for _ in range(10)))
    assert {a["atomRefundId"] for a in again} == {done["atomRefundId"]}
    refunds = await get(http, "refunds")
    assert refunds["count"] == 1 and refunds["calls"] == 11
    [entry] = refunds["refunds"]
    assert (entry["merchTxnId"], entry["refundTxnId"], entry["amount"]) == ("R-1", "RF-1", 400)
    assert entry["atomRefundId"] == done["atomRefundId"]
    assert (await get(http, "ledger"))["refunds"] == refunds["refunds"]
    # The same refundTxnId for another amount or another payment is a conflict, not a refund.
    assert await post(http, "refund", refund_envelope("R-1", "RF-1", 300)) == (
        409,
        {"error": "reference_conflict"},
    )
    await post(http, "auth", envelope("R-1b", 1000))
    assert await post(http, "refund", refund_envelope("R-1b", "RF-1", 400)) == (
        409,
        {"error": "reference_conflict"},
    )
    assert (await get(http, "refunds"))["count"] == 1


async def test_partial_refunds_add_up_to_the_charge_and_no_further(
    http: aiohttp.ClientSession,
) -> None:
    await post(http, "auth", envelope("R-2", 1000))
    assert (await refund(http, "R-2", "RF-2a", 600))["statusCode"] == "OTS0000"
    over = await refund(http, "R-2", "RF-2b", 401)
    assert over["signed"] is True
    assert (over["statusCode"], over["description"], over["atomRefundId"]) == (
        "OTS0600",
        "EXCEEDS_CAPTURED",
        "",
    )
    assert (await refund(http, "R-2", "RF-2c", 400))["statusCode"] == "OTS0000"
    # A rejection is decided too: asked again, it stays rejected even though nothing changed.
    assert (await refund(http, "R-2", "RF-2b", 401))["description"] == "EXCEEDS_CAPTURED"
    refunds = await get(http, "refunds")
    assert [r["refundTxnId"] for r in refunds["refunds"]] == ["RF-2a", "RF-2c"]
    stats = await get(http, "stats")
    assert (stats["refunded"], stats["refundsRejected"]) == (2, 1)


async def test_refunds_of_what_was_never_charged_are_rejected_not_captured(
    http: aiohttp.ClientSession,
) -> None:
    never = await refund(http, "R-never", "RF-3a")
    assert (never["statusCode"], never["description"]) == ("OTS0600", "NOT_CAPTURED")
    await config(http, success_rate=0.0)
    await post(http, "auth", envelope("R-declined"))
    declined = await refund(http, "R-declined", "RF-3b")
    assert (declined["statusCode"], declined["description"]) == ("OTS0600", "NOT_CAPTURED")
    assert (await get(http, "refunds"))["count"] == 0


async def test_refund_status_tells_the_stored_answer_or_no_record(
    http: aiohttp.ClientSession,
) -> None:
    status, body = await post(
        http, "refund-status", refund_envelope("R-4", "RF-4", txn_type="REFUND_STATUS")
    )
    assert status == 200
    assert opened_refund(body) == {
        "merchTxnId": "R-4",
        "refundTxnId": "RF-4",
        "atomRefundId": "",
        "statusCode": "OTS0404",
        "amount": "400",
        "currency": "KRW",
        "signed": True,
    }
    await post(http, "auth", envelope("R-4", 1000))
    done = await refund(http, "R-4", "RF-4")
    status, body = await post(
        http, "refund-status", refund_envelope("R-4", "RF-4", txn_type="REFUND_STATUS")
    )
    assert opened_refund(body) == done
    refunds = await get(http, "refunds")
    assert (refunds["count"], refunds["calls"], refunds["inquiries"]) == (1, 1, 2)


async def test_refund_requests_badly_signed_or_of_another_kind_are_refused(
    http: aiohttp.ClientSession,
) -> None:
    await post(http, "auth", envelope("R-5", 1000))
    bad = refund_envelope("R-5", "RF-5", hash_key="not-the-key")
    assert await post(http, "refund", bad) == (401, {"error": "bad_signature"})
    assert (await get(http, "stats"))["badSignatures"] == 1
    # A signed inquiry replayed at /refund must not refund; a payment request is no refund.
    inquiry = refund_envelope("R-5", "RF-5", txn_type="REFUND_STATUS")
    assert await post(http, "refund", inquiry) == (400, {"error": "bad_request"})
    assert await post(http, "refund", envelope("R-5")) == (400, {"error": "bad_enc_data"})
    assert await post(http, "refund-status", refund_envelope("R-5", "RF-5")) == (
        400,
        {"error": "bad_request"},
    )
    # And a refund request is no charge.
    assert await post(http, "auth", refund_envelope("R-6", "RF-6")) == (
        400,
        {"error": "bad_enc_data"},
    )
    assert (await get(http, "refunds"))["count"] == 0
    assert (await get(http, "ledger"))["count"] == 1


async def test_refund_faults_error_decides_nothing_lost_answer_refunds_tamper_mis_signs(
    http: aiohttp.ClientSession,
) -> None:
    await post(http, "auth", envelope("R-7", 1000))
    await config(http, error_rate=1.0)
    assert await post(http, "refund", refund_envelope("R-7", "RF-7a")) == (
        503,
        {"error": "injected"},
    )
    inquiry = refund_envelope("R-7", "RF-7a", txn_type="REFUND_STATUS")
    assert await post(http, "refund-status", inquiry) == (503, {"error": "injected"})
    assert (await get(http, "refunds"))["count"] == 0

    await config(http, error_rate=0.0, lost_answer_rate=1.0)
    assert await post(http, "refund", refund_envelope("R-7", "RF-7a")) == (
        503,
        {"error": "injected"},
    )
    [entry] = (await get(http, "refunds"))["refunds"]
    found = opened_refund((await post(http, "refund-status", inquiry))[1])
    assert found["statusCode"] == "OTS0000" and found["atomRefundId"] == entry["atomRefundId"]

    await config(http, lost_answer_rate=0.0, tamper_rate=1.0)
    tampered = await refund(http, "R-7", "RF-7b")
    assert tampered["signed"] is False
    assert tampered["statusCode"] == "OTS0000"  # the refund is real; only its proof is broken
    stats = await get(http, "stats")
    assert (stats["errors"], stats["lostAnswers"], stats["tampered"]) == (2, 1, 1)
    assert (await get(http, "refunds"))["count"] == 2
    await post(http, "admin/reset", {})
    assert (await get(http, "refunds"))["count"] == 0
