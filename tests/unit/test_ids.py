"""engine.ids: Base62, Snowflake ids and transaction ids."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from engine import ids

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TID_RE = re.compile(r"^DUMMY_\d{8}_\d{8}$")


def decode(text: str) -> int:
    """Base62 back to an integer (written here, independently of engine.ids)."""
    number = 0
    for char in text:
        number = number * 62 + ALPHABET.index(char)
    return number


def increasing(values: list[int]) -> bool:
    return all(a < b for a, b in pairwise(values))


def fields(snowflake: int) -> tuple[int, int, int]:
    """(milliseconds since the epoch, node, sequence) of a Snowflake id."""
    return snowflake >> 22, (snowflake >> 12) & 0x3FF, snowflake & 0xFFF


class FakeClock:
    """A time.time() the test moves by hand."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    fake = FakeClock(ids.EPOCH_MS / 1000 + 1_000_000.0)
    monkeypatch.setattr(time, "time", fake)
    yield fake


# --- base62 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0, "00000000000"),
        (1, "00000000001"),
        (61, "0000000000z"),
        (62, "00000000010"),
        (62**2 - 1, "000000000zz"),
        (2**63 - 1, "AzL8n0Y58m7"),
    ],
)
def test_base62_known_values(number: int, text: str) -> None:
    assert ids.base62(number) == text
    assert decode(text) == number


def test_base62_round_trip_and_width() -> None:
    rng = random.Random(62)
    samples = [0, 1, 61, 62, 2**63 - 1] + [rng.randrange(2**63) for _ in range(5000)]
    for n in samples:
        text = ids.base62(n)
        assert len(text) == 11
        assert set(text) <= set(ALPHABET)
        assert decode(text) == n


def test_base62_custom_width_pads_but_never_truncates() -> None:
    assert ids.base62(5, width=3) == "005"
    assert ids.base62(0, width=0) == ""
    assert ids.base62(62**11) == "1" + "0" * 11  # wider than 11: all digits kept
    assert decode(ids.base62(62**11)) == 62**11


def test_base62_sorts_like_the_numbers() -> None:
    rng = random.Random(7)
    numbers = sorted({rng.randrange(2**63) for _ in range(5000)} | {0, 61, 62, 2**63 - 1})
    texts = [ids.base62(n) for n in numbers]
    assert texts == sorted(texts)
    assert len(set(texts)) == len(texts)


def test_base62_rejects_negative() -> None:
    with pytest.raises(ValueError):
        ids.base62(-1)


# --- Snowflake ------------------------------------------------------------------------------


def test_snowflake_strictly_increasing_and_unique_over_100k() -> None:
    gen = ids.Snowflake(3)
    values = [gen.next_int() for _ in range(100_000)]
    assert increasing(values)
    assert len(set(values)) == len(values)
    assert all(0 < v < 2**63 for v in values)
    assert {fields(v)[1] for v in values} == {3}


def test_snowflake_string_ids_sort_like_their_order() -> None:
    gen = ids.Snowflake(5)
    texts = [gen.next_id() for _ in range(20_000)]
    assert texts == sorted(texts)
    assert len(set(texts)) == len(texts)
    assert all(len(t) == 11 for t in texts)


def test_snowflake_carries_current_time(clock: FakeClock) -> None:
    gen = ids.Snowflake(1)
    ms, node, seq = fields(gen.next_int())
    assert ms == int(clock.now * 1000) - ids.EPOCH_MS
    assert (node, seq) == (1, 0)


def test_distinct_nodes_never_collide(clock: FakeClock) -> None:
    # Same frozen millisecond for every node: only the node bits keep them apart.
    gens = [ids.Snowflake(n) for n in (0, 1, 2, 511, 1023)]
    seen: set[int] = set()
    for gen in gens:
        made = {gen.next_int() for _ in range(10_000)}
        assert len(made) == 10_000
        assert not made & seen
        seen |= made


def test_sequence_overflow_borrows_next_millisecond(clock: FakeClock) -> None:
    gen = ids.Snowflake(9)
    values = [gen.next_int() for _ in range(3 * 4096 + 10)]
    assert increasing(values)
    start = int(clock.now * 1000) - ids.EPOCH_MS
    assert fields(values[0])[0] == start
    assert fields(values[4095]) == (start, 9, 4095)
    assert fields(values[4096])[0] == start + 1
    assert fields(values[-1])[0] == start + 3


def test_clock_stepping_backwards_does_not_repeat(clock: FakeClock) -> None:
    gen = ids.Snowflake(7)
    before = [gen.next_int() for _ in range(1000)]
    clock.now += 0.005
    before += [gen.next_int() for _ in range(1000)]
    clock.now -= 10.0  # NTP steps the clock back ten seconds
    after = [gen.next_int() for _ in range(5000)]
    clock.now += 0.001  # still behind the highest time handed out
    after += [gen.next_int() for _ in range(1000)]
    values = before + after
    assert increasing(values)
    assert len(set(values)) == len(values)
    # Once the clock has caught up it is used again.
    clock.now += 20.0
    latest = gen.next_int()
    assert latest > values[-1]
    assert fields(latest)[0] == int(clock.now * 1000) - ids.EPOCH_MS


def test_snowflake_is_thread_safe() -> None:
    gen = ids.Snowflake(4)
    results: list[list[int]] = [[] for _ in range(8)]

    def work(out: list[int]) -> None:
        out.extend(gen.next_int() for _ in range(10_000))

    threads = [threading.Thread(target=work, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [v for r in results for v in r]
    assert len(set(everything)) == 80_000
    for r in results:
        assert increasing(r)


@pytest.mark.parametrize("node", [-1, 1024, 2**20])
def test_snowflake_rejects_node_out_of_range(node: int) -> None:
    with pytest.raises(ValueError):
        ids.Snowflake(node)


@pytest.mark.parametrize("node", [0, 1023])
def test_snowflake_accepts_node_bounds(node: int) -> None:
    assert fields(ids.Snowflake(node).next_int())[1] == node


# --- transaction ids ------------------------------------------------------------------------


def test_new_tid_format_and_date() -> None:
    tid = ids.new_tid("DUMMY", datetime(2026, 3, 4, 23, 59, tzinfo=UTC))
    assert TID_RE.match(tid)
    assert tid.startswith("DUMMY_20260304_")
    assert ids.new_tid("PG7", datetime(2030, 12, 31, tzinfo=UTC)).startswith("PG7_20301231_")


def test_new_tid_defaults_to_today_in_utc() -> None:
    before = datetime.now(UTC)
    tid = ids.new_tid("DUMMY")
    after = datetime.now(UTC)
    assert TID_RE.match(tid)
    assert tid.split("_")[1] in {before.strftime("%Y%m%d"), after.strftime("%Y%m%d")}


def test_new_tid_draws_vary() -> None:
    day = datetime(2026, 1, 1, tzinfo=UTC)
    tids = [ids.new_tid("DUMMY", day) for _ in range(1000)]
    assert all(TID_RE.match(t) for t in tids)
    assert len(set(tids)) > 1
    # 10**8 values: 1000 draws almost never repeat, and the digits are not stuck low or high.
    assert len(set(tids)) >= 990
    suffixes = [int(t.rsplit("_", 1)[1]) for t in tids]
    assert min(suffixes) < 10_000_000 and max(suffixes) > 90_000_000
    assert all(0 <= s < 100_000_000 for s in suffixes)


def test_new_tid_keeps_the_callers_day() -> None:
    late = datetime(2026, 6, 30, 23, 59, 59, tzinfo=UTC)
    assert ids.new_tid("DUMMY", late).startswith("DUMMY_20260630_")
    assert ids.new_tid("DUMMY", late + timedelta(seconds=1)).startswith("DUMMY_20260701_")
