"""`python -m tests.chaos --payments 2000`: run the chaos suite and print its table."""

from __future__ import annotations

import argparse
import asyncio
import sys

from tests.chaos.harness import ChaosConfig, run


def main() -> int:
    """Parse options, run, print, and exit non-zero if an invariant broke."""
    parser = argparse.ArgumentParser(description=__doc__)
    defaults = ChaosConfig()
    parser.add_argument("--payments", type=int, default=defaults.payments)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--kill-every", type=float, default=defaults.kill_every)
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--rate", type=float, default=defaults.rate)
    parser.add_argument("--inquiry-fault-rate", type=float, default=defaults.inquiry_fault_rate)
    parser.add_argument("--outage-seconds", type=float, default=defaults.outage_seconds)
    # --no-charge-every-call: an acquirer that deduplicates by reference (kinder than many).
    parser.add_argument(
        "--charge-every-call",
        action=argparse.BooleanOptionalAction,
        default=defaults.charge_every_call,
    )
    args = parser.parse_args()
    cfg = ChaosConfig(
        payments=args.payments,
        workers=args.workers,
        concurrency=args.concurrency,
        kill_every=args.kill_every,
        fault_rate=args.fault_rate,
        seed=args.seed,
        rate=args.rate,
        inquiry_fault_rate=args.inquiry_fault_rate,
        outage_seconds=args.outage_seconds,
        charge_every_call=args.charge_every_call,
    )
    report = asyncio.run(run(cfg))
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
