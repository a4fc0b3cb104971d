"""Charts drawn by the server as SVG (no chart library in the browser): a line of values over time with
its axes' extremes labelled, and an optional marker line (e.g. when an incident opened)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Series:
    points: Sequence[tuple[datetime, float]]
    label: str
    unit: str = ""


def line_chart(series: Series, marker: datetime | None = None, width: int = 640, height: int = 200) -> Markup:
    pad_left, pad_right, pad_top, pad_bottom = 48, 12, 12, 28
    points = [(t, v) for t, v in series.points if v is not None]
    label = escape(series.label)
    if not points:
        return Markup(f'<svg class="chart empty" width="{width}" height="40" role="img" aria-label="{label}">'
                      f'<text x="8" y="24">{label}: –</text></svg>')
    times = [t.timestamp() for t, _ in points]
    values = [float(v) for _, v in points]
    t0, t1 = min(times), max(times)
    if marker is not None:
        t0, t1 = min(t0, marker.timestamp()), max(t1, marker.timestamp())
    v0, v1 = min(values), max(values)
    if v1 == v0:
        v0, v1 = v0 - 1, v1 + 1
    span_t = (t1 - t0) or 1.0
    inner_w, inner_h = width - pad_left - pad_right, height - pad_top - pad_bottom

    def x(t: float) -> float:
        return pad_left + (t - t0) / span_t * inner_w

    def y(v: float) -> float:
        return pad_top + (1 - (v - v0) / (v1 - v0)) * inner_h

    path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, values, strict=True))
    unit = escape(series.unit)
    parts = [
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{label}" data-points="{len(points)}">',
        f'<polyline fill="none" stroke="#0b3d91" stroke-width="1.5" points="{path}"/>',
        f'<text x="4" y="{pad_top + 10}" font-size="11">{v1:.4g}{unit}</text>',
        f'<text x="4" y="{pad_top + inner_h}" font-size="11">{v0:.4g}{unit}</text>',
        f'<text x="{pad_left}" y="{height - 8}" font-size="11">{_when(points[0][0])}</text>',
        f'<text x="{width - pad_right}" y="{height - 8}" font-size="11" text-anchor="end">'
        f"{_when(points[-1][0])}</text>",
    ]
    if marker is not None:
        mx = x(marker.timestamp())
        parts.append(f'<line class="marker" x1="{mx:.1f}" x2="{mx:.1f}" y1="{pad_top}" y2="{pad_top + inner_h}" '
                     'stroke="#a4161a" stroke-dasharray="4 3"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _when(time: datetime) -> Markup:
    return escape(time.strftime("%Y-%m-%d %H:%M"))


def bar_chart(bars: Sequence[tuple[str, float]], label: str, width: int = 640, bar_height: int = 18) -> Markup:
    """Horizontal bars, one per (label, value), the value written at the end of each."""
    height = max(1, len(bars)) * (bar_height + 4) + 4
    top = max((value for _, value in bars), default=0) or 1
    parts = [f'<svg class="chart bars" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(label)}" data-bars="{len(bars)}">']
    for index, (name, value) in enumerate(bars):
        y = 4 + index * (bar_height + 4)
        length = (width - 260) * value / top
        parts.append(f'<text x="0" y="{y + bar_height - 5}" font-size="12">{escape(name)}</text>'
                     f'<rect x="180" y="{y}" width="{length:.1f}" height="{bar_height}" fill="#1f4e3d"/>'
                     f'<text x="{186 + length:.1f}" y="{y + bar_height - 5}" font-size="12">{value:g}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
