"""Prometheus metrics of every process, and the database's own numbers at scrape time.

With PROMETHEUS_MULTIPROC_DIR set (`make run` sets it), counters and histograms of every web
and worker process are written there, and the web process's `/metrics` adds them up, so
worker metrics are visible through one endpoint. Without it, each process keeps its own.
Numbers that live in the database (rows per state, age of the oldest PENDING payment) are
read when `/metrics` is scraped, from the partial indexes on the active states: cheap at any
table size.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

PAYMENTS_SETTLED = Counter(
    "engine_payments_settled_total",
    "Payments that reached SUCCESS or FAILED (the success rate is their ratio), by who settled"
    " them: a provider (card, atom) or a person with the manual trigger (manual)",
    ["status", "provider"],
)
REFUNDS_SETTLED = Counter(
    "engine_refunds_settled_total", "Refunds that reached REFUNDED or REFUND_FAILED", ["status"]
)
PROVIDER_SECONDS = Histogram(
    "engine_provider_call_seconds",
    "Time of one provider call (authorize, inquire, refund), by what came of it",
    ["provider", "operation", "result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ERRORS = Counter(
    "engine_errors_total",
    "Errors by class: provider_unavailable, outcome_unknown, provider_rejected,"
    " unresolved, database_unavailable, internal, overloaded, late_callback",
    ["error_class"],
)
WEBHOOK_ATTEMPTS = Counter(
    "engine_webhook_attempts_total",
    "Webhook attempts by result (delivered, failed, dead)",
    ["result"],
)
SIGNATURE_FAILURES = Counter(
    "engine_signature_failures_total",
    "Provider answers or callbacks whose signature did not verify",
    ["provider"],
)
AUTH_FAILURES = Counter(
    "engine_auth_failures_total", "Requests refused for their API key", ["reason"]
)
CALLBACKS_REFUSED = Counter(
    "engine_callbacks_refused_total",
    "Provider callbacks refused (401): their signature failed, or they did not decrypt or parse",
    ["provider", "reason"],
)
HTTP_SECONDS = Histogram(
    "engine_http_request_seconds",
    "Intake latency by route and status",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


# Every label value a counter can take that is known in advance. Each series exists at 0 from
# the start: a rate() or an alert on a series that appears only at its first count misses it.
KNOWN_LABELS: list[tuple[Counter, list[tuple[str, ...]]]] = [
    (
        PAYMENTS_SETTLED,
        [(s, p) for s in ("SUCCESS", "FAILED") for p in ("card", "atom", "manual")],
    ),
    (REFUNDS_SETTLED, [("REFUNDED",), ("REFUND_FAILED",)]),
    (
        ERRORS,
        [
            (c,)
            for c in (
                "provider_unavailable",
                "outcome_unknown",
                "provider_rejected",
                "unresolved",
                "late_callback",
                "database_unavailable",
                "internal",
                "overloaded",
            )
        ],
    ),
    (WEBHOOK_ATTEMPTS, [("delivered",), ("failed",), ("dead",)]),
    (SIGNATURE_FAILURES, [("atom",)]),
    (AUTH_FAILURES, [(r,) for r in ("missing", "malformed", "unknown", "expired", "revoked")]),
    (CALLBACKS_REFUSED, [("atom", "signature"), ("atom", "unreadable")]),
]


def _start_at_zero() -> None:
    for counter, combinations in KNOWN_LABELS:
        for labels in combinations:
            counter.labels(*labels)  # makes the series, at 0


_start_at_zero()


@contextmanager
def provider_call(provider: str, operation: str) -> Iterator[dict[str, str]]:
    """Time a provider call; the caller sets result["result"] to say how it ended."""
    result = {"result": "error"}
    start = time.perf_counter()
    try:
        yield result
    finally:
        PROVIDER_SECONDS.labels(provider, operation, result["result"]).observe(
            time.perf_counter() - start
        )


def _database_families(snapshot: dict[str, Any]) -> list[GaugeMetricFamily]:
    states = GaugeMetricFamily(
        "engine_payments_in_state", "Payments and refunds in each active state", labels=["state"]
    )
    for state in (
        "PENDING",
        "PROCESSING",
        "UNRESOLVED",
        "REFUND_PENDING",
        "REFUND_PROCESSING",
        "REFUND_UNRESOLVED",
    ):
        states.add_metric([state], snapshot[state.lower()])
    webhooks = GaugeMetricFamily(
        "engine_webhooks_in_state", "Webhook deliveries waiting or DEAD", labels=["state"]
    )
    for state in ("PENDING", "SENDING", "DEAD"):
        webhooks.add_metric([state], snapshot[f"webhooks_{state.lower()}"])
    pending_age = GaugeMetricFamily(
        "engine_oldest_pending_age_seconds", "Age of the oldest PENDING payment (0 if none)"
    )
    pending_age.add_metric([], snapshot["oldest_pending_age"] or 0.0)
    unresolved_age = GaugeMetricFamily(
        "engine_oldest_unresolved_age_seconds",
        "Age of the oldest UNRESOLVED payment (0 if none)",
    )
    unresolved_age.add_metric([], snapshot["oldest_unresolved_age"] or 0.0)
    return [states, webhooks, pending_age, unresolved_age]


class _Families:
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self) -> list[GaugeMetricFamily]:
        return self._families


def exposition(snapshot: dict[str, Any] | None) -> bytes:
    """The text exposition: every process's metrics, then the database's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if snapshot is not None:
        db_registry = CollectorRegistry()
        db_registry.register(_Families(_database_families(snapshot)))
        text += generate_latest(db_registry)
    return text
