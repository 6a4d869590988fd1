"""The SSE bench works: a tiny `python -m bench.sse` run prints every figure and writes them.

Not a performance test: no timing is asserted (speed lives in the bench), only that the run
opened its streams, settled its payments, saw each final event, and reported every line with
a number. It starts the real processes on an own embedded PostgreSQL, like the e2e tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

FIGURES = (
    "streams open on one web process",
    "web RSS per open stream",
    "web CPU, all streams open",
    "commit -> event p50",
    "commit -> event p99",
    "final payments whose event never came",
    "confirm answered -> final event",
)


def _figure(table: str, metric: str) -> str:
    """The median column of the line whose metric starts with `metric`."""
    for line in table.splitlines():
        if metric in line:
            after = line.split(metric, 1)[1]
            cells = [c for c in after.split("  ") if c.strip()]
            # The metric's note, if any, comes first in parentheses; then the median.
            values = [c.strip() for c in cells if not c.strip().startswith("(")]
            return values[0]
    raise AssertionError(f"no line {metric!r} in\n{table}")


@pytest.mark.timeout(150)
def test_tiny_sse_run_reports_every_figure(tmp_path: Path) -> None:
    results = tmp_path / "SSE.md"
    args = ["--streams", "20", "--payments", "5", "--rate", "50", "--idle-seconds", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.sse", *args, "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    print(proc.stdout)  # the table, shown with -s or when the test fails
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = proc.stdout
    for metric in FIGURES:
        assert _figure(table, metric) != "n/a", f"no figure for {metric}\n{proc.stderr[-3000:]}"
    # 20 streams stay open and 5 more were paid: all 25 opened, and every final event came.
    assert _figure(table, "streams open on one web process") == "25"
    assert _figure(table, "final payments whose event never came") == "0"
    assert _figure(table, "streams still open after settling") == "20"
    text = results.read_text()
    assert "python -m bench.sse --streams 20" in text and "nproc" in text
    assert "ENGINE_CHECKOUT_STREAMS_PER_ADDRESS" in text


DRAIN_FIGURES = (
    "commit -> event p50, drained",
    "commit -> event p99, drained",
    "drained payments whose event never came",
    "final payments per second, drained",
    "confirms per second before the drain",
)


@pytest.mark.timeout(150)
def test_tiny_drain_run_reports_every_figure(tmp_path: Path) -> None:
    """`--phases drain`: the sessions are confirmed with the workers stopped, then drained;
    every drained payment's final event comes, and the drain's lines have numbers."""
    results = tmp_path / "SSE.md"
    args = ["--streams", "20", "--phases", "drain", "--drain-payments", "10"]
    args += ["--idle-seconds", "1", "--statements"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.sse", *args, "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = proc.stdout
    for metric in DRAIN_FIGURES:
        assert _figure(table, metric) != "n/a", f"no figure for {metric}\n{proc.stderr[-3000:]}"
    assert _figure(table, "streams open on one web process") == "20"
    assert _figure(table, "streams open when the drain starts") == "30"
    assert _figure(table, "drained payments whose event never came") == "0"
    assert _figure(table, "streams still open after the drain") == "20"
    assert "commit -> event p50, confirms" not in table  # the confirm phase did not run
    assert "before the workers started" not in table  # they were held back
    assert "Statements while draining" in table
    text = results.read_text()
    assert "python -m bench.sse --streams 20 --phases drain" in text
    assert "phase drain: 10 more sessions" in text
