"""The SSE bench's table, CPU lines and results file (bench/SSE.md)."""

from __future__ import annotations

import math
import shlex
from datetime import datetime
from typing import Any

from bench.report import Row, Table

TARGET_P99_MS = 50.0
ROLES = ("web", "worker", "simulator", "postgres", "streams", "bench")


def pct(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.5) - 1))]


def table(f: dict[str, float], idle_seconds: float, rate: float) -> Table:
    """One line per figure the issue asks for, and the context they need."""
    t = Table()
    nan = float("nan")
    open_ = f.get("open", nan)
    t.add(Row("streams", "streams open on one web process", [open_], "streams"))
    t.add(Row("streams", "time to open them all (info)", [f.get("open_seconds", nan)], "s", 1))
    per = f.get("per_stream", nan) / 1024
    t.add(Row("memory", "web RSS per open stream", [per], "KiB", 1))
    mib = [f.get("rss_before", nan) / 2**20, f.get("rss_after", nan) / 2**20]
    t.add(
        Row(
            "memory",
            "web RSS before / after opening (info)",
            [mib[1]],
            "MiB",
            1,
            note=f"before {mib[0]:.1f} MiB",
        )
    )
    idle = f.get("idle_web_cpu", nan)
    label = f"web CPU, all streams open ({open_:,.0f}), {idle_seconds:.0f} s"
    t.add(Row("idle", label, [idle], "% of a core", 2))
    p99 = f.get("p99", nan)
    ok = None if math.isnan(p99) else p99 <= TARGET_P99_MS
    final = f"{f.get('final', nan):,.0f} final payments"
    t.add(
        Row(
            "event",
            f"commit -> event p50, confirms at {rate:,.0f}/s",
            [f.get("p50", nan)],
            "ms",
            1,
            note=final,
        )
    )
    t.add(
        Row(
            "event",
            f"commit -> event p99, confirms at {rate:,.0f}/s",
            [p99],
            "ms",
            1,
            f"<= {TARGET_P99_MS:.0f} ms",
            ok,
        )
    )
    t.add(Row("event", "commit -> event max (info)", [f.get("max", nan)], "ms", 1))
    missing = f.get("missing", nan)
    t.add(
        Row(
            "event",
            "final payments whose event never came",
            [missing],
            "",
            0,
            "0",
            None if math.isnan(missing) else missing == 0,
        )
    )
    t.add(Row("event", "payments settled per second (info)", [f.get("settled_rate", nan)], "/s", 0))
    t.add(
        Row(
            "event",
            "confirm answered p50 / p99 (info)",
            [f.get("confirm_p50", nan)],
            "ms",
            1,
            note=f"p99 {f.get('confirm_p99', nan):.1f} ms",
        )
    )
    t.add(
        Row(
            "event",
            "confirm answered -> final event p50 / p99 (info)",
            [f.get("to_event_p50", nan)],
            "ms",
            1,
            note=f"p99 {f.get('to_event_p99', nan):.1f} ms",
        )
    )
    t.add(
        Row(
            "event",
            "streams still open after settling (info)",
            [f.get("still_open", nan)],
            "streams",
        )
    )
    return t


def cpu_text(cpu: dict[str, dict[str, float]]) -> str:
    """CPU by process kind in each window, in % of one core (2 cores = 200 %)."""
    head = f"{'CPU, % of one core':<22}" + "".join(f"{r:>10}" for r in (*ROLES, "machine"))
    lines = [
        "streams: the process holding the streams; bench: the orchestrator and the payer (the"
        " confirms' client); machine: every process, other people's included",
        head,
    ]
    for window, roles in cpu.items():
        cells = "".join(f"{roles.get(r, float('nan')):>10.1f}" for r in (*ROLES, "machine"))
        lines.append(f"{window:<22}{cells}")
    return "\n".join(lines)


def waits_text(waits: dict[str, int], top: int = 12) -> str:
    """The busiest PostgreSQL sessions' waits while settling, most seen first."""
    total = sum(waits.values()) or 1
    lines = ["PostgreSQL's active sessions while settling (samples every 0.1 s): wait | query"]
    for key, n in sorted(waits.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{n:>7} {100 * n / total:5.1f}%  {key}")
    return "\n".join(lines)


def markdown(cfg: Any, run: Any, t: Table, info: dict[str, str], started: datetime) -> str:
    """bench/SSE.md: the command, the machine, the table, CPU, notes, and how it measures."""
    command = "python -m bench.sse " + shlex.join(cfg.argv)
    lines = [
        "# Checkout SSE streams on one web process",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC: `{command.strip()}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        f"Sizes: {cfg.streams:,} streams stay open, {cfg.payments:,} more sessions with a "
        f"stream each are confirmed at {cfg.rate:,.0f}/s; idle window {cfg.idle_seconds:.0f} "
        f"s; {cfg.workers} workers; settings changed: "
        + ", ".join(f"{k}={v}" for k, v in run.system.extra_env.items()),
        "",
        t.markdown(),
        "",
        "```",
        cpu_text(run.cpu),
        "```",
        "",
    ]
    lines += [f"- {note}" for note in run.notes]
    lines += ["", waits_text(run.waits)]
    lines += ["", HOW]
    return "\n".join(lines) + "\n"


HOW = """## How it is measured

See bench/README.md (`python -m bench.sse`). In short: RSS is psutil's for the web process,
before the first stream and 3 s after the last one opened, divided by the streams. Idle CPU
is the web process's user + system time over the window with every stream open and nothing
else sent (the 15 s heartbeats are what it does). Commit -> event is the wall-clock arrival
of each session's final event in the streams process minus its payment's `processed_at`,
which the worker's settling statement sets to `now()` (the transaction's start): the figure
includes that statement and its commit, so it is an upper bound of commit -> event. Both
clocks are this machine's. The streams process's own event loop is in the figure too.
"""
