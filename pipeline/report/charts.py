"""A small SVG chart kit: lines and stacked bars over time, sparklines, and the escaping everything goes through."""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Iterable
from typing import Any


def e(value: Any) -> str:
    """Escape anything for HTML text and attribute values (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


_W, _H = 480, 200
_L, _R, _T, _B = 44, 8, 10, 24


def nice_max(value: float) -> float:
    """The top of an axis: the first of 1, 2, 2.5, 5, 10 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= value:
            return step * exp
    return 10 * exp


def fmt(value: float) -> str:
    """A number as the page shows it: thousands separated, three significant digits for small fractions."""
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:,.0f}"


_TICK_STEPS = [3600 * h for h in (1, 2, 3, 6, 12)] + [86400 * d for d in (1, 2, 7, 14, 30, 91, 365)]


def _time_ticks(t0: float, t1: float) -> list[tuple[float, str]]:
    step = next((s for s in _TICK_STEPS if (t1 - t0) / s <= 6), _TICK_STEPS[-1])
    start = math.ceil(t0 / step) * step
    ticks, t = [], start
    while t <= t1 and len(ticks) < 8:
        moment = dt.datetime.fromtimestamp(t, dt.timezone.utc)
        ticks.append((t, f"{moment:%m-%d %H:%M}" if step < 86400 else f"{moment:%m-%d}"))
        t += step
    return ticks


def _anchor(x: float) -> str:
    """Tick labels near the chart's edges are aligned inwards, so they are not cut off."""
    return "start" if x < _L + 30 else "end" if x > _W - _R - 30 else "middle"


def _frame(t0: float, t1: float, y_max: float, yfmt, label: str) -> tuple[list[str], Any, Any]:
    """Axes and grid of a time chart; returns the SVG parts and the x and y scales."""
    x = lambda t: _L + (t - t0) / (t1 - t0) * (_W - _L - _R)  # noqa: E731
    y = lambda v: _T + (1 - v / y_max) * (_H - _T - _B)  # noqa: E731
    parts = [f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="{e(label)}">']
    for i in range(5):
        v = y_max * i / 4
        parts.append(
            f'<line class="grid" x1="{_L}" x2="{_W - _R}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
            f'<text class="tick" x="{_L - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{e(yfmt(v))}</text>'
        )
    for t, text in _time_ticks(t0, t1):
        parts.append(
            f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{_T}" y2="{_H - _B}"/>'
            f'<text class="tick" x="{x(t):.1f}" y="{_H - 8}" text-anchor="{_anchor(x(t))}">{e(text)}</text>'
        )
    return parts, x, y


def _span(times: Iterable[float], pad: float = 1800.0) -> tuple[float, float]:
    times = list(times)
    t0, t1 = min(times), max(times)
    return (t0 - pad, t1 + pad) if t1 - t0 < 1 else (t0, t1)


def line_chart(
    label: str, series: list[tuple[str, int, list[tuple[float, float]]]], yfmt=fmt, y_max: float | None = None
) -> str:
    """Lines over time (epoch seconds); each series is (name, colour index, points). Points get tooltips while
    there are few of them; a thousand runs draw as one path per series."""
    points = [p for _, _, pts in series for p in pts]
    if not points:
        return '<p class="none">No runs in this period.</p>'
    t0, t1 = _span(p[0] for p in points)
    top = y_max or nice_max(max(p[1] for p in points))
    parts, x, y = _frame(t0, t1, top, yfmt, label)
    for name, colour, pts in series:
        if not pts:
            continue
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        parts.append(f'<polyline class="line s{colour}" points="{path}"/>')
        if len(pts) <= 200:
            for t, v in pts:
                when = dt.datetime.fromtimestamp(t, dt.timezone.utc)
                parts.append(
                    f'<circle class="dot c{colour}" cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5">'
                    f"<title>{e(name)} {when:%Y-%m-%d %H:%M}: {e(yfmt(v))}</title></circle>"
                )
    parts.append("</svg>")
    return "".join(parts) + _legend((name, colour, "") for name, colour, _ in series)


def stacked_bars(
    label: str,
    bucket_seconds: int,
    series: list[tuple[str, int, dict[float, int]]],
    span: tuple[float, float] | None = None,
) -> str:
    """Stacked bars per time bucket (epoch seconds of the bucket's start), over `span` (default: the data's)."""
    buckets = sorted({t for _, _, values in series for t in values})
    if not buckets:
        return '<p class="none">No articles in this period.</p>'
    totals = {t: sum(values.get(t, 0) for _, _, values in series) for t in buckets}
    t0, t1 = span or (buckets[0], buckets[-1] + bucket_seconds)
    t0, t1 = min(t0, buckets[0]), max(t1, buckets[-1] + bucket_seconds)
    parts, x, y = _frame(t0, t1, nice_max(max(totals.values())), fmt, label)
    width = max(x(t0 + bucket_seconds) - x(t0) - 1, 0.8)
    base = dict.fromkeys(buckets, 0)
    for name, colour, values in series:
        for t in buckets:
            n = values.get(t, 0)
            if not n:
                continue
            top, bottom = y(base[t] + n), y(base[t])
            when = dt.datetime.fromtimestamp(t, dt.timezone.utc)
            parts.append(
                f'<rect class="c{colour}" x="{x(t):.1f}" y="{top:.1f}" width="{width:.1f}" '
                f'height="{bottom - top:.1f}"><title>{e(name)} {when:%Y-%m-%d %H:%M}: {n:,}</title></rect>'
            )
            base[t] += n
    parts.append("</svg>")
    return "".join(parts) + _legend((name, colour, f"{sum(values.values()):,}") for name, colour, values in series)


def _legend(items: Iterable[tuple[str, int, str]]) -> str:
    spans = "".join(
        f'<span><svg class="key" viewBox="0 0 10 10"><rect class="c{c}" width="10" height="10"/></svg>'
        f"{e(name)}{(' ' + e(extra)) if extra else ''}</span>"
        for name, c, extra in items
    )
    return f'<p class="legend">{spans}</p>'


def sparkline(values: list[int]) -> str:
    """A feed's entries per run as a small line (the last SPARK_RUNS polls)."""
    if not values:
        return ""
    top = max(values) or 1
    n = len(values)
    step = 96 / max(n - 1, 1)
    pts = " ".join(f"{2 + i * step:.1f},{20 - v / top * 17:.1f}" for i, v in enumerate(values))
    tip = f"new entries in its last {n} polled run(s): " + ", ".join(map(str, values))
    return (
        f'<svg class="spark" viewBox="0 0 100 22" role="img" aria-label="{e(tip)}"><title>{e(tip)}</title>'
        f'<polyline class="line s0" points="{pts}"/></svg>'
    )
