"""Charts as server-rendered SVG: no script, no library, readable without JavaScript.

Each chart is a <figure> with an SVG of bars (or a line) and, for screen readers and for
exact numbers, the same figures as a table in a <details>.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 480, 200
LEFT, BOTTOM, TOP = 48, 28, 10


def _scale(values: Sequence[float | None]) -> float:
    top = max((v for v in values if v is not None), default=0.0)
    return float(top) if top > 0 else 1.0


def bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    fmt: Callable[[float], str],
    *,
    top: float | None = None,
    css: str = "bar",
) -> Markup:
    """A vertical bar chart of `values` (None: no data) under `labels`, with its table."""
    high = top if top is not None else _scale(values)
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / max(1, len(values))
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 8}" '
        f'y2="{TOP + plot_h}"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{escape(fmt(high))}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    every = max(1, len(labels) // 8)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = LEFT + i * step
        if value:
            h = max(1.0, plot_h * min(value, high) / high)
            parts.append(
                f'<rect class="{css}" x="{x + step * 0.15:.1f}" y="{TOP + plot_h - h:.1f}" '
                f'width="{step * 0.7:.1f}" height="{h:.1f}"><title>{escape(label)}: '
                f"{escape(fmt(value))}</title></rect>"
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    shown = [fmt(v) if v is not None else "-" for v in values]
    return _figure(title, "".join(parts), labels, shown)


def _figure(title: str, svg: str, labels: Sequence[str], shown: Sequence[str]) -> Markup:
    rows = "".join(
        f'<tr><th scope="row">{escape(label)}</th><td>{escape(v)}</td></tr>'
        for label, v in zip(labels, shown, strict=True)
    )
    return Markup(
        f'<figure class="chart card"><figcaption><strong>{escape(title)}</strong></figcaption>'
        f"{svg}<details><summary>{escape(title)} (table)</summary><table>"
        f"<tbody>{rows}</tbody></table></details></figure>"
    )
