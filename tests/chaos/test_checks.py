"""The chaos suite's checks, fed what a broken run would show: each must fail."""

from __future__ import annotations

from typing import Any

from tests.chaos import checks


def charge(tid: str, approval: str = "AP1") -> dict[str, Any]:
    return {
        "reference": tid,
        "orderId": f"O-{tid}",
        "amount": 1000,
        "currency": "KRW",
        "approvalNo": approval,
        "chargedAt": "2026-01-01T00:00:00+00:00",
    }


STATUSES = {"T1": "SUCCESS", "T2": "SUCCESS", "T3": "FAILED"}


def test_ledger_passes_when_each_success_is_charged_once() -> None:
    verdict = checks.ledger_matches([charge("T1"), charge("T2")], STATUSES)
    assert verdict.passed, verdict.detail
    assert "0 doubled" in verdict.detail


def test_ledger_fails_on_a_doubled_charge() -> None:
    # What an acquirer that charges on every call holds after a blind resend.
    ledger = [charge("T1", "AP1"), charge("T2"), charge("T1", "AP2")]
    verdict = checks.ledger_matches(ledger, STATUSES)
    assert not verdict.passed
    assert "1 doubled" in verdict.detail and "doubled: T1" in verdict.detail


def test_ledger_fails_on_a_charge_behind_a_failed_payment() -> None:
    verdict = checks.ledger_matches([charge("T1"), charge("T2"), charge("T3")], STATUSES)
    assert not verdict.passed
    assert "behind FAILED: T3" in verdict.detail


def test_ledger_fails_on_a_success_never_charged_or_a_charge_of_no_payment() -> None:
    assert not checks.ledger_matches([charge("T1")], STATUSES).passed
    stray = checks.ledger_matches([charge("T1"), charge("T2"), charge("T9")], STATUSES)
    assert not stray.passed and "no payment: T9" in stray.detail


def test_unresolved_passes_when_seen_with_a_reason_and_then_settled_or_still_listed() -> None:
    seen = checks.UnresolvedSightings(polls=3)
    seen.saw("T1", "acquirer answered 503")
    seen.saw("T2", "TimeoutError: ")
    verdict = checks.unresolved_path_proven(
        seen, {"T1": "SUCCESS", "T2": "UNRESOLVED"}, listed_at_end={"T2"}
    )
    assert verdict.passed, verdict.detail


def test_unresolved_fails_when_never_seen() -> None:
    verdict = checks.unresolved_path_proven(
        checks.UnresolvedSightings(polls=50), {"T1": "SUCCESS"}, listed_at_end=set()
    )
    assert not verdict.passed
    assert "0 listed with a reason in 50 polls" in verdict.detail


def test_unresolved_fails_when_listed_without_a_reason() -> None:
    seen = checks.UnresolvedSightings(polls=1)
    seen.saw("T1", "acquirer answered 503")
    seen.saw("T2", None)
    verdict = checks.unresolved_path_proven(
        seen, {"T1": "SUCCESS", "T2": "SUCCESS"}, listed_at_end=set()
    )
    assert not verdict.passed and "without a reason: T2" in verdict.detail


def test_unresolved_fails_when_one_ends_neither_final_nor_listed() -> None:
    seen = checks.UnresolvedSightings(polls=1)
    seen.saw("T1", "acquirer answered 503")
    for status in ("PENDING", "PROCESSING", "UNRESOLVED"):
        verdict = checks.unresolved_path_proven(seen, {"T1": status}, listed_at_end=set())
        assert not verdict.passed, status
        assert "lost: T1" in verdict.detail


def test_leases_pass_within_grace_and_fail_past_it() -> None:
    samples = checks.LeaseSamples()
    samples.saw({"T1": 0.5}, grace=2.0)
    samples.saw({}, grace=2.0)
    verdict = checks.leases_reaped_in_time(samples, grace=2.0)
    assert verdict.passed, verdict.detail
    assert "2 samples, worst 0.5s" in verdict.detail

    samples.saw({"T1": 2.5, "T2": 0.1}, grace=2.0)
    samples.saw({"T1": 3.0}, grace=2.0)
    verdict = checks.leases_reaped_in_time(samples, grace=2.0)
    assert not verdict.passed
    assert samples.stuck == {"T1": 3.0}
    assert "1 stuck: T1" in verdict.detail


def test_leases_fail_when_never_sampled() -> None:
    # A watcher that never got an answer proves nothing.
    assert not checks.leases_reaped_in_time(checks.LeaseSamples(), grace=2.0).passed
