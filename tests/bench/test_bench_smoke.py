"""The benchmark harness works: a tiny `python -m bench --smoke` run prints its whole table.

Not a performance test: no figure is asserted, only that every phase ran and reported (the
machine may be busy with anything). It starts the real processes on an own embedded
PostgreSQL, like the e2e tests, and takes well under a minute.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

# One line per part of the list (the table's "metric" column).
EXPECTED = (
    "pgbench one-row INSERT, c=32",
    "POST /api/payment accepted, c=32",
    "intake / pgbench, c=32",
    "ceiling: aiohttp doing nothing (bench/hello.py), c=32",
    "engine: all final + webhooks delivered",
    "pgqueuer: drain no-op jobs",
    "pgqueuer: drain jobs making a payment's two HTTP calls",
    "accept -> webhook p50 at 100/s",
    "sustained intake -> webhook delivered",
    "claim_pending median, 2,000 rows",
    "claim_pending median, 5,000 rows",
    "worker RSS growth after warm-up",
)


@pytest.mark.timeout(150)
def test_smoke_run_prints_the_whole_table(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    print(proc.stdout)  # the table, shown with -s or when the test fails
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = proc.stdout
    assert "section" in table and "result" in table
    missing = [m for m in EXPECTED if m not in table]
    if "pgqueuer (not installed)" in table:  # the bench extra is optional for `make test`
        missing = [m for m in missing if not m.startswith("pgqueuer")]
    assert not missing, f"lines missing from the table: {missing}\n{proc.stderr[-3000:]}"
    # Every measured line has a number (n/a means a phase did not produce it).
    for line in table.splitlines():
        if any(m in line for m in EXPECTED) and "pgqueuer" not in line:
            assert " n/a " not in line, f"no figure: {line}\n{proc.stderr[-3000:]}"
    text = results.read_text()
    assert "nproc" in text and "claim_pending plan" in text
