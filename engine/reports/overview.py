"""The overview's figures per hour (today) or day (7 or 30 days), from the rollup.

Payments count in the bucket they were created in. Final outcomes come from payment_rollup
(kept by a trigger, see sql/migrations/0012_backoffice.sql); payments still open are counted
directly. Latency (created -> SUCCESS or FAILED) comes from a histogram whose buckets are a
factor of sqrt(2) wide: a percentile is interpolated inside its bucket, so it is within that
factor of the exact value.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine import errors
from engine.store.reports import ReportsStore

RANGES = {"today": ("hour", 0), "7d": ("day", 7), "30d": ("day", 30)}
# The histogram's last bucket (see latency_bucket) has no upper bound.
LAST_BUCKET = 48


@dataclass(slots=True)
class Bucket:
    """The payments created in [start, start + one hour or day)."""

    start: datetime
    count: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    open: int = 0
    # Per currency, in minor units: everything created, and what succeeded.
    amount: dict[str, int] = field(default_factory=dict)
    succeeded_amount: dict[str, int] = field(default_factory=dict)
    # fail_reason -> how many FAILED with it.
    failures: dict[str, int] = field(default_factory=dict)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None

    @property
    def success_rate(self) -> float | None:
        """SUCCESS / (SUCCESS + FAILED); None while none has an outcome."""
        decided = self.succeeded + self.failed
        return self.succeeded / decided if decided else None


@dataclass(frozen=True, slots=True)
class Overview:
    """The overview of one merchant and mode over a range, bucket by bucket (oldest first)."""

    range: str
    tz: str
    unit: str
    start: datetime
    end: datetime
    buckets: list[Bucket]


def percentile(histogram: dict[int, int], p: float) -> float | None:
    """The p-th quantile (0..1) in ms of a latency histogram {bucket: count}, interpolated."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = p * total
    seen = 0
    for b in sorted(histogram):
        n = histogram[b]
        if n and seen + n >= rank:
            low = 0.0 if b == 0 else 2 ** (b / 2)
            high = 2 ** ((b + 1) / 2) if b < LAST_BUCKET else low * math.sqrt(2)
            return low + (high - low) * ((rank - seen) / n)
        seen += n
    return None


def window(range_: str, tz: str, now: datetime | None = None) -> tuple[str, datetime, datetime]:
    """(unit, start, end) of a range in time zone `tz`: today so far, or the last 7 / 30 days
    (today included)."""
    if range_ not in RANGES:
        raise errors.InvalidField("range", f"must be one of {', '.join(RANGES)}")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise errors.InvalidField("tz", "must be an IANA time zone such as Asia/Seoul") from None
    unit, days = RANGES[range_]
    local = (now or datetime.now(UTC)).astimezone(zone)
    midnight = datetime(local.year, local.month, local.day, tzinfo=zone)
    start = midnight if days == 0 else _days_back(midnight, days - 1, zone)
    end = _days_back(midnight, -1, zone)
    return unit, start.astimezone(UTC), end.astimezone(UTC)


def _days_back(midnight: datetime, days: int, zone: ZoneInfo) -> datetime:
    # Calendar days, not 24-hour steps: a DST change keeps midnight at midnight.
    d = (midnight.replace(tzinfo=None) - timedelta(days=days)).date()
    return datetime(d.year, d.month, d.day, tzinfo=zone)


def _starts(unit: str, start: datetime, end: datetime, tz: str) -> list[datetime]:
    zone = ZoneInfo(tz)
    out: list[datetime] = []
    at = start
    while at < end:
        out.append(at)
        if unit == "hour":
            at = at + timedelta(hours=1)
        else:
            at = _days_back(at.astimezone(zone), -1, zone).astimezone(UTC)
    return out


async def overview(
    store: ReportsStore,
    mid: str,
    mode: str,
    range_: str,
    tz: str = "Asia/Seoul",
    *,
    now: datetime | None = None,
) -> Overview:
    """Volume, outcomes, success rate, latency and failure reasons per bucket of `range_`."""
    unit, start, end = window(range_, tz, now)
    counts, latency = await store.overview(mid, mode, start, end, tz, unit)
    buckets = {at: Bucket(at) for at in _starts(unit, start, end, tz)}
    for r in counts:
        b = buckets.get(r["bucket"])
        if b is None:
            continue  # an hour of a zone with a half-hour offset, outside the window
        n, amount, cur = int(r["n"]), int(r["amount"]), r["currency"]
        b.count += n
        b.amount[cur] = b.amount.get(cur, 0) + amount
        if r["outcome"] == "SUCCESS":
            b.succeeded += n
            b.succeeded_amount[cur] = b.succeeded_amount.get(cur, 0) + amount
        elif r["outcome"] == "FAILED":
            b.failed += n
            b.failures[r["reason"]] = b.failures.get(r["reason"], 0) + n
        elif r["outcome"] == "CANCELED":
            b.canceled += n
        else:
            b.open += n
    histograms: dict[datetime, dict[int, int]] = defaultdict(dict)
    for r in latency:
        histograms[r["bucket"]][int(r["le"])] = int(r["n"])
    for at, h in histograms.items():
        if at in buckets:
            buckets[at].latency_p50_ms = percentile(h, 0.5)
            buckets[at].latency_p95_ms = percentile(h, 0.95)
    return Overview(range_, tz, unit, start, end, list(buckets.values()))
