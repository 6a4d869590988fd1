"""The one backoff of payments, refunds and webhooks."""

from __future__ import annotations

import pytest

from engine.backoff import Backoff


@pytest.mark.parametrize("attempt", range(1, 12))
def test_each_delay_doubles_with_at_most_initial_of_jitter(attempt: int) -> None:
    b = Backoff(initial=0.5, maximum=1e9)
    base = 0.5 * 2 ** (attempt - 1)
    delays = [b.delay(attempt) for _ in range(200)]
    assert all(base <= d <= base + 0.5 for d in delays)
    # Jitter: twins do not retry in lockstep.
    assert len(set(delays)) > 100


def test_the_cap_holds_for_any_attempt() -> None:
    b = Backoff(initial=60, maximum=12 * 3600)
    for attempt in (11, 12, 64, 65, 10_000):
        assert b.delay(attempt) == 12 * 3600
    assert Backoff(initial=0, maximum=0).delay(5) == 0


def test_attempt_zero_or_less_counts_as_the_first() -> None:
    b = Backoff(initial=1, maximum=100)
    assert all(1 <= b.delay(n) <= 2 for n in (-3, 0, 1))
