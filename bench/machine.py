"""What machine a run was on, and how busy other people's processes kept it meanwhile."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


def describe() -> dict[str, str]:
    """nproc, memory, CPU model, kernel, Python and tool versions."""
    model = "?"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info = {
        "nproc": str(os.cpu_count()),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        lines = (out.stdout or out.stderr).splitlines()
        info["wrk"] = lines[0].split(" Copyright")[0].removeprefix("wrk ") if lines else "?"
    head = Path(__file__).resolve().parent.parent / ".git" / "HEAD"
    if head.exists():
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref_file = head.parent / ref[5:]
            ref = ref_file.read_text().strip() if ref_file.exists() else ref
        info["commit"] = ref[:12] + " (working tree may have uncommitted changes)"
    return info


def _tree_cpu(root: psutil.Process) -> float:
    """CPU seconds of a live process, its reaped children and its live descendants."""
    total = 0.0
    try:
        t = root.cpu_times()
        total += t.user + t.system + t.children_user + t.children_system
        for child in root.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                continue
    except psutil.Error:
        pass
    return total


@dataclass
class CpuSnapshot:
    """Machine-wide busy CPU seconds, and the part this run's processes used."""

    at: float
    busy: float
    ours: float


def snapshot(postmaster_pid: int | None) -> CpuSnapshot:
    """Now: busy CPU seconds of the machine and of this run (itself, children, PostgreSQL)."""
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)
    me = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = me.ru_utime + me.ru_stime + reaped.ru_utime + reaped.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            c = child.cpu_times()
            ours += c.user + c.system
        except psutil.Error:
            continue
    if postmaster_pid:
        with contextlib.suppress(psutil.Error):
            ours += _tree_cpu(psutil.Process(postmaster_pid))
    return CpuSnapshot(time.time(), busy, ours)


def foreign_load(start: CpuSnapshot, end: CpuSnapshot) -> tuple[float, float]:
    """CPU seconds used by processes outside this run, and that as a share of all cores."""
    other = max(0.0, (end.busy - start.busy) - (end.ours - start.ours))
    capacity = (end.at - start.at) * (os.cpu_count() or 1)
    return other, (other / capacity if capacity > 0 else 0.0)


def role_cpu(pids: dict[str, list[int]], postmaster_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of each role's live processes, PostgreSQL's tree, and the machine."""
    out: dict[str, float] = {}
    for role, role_pids in pids.items():
        total = 0.0
        for pid in role_pids:
            with contextlib.suppress(psutil.Error):
                c = psutil.Process(pid).cpu_times()
                total += c.user + c.system
        out[role] = total
    if postmaster_pid:
        with contextlib.suppress(psutil.Error):
            out["postgres"] = _tree_cpu(psutil.Process(postmaster_pid))
    # This process and the children it reaped: the load generators (wrk, loadgen, pgbench).
    me = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["bench"] = me.ru_utime + me.ru_stime + reaped.ru_utime + reaped.ru_stime
    t = psutil.cpu_times()
    out["machine"] = t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)
    out["at"] = time.monotonic()
    return out
