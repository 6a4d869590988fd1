"""One backoff for everything the engine tries again: payments, refunds and webhooks.

The schedule itself is durable: the delay is written into the row's next_attempt_at, so a
crash loses no retry. This module only computes the delay. It is the same curve as
tenacity's `wait_exponential_jitter` (in-process retries use tenacity itself), written out
because a durable schedule has no tenacity retry state to hand it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


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
