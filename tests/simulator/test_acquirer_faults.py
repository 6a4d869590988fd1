"""Acquirer fault injection over real sockets: what the client sees, and what the ledger says."""

import asyncio
import errno
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from simulator.faults import FAULT_KINDS
from simulator.server import SimulatorHandle, running
from simulator.settings import SimulatorSettings

# Every acquirer fault knob, explicitly off, so the caller's SIM_* environment cannot leak in.
FAULTS_OFF: dict[str, Any] = {
    "latency_ms": 0,
    "latency_jitter_ms": 0,
    "timeout_rate": 0.0,
    "hang_ms": 2000,
    "timeout_after_charge": True,
    "error_rate": 0.0,
    "error_status": 503,
    "reset_rate": 0.0,
    "drop_after_charge_rate": 0.0,
    "inquiry_error_rate": 0.0,
}
NO_FAULTS = dict.fromkeys(FAULT_KINDS, 0)
# A client timeout well under hang_ms: the engine's client gives up, the acquirer hangs on.
SHORT = aiohttp.ClientTimeout(total=0.3)


def sim_settings(**overrides: Any) -> SimulatorSettings:
    base: dict[str, Any] = {
        "port": 0,
        "seed": "faults",
        "success_rate": 1.0,
        "charge_every_call": False,
    }
    return SimulatorSettings(**(base | FAULTS_OFF | {"fault_seed": "fault-test"} | overrides))


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    async with running(sim_settings()) as handle:
        yield handle


@pytest.fixture
async def http(sim: SimulatorHandle) -> AsyncIterator[aiohttp.ClientSession]:
    # Depends on `sim` so the session closes before the server stops.
    async with aiohttp.ClientSession(sim.url) as session:
        yield session


def payment(reference: str, amount: int = 1000) -> dict[str, Any]:
    return {
        "reference": reference,
        "amount": amount,
        "currency": "KRW",
        "orderId": "O-" + reference,
    }


async def authorize(
    http: aiohttp.ClientSession, reference: str, timeout: aiohttp.ClientTimeout | None = None
) -> tuple[int, Any]:
    async with http.post("/acquirer/authorize", json=payment(reference), timeout=timeout) as resp:
        return resp.status, await resp.json()


async def inquire(http: aiohttp.ClientSession, reference: str) -> tuple[int, Any]:
    async with http.get(f"/acquirer/transactions/{reference}") as resp:
        return resp.status, await resp.json()


async def configure(http: aiohttp.ClientSession, **cfg: Any) -> dict[str, Any]:
    async with http.post("/acquirer/admin/config", json=cfg) as resp:
        assert resp.status == 200, await resp.text()
        config: dict[str, Any] = await resp.json()
        return config


async def get_json(http: aiohttp.ClientSession, path: str) -> Any:
    async with http.get(path) as resp:
        assert resp.status == 200
        return await resp.json()


async def charges(http: aiohttp.ClientSession) -> list[dict[str, Any]]:
    body = await get_json(http, "/acquirer/charges")
    assert body["count"] == len(body["charges"])
    result: list[dict[str, Any]] = body["charges"]
    return result


async def injected(http: aiohttp.ClientSession) -> dict[str, int]:
    result: dict[str, int] = (await get_json(http, "/acquirer/stats"))["injected"]
    return result


async def assert_never_decided(http: aiohttp.ClientSession, reference: str) -> None:
    assert await inquire(http, reference) == (404, {"error": "not_found"})
    assert [c for c in await charges(http) if c["reference"] == reference] == []


async def assert_charged_once_and_repeat_agrees(
    http: aiohttp.ClientSession, reference: str
) -> None:
    """The inquiry says APPROVED, the ledger has one charge, a repeat gets the same answer."""
    status, answer = await inquire(http, reference)
    assert status == 200
    assert answer["status"] == "APPROVED" and answer["reference"] == reference
    ledger = await charges(http)
    assert [c["approvalNo"] for c in ledger] == [answer["approvalNo"]]
    await configure(http, **FAULTS_OFF)
    assert await authorize(http, reference) == (200, answer)
    assert len(await charges(http)) == 1


def faults(**counts: int) -> dict[str, int]:
    return NO_FAULTS | counts


async def test_defaults_are_all_off(http: aiohttp.ClientSession) -> None:
    fields = SimulatorSettings.model_fields
    for name in ("timeout_rate", "error_rate", "reset_rate", "drop_after_charge_rate"):
        assert fields[name].default == 0.0, name
    assert fields["inquiry_error_rate"].default == 0.0
    assert fields["latency_jitter_ms"].default == 0
    assert fields["hang_ms"].default == 30000
    assert fields["timeout_after_charge"].default is True
    assert fields["error_status"].default == 503
    assert fields["fault_seed"].default == ""
    for i in range(20):
        assert (await authorize(http, f"OK-{i}"))[0] == 200
        assert (await inquire(http, f"OK-{i}"))[0] == 200
    stats = await get_json(http, "/acquirer/stats")
    assert stats["inquiries"] == 20 and stats["injected"] == NO_FAULTS


def test_fault_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_TIMEOUT_RATE", "0.25")
    monkeypatch.setenv("SIM_TIMEOUT_AFTER_CHARGE", "false")
    monkeypatch.setenv("SIM_ERROR_STATUS", "502")
    monkeypatch.setenv("SIM_FAULT_SEED", "abc")
    settings = SimulatorSettings()
    assert settings.timeout_rate == 0.25 and settings.timeout_after_charge is False
    assert (settings.error_status, settings.fault_seed) == (502, "abc")
    monkeypatch.setenv("SIM_ERROR_STATUS", "404")
    with pytest.raises(ValueError, match="error_status"):
        SimulatorSettings()


@pytest.mark.parametrize("error_status", [503, 500, 502])
async def test_error_answers_5xx_without_charging(
    http: aiohttp.ClientSession, error_status: int
) -> None:
    await configure(http, error_rate=1.0, error_status=error_status)
    for _ in range(3):  # repeats of the same reference get the error too
        assert await authorize(http, "ERR-1") == (error_status, {"error": "injected"})
    await assert_never_decided(http, "ERR-1")
    assert await injected(http) == faults(error=3)
    await configure(http, error_rate=0.0)
    status, answer = await authorize(http, "ERR-1")
    assert (status, answer["status"]) == (200, "APPROVED")
    assert len(await charges(http)) == 1


async def test_error_on_a_decided_reference_keeps_the_decision(
    http: aiohttp.ClientSession,
) -> None:
    _, first = await authorize(http, "ERR-2")
    await configure(http, error_rate=1.0)
    assert (await authorize(http, "ERR-2"))[0] == 503
    await configure(http, error_rate=0.0)
    assert await authorize(http, "ERR-2") == (200, first)
    assert len(await charges(http)) == 1


async def test_reset_drops_the_connection_without_charging(http: aiohttp.ClientSession) -> None:
    await configure(http, reset_rate=1.0)
    for _ in range(2):
        with pytest.raises(aiohttp.ClientOSError) as caught:
            await authorize(http, "RST-1")
        # A real TCP RST: the client's socket read fails with "connection reset by peer".
        assert caught.value.errno == errno.ECONNRESET
    await assert_never_decided(http, "RST-1")
    assert await injected(http) == faults(reset=2)
    await configure(http, reset_rate=0.0)
    assert (await authorize(http, "RST-1"))[0] == 200
    assert len(await charges(http)) == 1


async def test_drop_after_charge_loses_the_answer_not_the_charge(
    http: aiohttp.ClientSession,
) -> None:
    await configure(http, drop_after_charge_rate=1.0)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await authorize(http, "DROP-1")
    # The repeat is dropped too, but finds the stored decision: still one charge.
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await authorize(http, "DROP-1")
    assert await injected(http) == faults(drop_after_charge=2)
    await assert_charged_once_and_repeat_agrees(http, "DROP-1")
    stats = await get_json(http, "/acquirer/stats")
    assert (stats["approved"], stats["authorizeCalls"]) == (1, 3)


async def test_timeout_after_charge(http: aiohttp.ClientSession) -> None:
    await configure(http, timeout_rate=1.0, hang_ms=2000)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await authorize(http, "TMO-1", timeout=SHORT)
    assert loop.time() - started < 1.0
    assert await injected(http) == faults(timeout=1)
    await assert_charged_once_and_repeat_agrees(http, "TMO-1")


async def test_timeout_without_charge(http: aiohttp.ClientSession) -> None:
    await configure(http, timeout_rate=1.0, hang_ms=2000, timeout_after_charge=False)
    with pytest.raises(TimeoutError):
        await authorize(http, "TMO-2", timeout=SHORT)
    await assert_never_decided(http, "TMO-2")
    assert await injected(http) == faults(timeout=1)


@pytest.mark.parametrize("after_charge", [True, False])
async def test_patient_client_gets_the_late_answer(
    http: aiohttp.ClientSession, after_charge: bool
) -> None:
    await configure(http, timeout_rate=1.0, hang_ms=200, timeout_after_charge=after_charge)
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, answer = await authorize(http, "LATE-1", timeout=aiohttp.ClientTimeout(total=2))
    assert loop.time() - started >= 0.19
    if after_charge:
        assert (status, answer["status"]) == (200, "APPROVED")
        assert len(await charges(http)) == 1
    else:
        assert (status, answer) == (504, {"error": "injected"})
        await assert_never_decided(http, "LATE-1")


async def test_hang_ends_when_the_client_leaves() -> None:
    # hang_ms far beyond the test's budget: shutdown waits for in-flight handlers, so the
    # server only stops quickly if the hanging handler noticed its client went away.
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with (
        running(sim_settings(timeout_rate=1.0, hang_ms=60000)) as sim,
        aiohttp.ClientSession(sim.url) as http,
    ):
        with pytest.raises(TimeoutError):
            await authorize(http, "HANG-1", timeout=SHORT)
        assert (await inquire(http, "HANG-1"))[0] == 200
    assert loop.time() - started < 2.0


async def test_faults_never_charge_a_reference_twice(http: aiohttp.ClientSession) -> None:
    await configure(
        http,
        reset_rate=0.2,
        error_rate=0.2,
        timeout_rate=0.2,
        hang_ms=50,
        drop_after_charge_rate=0.2,
        latency_ms=5,
    )
    results = await asyncio.gather(
        *(authorize(http, "MIX-1") for _ in range(40)), return_exceptions=True
    )
    answers = [r[1] for r in results if isinstance(r, tuple) and r[0] == 200]
    failures = [r for r in results if not isinstance(r, tuple) or r[0] != 200]
    assert answers and failures  # both happened with this seed
    assert len({a["approvalNo"] for a in answers}) == 1
    counts = await injected(http)
    assert sum(counts.values()) == len(failures) + counts["timeout"]  # late answers were 200s
    assert all(counts[kind] > 0 for kind in ("reset", "error", "timeout", "drop_after_charge"))
    await assert_charged_once_and_repeat_agrees(http, "MIX-1")
    assert (await get_json(http, "/acquirer/stats"))["approved"] == 1


async def error_pattern(http: aiohttp.ClientSession, prefix: str, calls: int) -> list[int]:
    return [(await authorize(http, f"{prefix}-{i}"))[0] for i in range(calls)]


async def test_rates_are_seeded_and_roughly_right() -> None:
    async with (
        running(sim_settings(error_rate=0.5, fault_seed="half")) as sim,
        aiohttp.ClientSession(sim.url) as http,
    ):
        first = await error_pattern(http, "HALF", 200)
        errors = first.count(503)
        assert set(first) == {200, 503}
        assert 60 <= errors <= 140
        assert await injected(http) == faults(error=errors)
        assert len(await charges(http)) == first.count(200)
        # Reset restarts the seeded stream: the same calls get the same faults.
        async with http.post("/acquirer/admin/reset") as resp:
            assert resp.status == 200
        assert await error_pattern(http, "HALF", 200) == first
        # Re-seeding at run time restarts it too; another seed gives another pattern.
        await configure(http, fault_seed="half")
        assert await error_pattern(http, "AGAIN", 200) == first
        await configure(http, fault_seed="other")
        assert await error_pattern(http, "OTHER", 200) != first


async def test_rate_one_always_and_zero_never(http: aiohttp.ClientSession) -> None:
    await configure(http, error_rate=1.0)
    assert set(await error_pattern(http, "ONE", 50)) == {503}
    await configure(http, error_rate=0.0)
    assert set(await error_pattern(http, "ZERO", 50)) == {200}
    await configure(http, inquiry_error_rate=1.0)
    assert {(await inquire(http, f"ZERO-{i}"))[0] for i in range(20)} == {503}
    await configure(http, inquiry_error_rate=0.0)
    assert {(await inquire(http, f"ZERO-{i}"))[0] for i in range(20)} == {200}
    assert await injected(http) == faults(error=50, inquiry_error=20)


async def test_inquiry_errors_and_truthful_answers(http: aiohttp.ClientSession) -> None:
    _, approved = await authorize(http, "INQ-A")
    await configure(http, success_rate=0.0)
    _, declined = await authorize(http, "INQ-D")
    assert declined["status"] == "DECLINED" and declined["reason"]
    await configure(http, inquiry_error_rate=1.0)
    for ref in ("INQ-A", "INQ-D", "INQ-NONE"):
        assert await inquire(http, ref) == (503, {"error": "injected"})
    # Inquiry faults do not touch authorize.
    assert (await authorize(http, "INQ-A"))[1] == approved
    await configure(http, inquiry_error_rate=0.0)
    assert await inquire(http, "INQ-A") == (200, approved)
    assert approved["status"] == "APPROVED" and approved["approvalNo"]
    assert await inquire(http, "INQ-D") == (200, declined)
    assert await inquire(http, "INQ-NONE") == (404, {"error": "not_found"})
    stats = await get_json(http, "/acquirer/stats")
    assert stats["inquiries"] == 6
    assert stats["injected"] == faults(inquiry_error=3)


async def test_down_for_ms_then_normal_service(http: aiohttp.ClientSession) -> None:
    _, known = await authorize(http, "DOWN-0")
    config = await configure(http, down_for_ms=300)
    assert 0 < config["down_for_ms"] <= 300
    assert await authorize(http, "DOWN-1") == (503, {"error": "injected"})
    assert await inquire(http, "DOWN-0") == (503, {"error": "injected"})
    await wait_for_outage_end(http)
    await assert_never_decided(http, "DOWN-1")
    assert (await authorize(http, "DOWN-1"))[0] == 200
    assert await inquire(http, "DOWN-0") == (200, known)
    counts = await injected(http)
    assert counts["down"] >= 2 and sum(counts.values()) == counts["down"]


async def wait_for_outage_end(http: aiohttp.ClientSession) -> None:
    """Poll the admin config (never down itself) until down_for_ms is over, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    while (await configure(http))["down_for_ms"] > 0:
        assert loop.time() < deadline, "outage did not end"
        await asyncio.sleep(0.02)


async def test_down_for_zero_ends_an_outage(http: aiohttp.ClientSession) -> None:
    await configure(http, down_for_ms=60000)
    assert (await authorize(http, "UP-1"))[0] == 503
    assert (await configure(http, down_for_ms=0))["down_for_ms"] == 0
    assert (await authorize(http, "UP-1"))[0] == 200


async def test_latency_jitter(http: aiohttp.ClientSession) -> None:
    # With this seed the five jitter draws spread over more than 40 ms (of 100).
    await configure(http, latency_ms=20, latency_jitter_ms=100, fault_seed="jitter")
    loop = asyncio.get_running_loop()
    elapsed = []
    for i in range(5):
        started = loop.time()
        assert (await authorize(http, f"JIT-{i}"))[0] == 200
        elapsed.append(loop.time() - started)
    assert min(elapsed) >= 0.019
    assert max(elapsed) < 1.0
    assert max(elapsed) - min(elapsed) >= 0.04


@pytest.mark.parametrize(
    "bad",
    [
        {"timeout_rate": 1.5},
        {"error_rate": -0.1},
        {"reset_rate": "0.5"},
        {"drop_after_charge_rate": 2},
        {"inquiry_error_rate": True},
        {"error_status": 404},
        {"error_status": 600},
        {"hang_ms": -1},
        {"hang_ms": 1.5},
        {"latency_jitter_ms": -1},
        {"timeout_after_charge": 1},
        {"timeout_after_charge": "yes"},
        {"fault_seed": 3},
        {"down_for_ms": -5},
        {"down_until": 1},
        {"timeout": 1.0},
        {"injected": {}},
    ],
)
async def test_admin_validation(http: aiohttp.ClientSession, bad: dict[str, Any]) -> None:
    before = await configure(http)
    async with http.post("/acquirer/admin/config", json=bad) as resp:
        assert resp.status == 400, bad
        assert (await resp.json())["field"]
    assert await configure(http) == before


async def test_config_shape_and_reset_restores_configured_faults() -> None:
    configured = sim_settings(error_rate=1.0, error_status=502, hang_ms=1234)
    async with (
        running(configured) as sim,
        aiohttp.ClientSession(sim.url) as http,
    ):
        initial = await configure(http)
        assert initial == {
            "success_rate": 1.0,
            "seed": "faults",
            "charge_every_call": False,
            **FAULTS_OFF,
            "error_rate": 1.0,
            "error_status": 502,
            "hang_ms": 1234,
            "fault_seed": "fault-test",
            "down_for_ms": 0,
        }
        assert (await authorize(http, "CFG-1"))[0] == 502  # configured faults apply from start
        changed = await configure(
            http, error_rate=0.0, reset_rate=1.0, latency_jitter_ms=5, down_for_ms=60000
        )
        assert changed["reset_rate"] == 1.0 and changed["down_for_ms"] > 0
        assert await inquire(http, "CFG-1") == (503, {"error": "injected"})
        async with http.post("/acquirer/admin/reset") as resp:
            assert resp.status == 200
        assert await configure(http) == initial
        assert await get_json(http, "/acquirer/stats") == {
            "authorizeCalls": 0,
            "approved": 0,
            "declined": 0,
            "inquiries": 0,
            "injected": NO_FAULTS,
        }
        assert (await authorize(http, "CFG-1"))[0] == 502
        assert (await get_json(http, "/acquirer/stats"))["injected"] == faults(error=1)
