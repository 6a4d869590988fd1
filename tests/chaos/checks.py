"""Invariants of the chaos suite as plain functions of what was observed, so each can be tested.

Each returns a Verdict: the invariant's name, whether it held, and a detail line for the table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FINAL = ("SUCCESS", "FAILED")
# How many offending ids a detail line names.
SHOWN = 5


@dataclass(frozen=True)
class Verdict:
    """One row of the report."""

    name: str
    passed: bool
    detail: str


def _some(ids: Iterable[str]) -> str:
    ordered = sorted(ids)
    more = f" (+{len(ordered) - SHOWN})" if len(ordered) > SHOWN else ""
    return ", ".join(ordered[:SHOWN]) + more


def ledger_matches(charges: list[dict[str, Any]], statuses: Mapping[str, str]) -> Verdict:
    """The acquirer's ledger is the SUCCESS payments, each charged once; none behind FAILED.

    `charges` is the acquirer's ledger (one entry per charge, `reference` = tid) and `statuses`
    maps each payment's tid to its status. The acquirer runs with charge_every_call, so a
    second charge for one tid shows here as a doubled reference: only the engine's
    inquiry-before-resend keeps it from happening.
    """
    charged = Counter(c["reference"] for c in charges)
    doubled = {ref for ref, n in charged.items() if n > 1}
    success = {tid for tid, s in statuses.items() if s == "SUCCESS"}
    behind_failed = {tid for tid, s in statuses.items() if s == "FAILED"} & set(charged)
    uncharged = success - set(charged)
    unknown = set(charged) - set(statuses)
    passed = not (doubled or behind_failed or uncharged or unknown)
    detail = (
        f"{len(charges)} charges, {len(success)} SUCCESS, {len(doubled)} doubled,"
        f" {len(behind_failed)} behind FAILED, {len(uncharged)} SUCCESS uncharged,"
        f" {len(unknown)} of no payment"
    )
    for label, ids in (
        ("doubled", doubled),
        ("behind FAILED", behind_failed),
        ("uncharged", uncharged),
        ("no payment", unknown),
    ):
        if ids:
            detail += f"; {label}: {_some(ids)}"
    return Verdict("acquirer ledger == SUCCESS payments (no double charge)", passed, detail)


@dataclass
class UnresolvedSightings:
    """What GET /api/payment/unresolved listed while the run went on."""

    polls: int = 0
    # tid -> the reason it was listed with (the first sighting).
    reasons: dict[str, str] = field(default_factory=dict)
    # tids listed at least once without a reason.
    reasonless: set[str] = field(default_factory=set)

    def saw(self, tid: str, reason: str | None) -> None:
        """Record one listed payment."""
        if not reason:
            self.reasonless.add(tid)
            return
        self.reasons.setdefault(tid, reason)


def unresolved_path_proven(
    seen: UnresolvedSightings, statuses: Mapping[str, str], listed_at_end: set[str]
) -> Verdict:
    """Some payments were listed UNRESOLVED with a reason, and each ends final or still listed."""
    listed = set(seen.reasons) | seen.reasonless
    lost = {
        tid
        for tid in listed
        if statuses.get(tid) not in FINAL
        and not (statuses.get(tid) == "UNRESOLVED" and tid in listed_at_end)
    }
    passed = bool(seen.reasons) and not seen.reasonless and not lost
    reasons = Counter(r.split(":")[0] for r in seen.reasons.values())
    detail = (
        f"{len(seen.reasons)} listed with a reason in {seen.polls} polls,"
        f" {len(seen.reasonless)} without, {len(lost)} neither final nor listed at the end"
    )
    if reasons:
        detail += "; " + ", ".join(f"{r} x{n}" for r, n in reasons.most_common(3))
    if seen.reasonless:
        detail += f"; without a reason: {_some(seen.reasonless)}"
    if lost:
        detail += f"; lost: {_some(lost)}"
    return Verdict("UNRESOLVED seen listed with a reason, then final or listed", passed, detail)


@dataclass
class LeaseSamples:
    """PROCESSING rows past their lease, sampled while work still ran."""

    samples: int = 0
    # The longest any PROCESSING row was seen past its lease, in seconds.
    worst: float = 0.0
    # tid -> seconds past its lease, for rows seen past the allowed grace.
    stuck: dict[str, float] = field(default_factory=dict)

    def saw(self, overdue: Mapping[str, float], grace: float) -> None:
        """Record one sample: every PROCESSING row whose lease has expired, by seconds past it."""
        self.samples += 1
        self.worst = max([self.worst, *overdue.values()])
        for tid, seconds in overdue.items():
            if seconds > grace:
                self.stuck[tid] = max(seconds, self.stuck.get(tid, 0.0))


def leases_reaped_in_time(samples: LeaseSamples, grace: float) -> Verdict:
    """While work ran, no PROCESSING row stayed past its lease longer than `grace` seconds."""
    passed = samples.samples > 0 and not samples.stuck
    detail = (
        f"{samples.samples} samples, worst {samples.worst:.1f}s past a lease"
        f" (allowed {grace:.1f}s), {len(samples.stuck)} stuck"
    )
    if samples.stuck:
        detail += f": {_some(samples.stuck)}"
    return Verdict("during the run, expired leases are taken back in time", passed, detail)
