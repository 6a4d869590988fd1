"""Load generators for POST /api/payment, each in processes of its own.

`wrk` (C, with bench/payment.lua making a unique orderId per request) drives the closed-loop
runs when it is installed: it costs a fraction of the CPU an aiohttp client needs per request,
which matters on a 2-core machine where the load generator shares the cores with the system.
Without wrk, and always for open-loop (paced) runs, which wrk cannot do, this module is the
generator: `python -m bench.loadgen ...` processes (uvloop when installed), started together
at an agreed wall-clock instant, each sending its share.

    python -m bench.loadgen --url URL --key KEY --mid MID --prefix P --mode closed \
        --concurrency 16 --duration 10 --start-at EPOCH
    python -m bench.loadgen ... --mode open --rate 500 --duration 60 --max-inflight 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from engine import loop as event_loop

LUA = Path(__file__).resolve().parent / "payment.lua"
PATH = "/api/payment"


def body(prefix: str, i: int, mid: str) -> bytes:
    """A valid payment request with an orderId unique to (prefix, i)."""
    order = f"{prefix}_{i}"
    return json.dumps(
        {
            "userPublicId": f"USR_{i % 997}",
            "orderId": order,
            "amount": 1000 + i % 1000,
            "echo": {"mid": mid, "orderNumber": order},
        },
        separators=(",", ":"),
    ).encode()


# --- the child process -------------------------------------------------------------------


class _Child:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.url = args.url.rstrip("/") + PATH
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {args.key}"}
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.late: list[float] = []
        self.skipped = 0
        self.inflight = 0
        self.next_i = 0

    async def one(self, session: aiohttp.ClientSession, i: int) -> None:
        self.inflight += 1
        started = time.perf_counter()
        try:
            async with session.post(
                self.url, data=body(self.args.prefix, i, self.args.mid), headers=self.headers
            ) as resp:
                await resp.read()
                self.statuses[str(resp.status)] += 1
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.statuses[type(exc).__name__] += 1
        finally:
            self.inflight -= 1
        self.latencies.append((time.perf_counter() - started) * 1000)

    async def closed(self, session: aiohttp.ClientSession, end: float) -> None:
        async def lane() -> None:
            while time.monotonic() < end:
                i = self.next_i
                self.next_i += 1
                await self.one(session, i)

        await asyncio.gather(*(lane() for _ in range(self.args.concurrency)))

    async def open(self, session: aiohttp.ClientSession, start: float) -> None:
        rate, n = self.args.rate, int(self.args.rate * self.args.duration)
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        while i < n:
            now = time.monotonic()
            # Everything due by now goes out now; lateness is recorded (open loop).
            while i < n and start + i / rate <= now:
                self.late.append((now - (start + i / rate)) * 1000)
                if self.inflight >= self.args.max_inflight:
                    self.skipped += 1
                else:
                    task = asyncio.create_task(self.one(session, i))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                i += 1
            if i < n:
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        # Answers still in flight get the client timeout at most.
        if tasks:
            await asyncio.wait(tasks, timeout=self.args.timeout + 1)

    async def run(self) -> dict[str, Any]:
        a = self.args
        limit = a.concurrency if a.mode == "closed" else a.max_inflight
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit)
        timeout = aiohttp.ClientTimeout(total=a.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            wait = a.start_at - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            start_lag = max(0.0, time.time() - a.start_at)
            start = time.monotonic()
            if a.mode == "closed":
                await self.closed(session, start + a.duration)
            else:
                await self.open(session, start)
            elapsed = time.monotonic() - start
        late = sorted(self.late)
        return {
            "requests": sum(self.statuses.values()),
            "statuses": dict(self.statuses),
            "latencies_ms": [round(x, 3) for x in self.latencies],
            "duration_s": elapsed,
            "start_lag_s": start_lag,
            "skipped": self.skipped,
            "late_p50_ms": late[len(late) // 2] if late else 0.0,
            "late_p99_ms": late[int(len(late) * 0.99)] if late else 0.0,
        }


def _child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--mid", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--mode", choices=["closed", "open"], required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--max-inflight", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    result = event_loop.run(_Child(args).run())
    # The event loop may have left stdout non-blocking; a large result must not be cut short.
    os.set_blocking(sys.stdout.fileno(), True)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


# --- the parent side ---------------------------------------------------------------------


@dataclass
class LoadResult:
    """What one load run did, as seen by the client."""

    tool: str
    requests: int
    ok: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int] = field(default_factory=dict)
    late_p99_ms: float = 0.0
    skipped: int = 0
    late_100: int = 0  # paced wrk: requests sent over 100 ms after their slot

    @property
    def ok_per_s(self) -> float:
        """2xx answers per second, by the client's count."""
        return self.ok / self.duration_s if self.duration_s else 0.0


def wrk_path() -> str | None:
    """The wrk binary, if installed (`apt-get install -y wrk`)."""
    return shutil.which("wrk")


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


async def run_wrk(
    url: str,
    key: str,
    mid: str,
    prefix: str,
    *,
    concurrency: int,
    duration: float,
    threads: int = 2,
    rate: float = 0.0,
) -> LoadResult:
    """A wrk run with `concurrency` connections: closed-loop, or paced at `rate` per second.

    Paced, the connections only carry the schedule: a free one waits for the next send slot
    (bench/payment.lua), and `late` counts the requests that went more than 100 ms after
    their slot because every connection was busy.
    """
    exe = wrk_path()
    assert exe, "wrk is not installed"
    threads = min(threads, concurrency)
    args = [
        exe,
        "-t",
        str(threads),
        "-c",
        str(concurrency),
        "-d",
        f"{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url.rstrip("/") + PATH,
        "--",
        prefix,
        key,
        mid,
    ]
    env = os.environ | (
        {"BENCH_WRK_RATE": str(rate), "BENCH_WRK_THREADS": str(threads)} if rate > 0 else {}
    )
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), duration + 60)
    text = out.decode()
    match = re.search(r"^BENCH_JSON (\{.*\})$", text, re.MULTILINE)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {text[-2000:]} {err.decode()[-2000:]}")
    r = json.loads(match.group(1))
    errors = {k: int(r[k]) for k in ("connect", "read", "write", "status", "timeout") if r[k]}
    return LoadResult(
        tool="wrk paced" if rate > 0 else "wrk",
        requests=r["requests"],
        ok=r["requests"] - r["status"],
        duration_s=r["duration_us"] / 1e6,
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        errors=errors,
        late_100=r["late_100"],
    )


async def run_aiohttp(
    url: str,
    key: str,
    mid: str,
    prefix: str,
    *,
    mode: str,
    duration: float,
    concurrency: int = 32,
    rate: float = 100.0,
    procs: int = 2,
    max_inflight: int = 2000,
) -> LoadResult:
    """`procs` loadgen processes sharing `concurrency` (closed) or `rate` (open) evenly."""
    procs = max(1, min(procs, concurrency if mode == "closed" else procs))
    start_at = time.time() + 1.5  # room for the children's imports
    children = []
    for k in range(procs):
        share_c = concurrency // procs + (1 if k < concurrency % procs else 0)
        args = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--url",
            url,
            "--key",
            key,
            "--mid",
            mid,
            "--prefix",
            f"{prefix}p{k}",
            "--mode",
            mode,
            "--concurrency",
            str(share_c),
            "--rate",
            str(rate / procs),
            "--duration",
            str(duration),
            "--start-at",
            str(start_at),
            "--max-inflight",
            str(max(1, max_inflight // procs)),
        ]
        children.append(
            await asyncio.create_subprocess_exec(
                *args,
                cwd=Path(__file__).resolve().parent.parent,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    # Read every child at once: a child whose pipe is not being read blocks on its result.
    outputs = await asyncio.wait_for(
        asyncio.gather(*(child.communicate() for child in children)), duration + 90
    )
    results = []
    for child, (out, err) in zip(children, outputs, strict=True):
        if child.returncode != 0:
            raise RuntimeError(f"loadgen failed: {err.decode()[-2000:]}")
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    latencies = sorted(x for r in results for x in r["latencies_ms"])
    statuses: Counter[str] = Counter()
    for r in results:
        statuses.update(r["statuses"])
    ok = sum(n for s, n in statuses.items() if s.isdigit() and 200 <= int(s) < 300)
    return LoadResult(
        tool=f"aiohttp x{procs}",
        requests=sum(statuses.values()),
        ok=ok,
        duration_s=statistics.mean(r["duration_s"] for r in results),
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
        errors={s: n for s, n in statuses.items() if not (s.isdigit() and 200 <= int(s) < 300)},
        late_p99_ms=max(r["late_p99_ms"] for r in results),
        skipped=sum(r["skipped"] for r in results),
    )


if __name__ == "__main__":
    _child_main(sys.argv[1:])
