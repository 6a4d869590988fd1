"""bench.workercpu works: a tiny run drains every payment and prints the workers' CPU.

Not a performance test: no figure is compared with a target. A round that leaves a payment
not final or a webhook undelivered fails the run (the tool checks each in the database), so
exit status 0 means every round drained everything. It starts the real processes on an own
embedded PostgreSQL, like the e2e tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_a_tiny_run_against_the_same_checkout_reports_both_and_their_ratio() -> None:
    tiny = ["--payments", "40", "--rounds", "1", "--warmup", "10", "--compare", str(ROOT)]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.workercpu", *tiny],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"round 1, this checkout: worker \d+\.\d+ ms CPU per payment", out), out
    assert re.search(r"round 1, compared: worker \d+\.\d+ ms CPU per payment", out), out
    assert re.search(r"this checkout / compared: \d+\.\d+", out), out
