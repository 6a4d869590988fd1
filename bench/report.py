"""The one table: every figure a median of repeated runs, with its target and PASS/MISS."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


def median(values: list[float]) -> float:
    """The median of the finite values (nan when there are none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(finite) if finite else float("nan")


@dataclass
class Row:
    """One line of the table."""

    section: str
    metric: str
    values: list[float]
    unit: str = ""
    digits: int = 0
    target: str = ""
    verdict: bool | None = None
    note: str = ""

    @property
    def value(self) -> float:
        """The median of the repeats."""
        return median(self.values)

    def fmt(self, v: float) -> str:
        """A number as the table shows it."""
        if v is None or not math.isfinite(v):
            return "n/a"
        return f"{v:,.{self.digits}f}"

    @property
    def result(self) -> str:
        """PASS, MISS, or blank for a line without a target."""
        if self.verdict is None:
            return ""
        return "PASS" if self.verdict else "MISS"


@dataclass
class Table:
    """Rows in order of the issue's list."""

    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        """Append a row and return it."""
        self.rows.append(row)
        return row

    def render(self) -> str:
        """Fixed-width text."""
        head = ("section", "metric", "median", "unit", "runs", "target", "result")
        lines = [head]
        for r in self.rows:
            runs = ", ".join(r.fmt(v) for v in r.values) if len(r.values) > 1 else ""
            metric = r.metric + (f" ({r.note})" if r.note else "")
            lines.append((r.section, metric, r.fmt(r.value), r.unit, runs, r.target, r.result))
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
        out = []
        for k, line in enumerate(lines):
            cells = [
                str(c).rjust(w) if i == 2 else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ]
            out.append("  ".join(cells).rstrip())
            if k == 0:
                out.append("-" * len(out[0]))
        return "\n".join(out)

    def markdown(self) -> str:
        """A Markdown table."""
        out = [
            "| section | metric | median | unit | runs | target | result |",
            "| --- | --- | ---: | --- | --- | --- | --- |",
        ]
        for r in self.rows:
            runs = ", ".join(r.fmt(v) for v in r.values) if len(r.values) > 1 else ""
            metric = r.metric + (f" ({r.note})" if r.note else "")
            out.append(
                f"| {r.section} | {metric} | {r.fmt(r.value)} | {r.unit} | {runs} |"
                f" {r.target} | {r.result} |"
            )
        return "\n".join(out)


def summarize_pyspy(raw: str, top: int = 15) -> str:
    """py-spy's collapsed stacks as two top lists: own (leaf) time and inclusive time."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = idle = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        if frames[-1].startswith(("EpollSelector.select", "select (")):
            idle += count  # the event loop waiting for I/O: not CPU
            continue
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    if not total:
        return "(no samples)"
    out = [
        f"{total} busy samples at 100 Hz ({idle} more waiting in epoll, left out)",
        "",
        "own time:",
    ]
    for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  {100 * n / total:5.1f}%  {name}")
    out += ["", "inclusive time (below the event loop):"]
    # The event loop's own chain is in nearly every sample and says nothing.
    chain = {n for n, c in incl.items() if c >= 0.85 * total}
    for name, n in sorted(incl.items(), key=lambda kv: -kv[1])[: top * 2 + len(chain)]:
        if name in chain:
            continue
        out.append(f"  {100 * n / total:5.1f}%  {name}")
    return "\n".join(out)


def _frame(frame: str) -> str:
    """`func (path/to/file.py:123)` -> `func (to/file.py)`: lines merged, paths shortened."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    parts = path.split("/")
    return f"{name} ({'/'.join(parts[-2:])})" if path else name
