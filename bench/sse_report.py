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


def table(
    f: dict[str, float], idle_seconds: float, rate: float, phases: tuple[str, ...] = ("confirm",)
) -> Table:
    """One line per figure the issue asks for, and the context they need, for each phase run
    (`confirm`: finals as the confirms come; `drain`: finals at the workers' drain rate)."""
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
    if "confirm" in phases:
        _confirm_rows(t, f, rate)
    if "drain" in phases:
        _drain_rows(t, f)
    return t


def _drain_rows(t: Table, f: dict[str, float]) -> None:
    nan = float("nan")
    p99 = f.get("drain_p99", nan)
    ok = None if math.isnan(p99) else p99 <= TARGET_P99_MS
    rate = f.get("drain_rate", nan)
    final = f"{f.get('drain_final', nan):,.0f} final payments at {rate:,.0f}/s"
    t.add(
        Row(
            "drain",
            "streams open when the drain starts (info)",
            [f.get("drain_open", nan)],
            "streams",
        )
    )
    t.add(
        Row("drain", "commit -> event p50, drained", [f.get("drain_p50", nan)], "ms", 1, note=final)
    )
    t.add(
        Row(
            "drain",
            "commit -> event p99, drained",
            [p99],
            "ms",
            1,
            f"<= {TARGET_P99_MS:.0f} ms",
            ok,
        )
    )
    t.add(Row("drain", "commit -> event max, drained (info)", [f.get("drain_max", nan)], "ms", 1))
    t.add(
        Row(
            "drain",
            "settling statement's start -> event p50 / p99, drained (info)",
            [f.get("drain_start_p50", nan)],
            "ms",
            1,
            note=f"p99 {f.get('drain_start_p99', nan):.1f} ms",
        )
    )
    missing = f.get("drain_missing", nan)
    t.add(
        Row(
            "drain",
            "drained payments whose event never came",
            [missing],
            "",
            0,
            "0",
            None if math.isnan(missing) else missing == 0,
        )
    )
    t.add(Row("drain", "final payments per second, drained", [rate], "/s", 0))
    t.add(
        Row(
            "drain",
            "confirms per second before the drain (info)",
            [f.get("drain_confirm_rate", nan)],
            "/s",
            0,
        )
    )
    t.add(
        Row(
            "drain",
            "streams still open after the drain (info)",
            [f.get("drain_still_open", nan)],
            "streams",
        )
    )


def _confirm_rows(t: Table, f: dict[str, float], rate: float) -> None:
    nan = float("nan")
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
    t.add(
        Row(
            "event",
            "settling statement's start -> event p50 / p99 (info)",
            [f.get("start_p50", nan)],
            "ms",
            1,
            note=f"p99 {f.get('start_p99', nan):.1f} ms",
        )
    )
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


def waits_text(waits: dict[str, int], window: str = "settling", top: int = 12) -> str:
    """The busiest PostgreSQL sessions' waits in a window, most seen first."""
    total = sum(waits.values()) or 1
    lines = [f"PostgreSQL's active sessions while {window} (samples every 0.1 s): wait | query"]
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
        f"Sizes: {cfg.streams:,} streams stay open; "
        + _phases_text(cfg)
        + f"; idle window {cfg.idle_seconds:.0f} s; {cfg.workers} workers; settings changed: "
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
    for window, waits in run.waits.items():
        lines += ["", waits_text(waits, window)]
    for text in run.statements.values():
        lines += ["", "```", text, "```"]
    lines += ["", HOW]
    return "\n".join(lines) + "\n"


def _phases_text(cfg: Any) -> str:
    parts = []
    if "confirm" in cfg.phases:
        parts.append(
            f"phase confirm: {cfg.payments:,} more sessions with a stream each are confirmed at "
            f"{cfg.rate:,.0f}/s"
        )
    if "drain" in cfg.phases:
        parts.append(
            f"phase drain: {cfg.drain_payments:,} more sessions with a stream each are confirmed "
            "with the workers stopped, then drained by them"
        )
    return "; ".join(parts)


HOW = """## How it is measured

See bench/README.md (`python -m bench.sse`). In short: RSS is psutil's for the web process,
before the first stream and 3 s after the last one opened, divided by the streams. Idle CPU
is the web process's user + system time over the window with every stream open and nothing
else sent (the 15 s heartbeats are what it does). Commit -> event is the wall-clock arrival
of each session's final event in the streams process minus the commit of its final state:
PostgreSQL runs with track_commit_timestamp on, and the commit is pg_xact_commit_timestamp of
the session row's xmin (the settling transaction's: its trigger raises the session's
version). The line "settling statement's start -> event" is the measure of the earlier runs
(from the payment's `processed_at`, the settling statement's `now()`: it adds that
statement and its commit, an upper bound). Both clocks are this machine's. The streams
process's own event loop is in the figure too. In the drain phase the sessions are confirmed
while the workers are stopped, then the workers start and settle them as fast as they can:
the finals per second is finals / (last commit - first claim).
"""
