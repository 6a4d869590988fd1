"""Identifiers: Snowflake public ids in Base62, and transaction ids in the seed's format."""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# 62**11 > 2**63, so every Snowflake fits in 11 characters; fixed width keeps them sortable.
_WIDTH = 11
# 2026-01-01T00:00:00Z: 41 bits of milliseconds from here last about 69 years.
EPOCH_MS = 1_767_225_600_000
_NODE_BITS = 10
_SEQ_BITS = 12
_MAX_SEQ = (1 << _SEQ_BITS) - 1


def base62(number: int, width: int = _WIDTH) -> str:
    """Encode a non-negative integer in Base62, left-padded to `width`."""
    if number < 0:
        raise ValueError("base62 encodes non-negative integers")
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(_ALPHABET[rem])
    return "".join(reversed(digits)).rjust(width, "0")


class Snowflake:
    """Time-ordered 63-bit ids: 41 bits of milliseconds, 10 of node, 12 of sequence."""

    def __init__(self, node_id: int) -> None:
        if not 0 <= node_id < (1 << _NODE_BITS):
            raise ValueError(f"node_id must be in [0, {1 << _NODE_BITS})")
        self._node = node_id
        self._last_ms = -1
        self._seq = 0
        self._lock = threading.Lock()

    def next_int(self) -> int:
        """The next id; never repeats within this generator, even if the clock steps back."""
        with self._lock:
            now = max(int(time.time() * 1000) - EPOCH_MS, self._last_ms)
            if now == self._last_ms:
                self._seq = (self._seq + 1) & _MAX_SEQ
                if self._seq == 0:  # 4096 ids this millisecond: borrow the next one
                    now += 1
            else:
                self._seq = 0
            self._last_ms = now
            return (now << (_NODE_BITS + _SEQ_BITS)) | (self._node << _SEQ_BITS) | self._seq

    def next_id(self) -> str:
        """The next id in fixed-width Base62."""
        return base62(self.next_int())


def new_tid(prefix: str, now: datetime | None = None) -> str:
    """A transaction id `<prefix>_<YYYYMMDD>_<8 digits>`, the digits from a CSPRNG."""
    day = (now or datetime.now(UTC)).strftime("%Y%m%d")
    return f"{prefix}_{day}_{secrets.randbelow(100_000_000):08d}"
