"""One backoff for everything the engine tries again: payments, refunds and webhooks.

The schedule of payments, refunds and webhooks is durable: the delay is written into the
row's next_attempt_at, so a crash loses no retry. In-process retries (an acquirer call, the
pool waiting for PostgreSQL) are run by tenacity and wait with the same curve: a `Backoff`
is a tenacity wait. The worker's own passes back off with it too while the database is down.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenacity import RetryCallState


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential from `initial`, doubling per attempt, capped at `maximum`, with jitter."""

    initial: float
    maximum: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based).

        `initial * 2**(attempt - 1)` plus up to `initial` of jitter (so twins spread out),
        never above `maximum`.
        """
        exponent = max(0, attempt - 1)
        # Past 2**64 the product is far above any cap: avoid building a huge float.
        grown = self.maximum if exponent >= 64 else self.initial * 2.0**exponent
        return min(self.maximum, grown + random.uniform(0, self.initial))

    def __call__(self, state: RetryCallState) -> float:
        """As a tenacity `wait`: the delay after the attempt that just failed."""
        return self.delay(state.attempt_number)
