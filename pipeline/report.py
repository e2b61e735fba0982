"""`newsbeam report`: one self-contained HTML page about an output, built from the output alone.

    _runs/*.json           runs over time, duplicate rates, the latest run's reconciliation, entries per feed per run
    _state/feeds.parquet   feed health
    articles/              articles per hour by language and topic (three columns scanned in batches)
    dead_letter/           dead letters by stage and reason, with a few examples

The page needs no network: charts are SVG drawn here, the style and the small sorting script are inline and allowed
by a Content-Security-Policy that names their hashes, so nothing else can run. Everything that comes from a feed
(names, URLs, errors, raw excerpts) is hostile input and is escaped. Run records are read leniently: a field an
older (or newer) record lacks counts as absent, never as an error.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import hashlib
import html
import json
import logging
import math
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline import state
from pipeline.layout import OutputLayout
from pipeline.summary import ACCOUNTED

_LOG = logging.getLogger("newsbeam")

DEFAULT_SINCE_SECONDS = 7 * 86400
SPARK_RUNS = 30  # entries per run: the sparkline shows a feed's last 30 polls in the period
EXAMPLES = 3  # dead-letter examples per stage and reason
EXCERPT_CHARS = 400
MAX_SERIES = 7  # languages or topics drawn on their own; the rest are "other"
HOURLY_UP_TO = 14 * 86400  # longer periods are charted per day
_BATCH_ROWS = 8192  # dead-letter rows carry up to 4 KB of raw input each: small batches keep memory flat


def write_report(
    output: str, out: str | None = None, since_seconds: float = DEFAULT_SINCE_SECONDS, now: dt.datetime | None = None
) -> str:
    """Build the report of `output` and write it atomically to `out` (default `_report/index.html` in it)."""
    out = out or OutputLayout(output).report_page
    state.write_atomically(out, build_report(output, since_seconds, now).encode("utf-8"))
    return out


def build_report(output: str, since_seconds: float = DEFAULT_SINCE_SECONDS, now: dt.datetime | None = None) -> str:
    """The HTML page for `output`, covering the last `since_seconds` (0: everything)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    cutoff = now - dt.timedelta(seconds=since_seconds) if since_seconds else None
    runs = load_runs(output, cutoff)
    health = load_feed_state(output)
    articles = _guarded(lambda: scan_articles(output, cutoff, now))
    dead = _guarded(lambda: scan_dead_letters(output, cutoff))
    return _render(output, now, cutoff, runs, health, articles, dead)


def _guarded(read):
    """A section's data, or the error that kept it from being read (the rest of the page still renders)."""
    try:
        return read()
    except Exception as err:  # an unreadable dataset spoils one section, never the page
        _LOG.warning("report: %s: %s", type(err).__name__, err)
        return f"{type(err).__name__}: {err}"


# ---------------------------------------------------------------------------------------------------------------- data


@dataclasses.dataclass
class Runs:
    """What the run records of the period say."""

    rows: list[dict[str, Any]]  # one per run, oldest first: started (datetime) and the numbers charted
    latest: dict[str, Any] | None  # the newest record, whole
    feed_entries: dict[str, list[tuple[dt.datetime, int]]]  # feed URL -> (run start, new entries) where polled
    feed_names: dict[str, str]
    unreadable: list[str]


def _num(record: dict[str, Any], key: str) -> float:
    value = record.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _run_row(record: dict[str, Any], started: dt.datetime) -> dict[str, Any]:
    finished = _time(record.get("finished_at"))
    return {
        "run_id": str(record.get("run_id", "")),
        "started": started,
        "entries_read": _num(record, "entries_read"),
        "articles_written": _num(record, "articles_written"),
        "duplicates": _num(record, "duplicates"),
        "near_duplicates": _num(record, "near_duplicates_dropped") + _num(record, "near_duplicates_marked"),
        "already_written": _num(record, "already_written"),
        "dead_letters": _num(record, "entry_dead_letters") + _num(record, "feed_dead_letters"),
        "duration": (finished - started).total_seconds() if finished else None,
        "reconciled": record.get("reconciled"),
        "state": str(record.get("state", "")),
    }


def load_runs(output: str, cutoff: dt.datetime | None) -> Runs:
    """The run records started at or after `cutoff`, oldest first."""
    pattern = FileSystems.join(OutputLayout(output).runs, "*.json")
    try:
        paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    except Exception:  # no _runs yet
        paths = []
    rows, unreadable, feed_entries, names = [], [], collections.defaultdict(list), {}
    latest, latest_key = None, None
    for path in paths:  # each record is reduced to what the page needs at once: a thousand whole ones are large
        try:
            with FileSystems.open(path, compression_type="uncompressed") as handle:
                record = json.loads(handle.read())
        except (OSError, ValueError) as err:
            unreadable.append(f"{path}: {err}")
            continue
        started = _time(record.get("started_at")) if isinstance(record, dict) else None
        if started is None:
            unreadable.append(f"{path}: no started_at")
            continue
        if cutoff is not None and started < cutoff:
            continue
        key = (started, str(record.get("run_id", "")))
        if latest_key is None or key > latest_key:
            latest, latest_key = record, key
        rows.append(_run_row(record, started))
        for feed in record.get("feeds") or []:
            if not isinstance(feed, dict) or not feed.get("feed_url"):
                continue
            url = str(feed["feed_url"])
            if feed.get("name"):
                names[url] = str(feed["name"])
            if feed.get("polled", True):
                feed_entries[url].append((started, int(_num(feed, "new_entries"))))
    rows.sort(key=lambda r: (r["started"], r["run_id"]))
    for polls in feed_entries.values():
        polls.sort(key=lambda p: p[0])
    return Runs(rows, latest, dict(feed_entries), names, unreadable)


def load_feed_state(output: str) -> list[dict[str, Any]] | str:
    """The rows of `_state/feeds.parquet` ([] when there is none), or the error that kept it from being read."""
    path = OutputLayout(output).feed_state
    try:
        if not FileSystems.exists(path):
            return []
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            return pq.read_table(handle).to_pylist()
    except Exception as err:
        return f"{type(err).__name__}: {err}"


def _dataset(path: str) -> ds.Dataset | None:
    if not FileSystems.exists(path):
        return None
    return ds.dataset(path, format="parquet", partitioning="hive")


@dataclasses.dataclass
class ArticleCounts:
    """Articles fetched in the period, counted per time bucket and language / topic."""

    bucket_seconds: int
    by_language: dict[tuple[dt.datetime, str], int]
    by_topic: dict[tuple[dt.datetime, str], int]
    total: int
    first: dt.datetime | None
    last: dt.datetime | None
    span: tuple[float, float] | None = None  # the period charted, in epoch seconds


def scan_articles(output: str, cutoff: dt.datetime | None, now: dt.datetime) -> ArticleCounts:
    """Count the articles fetched since `cutoff` per hour (per day over periods longer than two weeks), by
    language and by topic. Only three columns are read, batch by batch, and each batch is aggregated before the
    next is read, so memory stays flat however many articles the output holds."""
    empty = ArticleCounts(3600, {}, {}, 0, None, None)
    dataset = _dataset(OutputLayout(output).articles)
    if dataset is None or "fetched_at" not in dataset.schema.names:
        return empty
    columns = [c for c in ("fetched_at", "language", "topic") if c in dataset.schema.names]
    where = (ds.field("fetched_at") >= pa.scalar(cutoff, pa.timestamp("us", tz="UTC"))) if cutoff else None
    counts = {"language": collections.Counter(), "topic": collections.Counter()}
    total, first, last = 0, None, None
    for batch in dataset.to_batches(
        columns=columns, filter=where, batch_size=65536, batch_readahead=2, fragment_readahead=1
    ):
        if batch.num_rows == 0:
            continue
        fetched = batch.column("fetched_at")
        hour = pc.floor_temporal(fetched, multiple=1, unit="hour")
        total += batch.num_rows
        lo_b, hi_b = pc.min(fetched).as_py(), pc.max(fetched).as_py()
        first = lo_b if first is None or (lo_b and lo_b < first) else first
        last = hi_b if last is None or (hi_b and hi_b > last) else last
        for key in ("language", "topic"):
            values = batch.column(key) if key in batch.schema.names else pa.nulls(batch.num_rows, pa.string())
            values = pc.fill_null(values, "und" if key == "language" else "unknown")
            grouped = pa.table({"b": hour, "k": values}).group_by(["b", "k"]).aggregate([("k", "count")])
            for b, k, n in zip(grouped["b"].to_pylist(), grouped["k"].to_pylist(), grouped["k_count"].to_pylist()):
                if b is not None:
                    counts[key][(b, k or "")] += n
    lo = cutoff or first
    if lo is None:
        return empty
    size = 3600 if (now - lo).total_seconds() <= HOURLY_UP_TO else 86400
    if size == 86400:  # a long period: hours add up to days (the counts are small: buckets x values)
        for key, counter in counts.items():
            days = collections.Counter()
            for (b, k), n in counter.items():
                days[(b.replace(hour=0), k)] += n
            counts[key] = days
    span = (lo.timestamp() // size * size, (now.timestamp() // size + 1) * size)
    return ArticleCounts(size, dict(counts["language"]), dict(counts["topic"]), total, first, last, span)


@dataclasses.dataclass
class DeadLetterGroup:
    count: int = 0
    examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def scan_dead_letters(output: str, cutoff: dt.datetime | None) -> dict[tuple[str, str], DeadLetterGroup]:
    """Dead letters since `cutoff` by (stage, reason), with the first few of each, read in small batches."""
    dataset = _dataset(OutputLayout(output).dead_letters)
    groups: dict[tuple[str, str], DeadLetterGroup] = collections.defaultdict(DeadLetterGroup)
    if dataset is None:
        return groups
    names = dataset.schema.names
    wanted = ("stage", "reason", "feed_url", "entry_key", "status", "message", "raw_excerpt", "time", "run_id")
    columns = [c for c in wanted if c in names]
    where = None
    if cutoff is not None and "time" in names:
        where = ds.field("time") >= pa.scalar(cutoff, pa.timestamp("us", tz="UTC"))
    for batch in dataset.to_batches(
        columns=columns, filter=where, batch_size=_BATCH_ROWS, batch_readahead=2, fragment_readahead=1
    ):
        stages = batch.column("stage").to_pylist() if "stage" in columns else [""] * batch.num_rows
        reasons = batch.column("reason").to_pylist() if "reason" in columns else [""] * batch.num_rows
        wanted_rows = []
        for i, key in enumerate(zip(stages, reasons)):
            key = (key[0] or "", key[1] or "")
            group = groups[key]
            group.count += 1
            if len(group.examples) + sum(1 for _, k in wanted_rows if k == key) < EXAMPLES:
                wanted_rows.append((i, key))
        if wanted_rows:
            rows = batch.take(pa.array([i for i, _ in wanted_rows])).to_pylist()
            for (_, key), row in zip(wanted_rows, rows):
                if isinstance(row.get("raw_excerpt"), str):
                    row["raw_excerpt"] = row["raw_excerpt"][:EXCERPT_CHARS]
                groups[key].examples.append(row)
    return groups


# ------------------------------------------------------------------------------------------------------------- drawing


def e(value: Any) -> str:
    """Escape anything for HTML text and attribute values (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


_W, _H = 480, 200
_L, _R, _T, _B = 44, 8, 10, 24


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= value:
            return step * exp
    return 10 * exp


def _fmt(value: float) -> str:
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


def _frame(t0: float, t1: float, y_max: float, y_fmt, label: str) -> tuple[list[str], Any, Any]:
    """Axes and grid of a time chart; returns the SVG parts and the x and y scales."""
    x = lambda t: _L + (t - t0) / (t1 - t0) * (_W - _L - _R)  # noqa: E731
    y = lambda v: _T + (1 - v / y_max) * (_H - _T - _B)  # noqa: E731
    parts = [f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="{e(label)}">']
    for i in range(5):
        v = y_max * i / 4
        parts.append(
            f'<line class="grid" x1="{_L}" x2="{_W - _R}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
            f'<text class="tick" x="{_L - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{e(y_fmt(v))}</text>'
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
    label: str, series: list[tuple[str, int, list[tuple[float, float]]]], y_fmt=_fmt, y_max: float | None = None
) -> str:
    """Lines over time (epoch seconds); each series is (name, colour index, points). Points get tooltips while
    there are few of them; a thousand runs draw as one path per series."""
    points = [p for _, _, pts in series for p in pts]
    if not points:
        return '<p class="none">No runs in this period.</p>'
    t0, t1 = _span(p[0] for p in points)
    top = y_max or _nice_max(max(p[1] for p in points))
    parts, x, y = _frame(t0, t1, top, y_fmt, label)
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
                    f"<title>{e(name)} {when:%Y-%m-%d %H:%M}: {e(y_fmt(v))}</title></circle>"
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
    parts, x, y = _frame(t0, t1, _nice_max(max(totals.values())), _fmt, label)
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


# ------------------------------------------------------------------------------------------------------------- the page

_STYLE = """
:root{color-scheme:light;--fg:#1d2430;--muted:#5b6472;--line:#d8dde5;--bad:#b3261e;--warn:#8a5a00;--ok:#1e6b35}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:#f6f7f9}
main{max-width:1120px;margin:0 auto;padding:12px}
h1{font-size:1.35rem;margin:.3rem 0}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}h3{font-size:.95rem;margin:.8rem 0 .2rem}
section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:10px 12px;margin:12px 0}
.meta,.none,.note{color:var(--muted);font-size:.88rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:8px}
.card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:8px 10px}
.card b{display:block;font-size:1.35rem}.card span{color:var(--muted);font-size:.85rem}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:12px}
.chart{width:100%;height:auto;display:block}
.chart .grid{stroke:#e6e9ee;stroke-width:1}.chart .tick{font-size:12px;fill:var(--muted)}
.line{fill:none;stroke-width:1.8}.spark{width:100px;height:22px}
.legend{margin:.2rem 0;font-size:.85rem}.legend span{margin-right:12px;white-space:nowrap}
.key{width:10px;height:10px;margin-right:4px;vertical-align:-1px}
.scroll{overflow-x:auto}table.wide td:first-child{min-width:13em}table.wide td:nth-child(2){min-width:9em}.solo{max-width:560px}table.wide{min-width:860px}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{text-align:left;padding:4px 6px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#eef1f5;position:sticky;top:0}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:after{content:" \\2195";color:#9aa3af}
.url{color:var(--muted);font-size:.8rem;word-break:break-all}
.bad{color:var(--bad);font-weight:600}.warn{color:var(--warn);font-weight:600}.ok{color:var(--ok)}
pre{white-space:pre-wrap;word-break:break-word;background:#f3f4f6;padding:6px;margin:4px 0;font-size:.8rem;max-height:12em;overflow:auto}
details{margin:.4rem 0}summary{cursor:pointer}
.c0{fill:#0072b2}.c1{fill:#e69f00}.c2{fill:#009e73}.c3{fill:#cc79a7}.c4{fill:#56b4e9}.c5{fill:#d55e00}.c6{fill:#f0e442}.c7{fill:#999}
.s0{stroke:#0072b2}.s1{stroke:#e69f00}.s2{stroke:#009e73}.s3{stroke:#cc79a7}.s4{stroke:#56b4e9}.s5{stroke:#d55e00}.s6{stroke:#f0e442}.s7{stroke:#999}
@media (max-width:600px){body{font-size:14px}main{padding:6px}section{padding:8px}.grid2{grid-template-columns:1fr}}
"""

# Click a header to sort by it (again to reverse). The page reads fine without it: the table is ordered already.
_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.tabIndex = 0;
    var sort = function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      var key = function (row) {
        var cell = row.cells[col], v = cell.getAttribute("data-v");
        v = v === null ? cell.textContent.trim() : v;
        return v !== "" && !isNaN(v) ? Number(v) : v.toLowerCase();
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) { return (typeof x === "number" ? -1 : 1) * dir; }
        return (x < y ? -1 : x > y ? 1 : 0) * dir;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { sort(); } });
  });
});
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


# Nothing loads from anywhere (default-src 'none'); only this page's own style and script, by hash, may apply.
_CSP = (
    f"default-src 'none'; style-src {_csp_hash(_STYLE)}; script-src {_csp_hash(_SCRIPT)}; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)


def _iso(value: Any) -> str:
    moment = _time(value)
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "-"


def _ago(value: Any, now: dt.datetime) -> tuple[str, str]:
    """(text, sort key) for a moment: '3h ago' / 'in 20m', with the absolute time for the tooltip."""
    moment = _time(value)
    if moment is None:
        return "never", "0"
    seconds = (now - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 90:
        text = f"{seconds:.0f}s"
    elif seconds < 5400:
        text = f"{seconds / 60:.0f}m"
    elif seconds < 2 * 86400:
        text = f"{seconds / 3600:.0f}h"
    else:
        text = f"{seconds / 86400:.0f}d"
    return (f"in {text}" if future else f"{text} ago"), f"{moment.timestamp():.0f}"


def _epoch(moment: dt.datetime) -> float:
    return moment.timestamp()


def _series_by(counts: dict[tuple[dt.datetime, str], int], other: str) -> list[tuple[str, int, dict[float, int]]]:
    totals = collections.Counter()
    for (_, key), n in counts.items():
        totals[key] += n
    top = [k for k, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_SERIES]]
    series = {k: collections.Counter() for k in top}
    rest = collections.Counter()
    for (bucket, key), n in counts.items():
        (series[key] if key in series else rest)[_epoch(bucket)] += n
    out = [(k, i, dict(series[k])) for i, k in enumerate(top)]
    if rest:
        out.append((other, 7, dict(rest)))
    return out


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{e(title)}</h2>{body}</section>'


def _runs_section(runs: Runs) -> str:
    rows = runs.rows
    if not rows:
        return _section("Runs", '<p class="none">No run records in this period.</p>', "runs")
    t = [_epoch(r["started"]) for r in rows]

    def pts(key):
        return [(ti, r[key]) for ti, r in zip(t, rows) if r[key] is not None]

    exact = [(ti, r["duplicates"] - r["near_duplicates"]) for ti, r in zip(t, rows)]
    charts = [
        (
            "Articles written per run",
            [("articles written", 0, pts("articles_written")), ("entries read", 4, pts("entries_read"))],
        ),
        (
            "Duplicates per run",
            [
                ("exact duplicates", 1, exact),
                ("near duplicates", 3, pts("near_duplicates")),
                ("already written earlier", 2, pts("already_written")),
            ],
        ),
        ("Dead letters per run", [("dead letters (entries + feeds)", 5, pts("dead_letters"))]),
        ("Run duration (seconds)", [("duration", 0, pts("duration"))]),
    ]
    body = (
        '<div class="grid2">'
        + "".join(f"<div><h3>{e(title)}</h3>{line_chart(title, series)}</div>" for title, series in charts)
        + "</div>"
    )
    failed = [r for r in rows if r["reconciled"] is False]
    if failed:
        body += (
            f'<p class="bad">{len(failed)} run(s) did not reconcile: '
            + ", ".join(e(r["run_id"]) for r in failed[-10:])
            + "</p>"
        )
    if runs.unreadable:
        body += '<p class="warn">Unreadable run records: ' + "; ".join(e(u) for u in runs.unreadable[:10]) + "</p>"
    return _section("Runs over time", body, "runs")


def _rates_section(runs: Runs) -> str:
    rows = [r for r in runs.rows if r["entries_read"] > 0]
    if not rows:
        return _section("Duplicate rates", '<p class="none">No run in this period read any entry.</p>', "rates")
    exact = [(_epoch(r["started"]), 100 * (r["duplicates"] - r["near_duplicates"]) / r["entries_read"]) for r in rows]
    near = [(_epoch(r["started"]), 100 * r["near_duplicates"] / r["entries_read"]) for r in rows]
    earlier = [(_epoch(r["started"]), 100 * r["already_written"] / r["entries_read"]) for r in rows]
    top = _nice_max(max(max(v for _, v in exact + near + earlier), 1))
    chart = line_chart(
        "Duplicate rates",
        [("exact duplicates", 1, exact), ("near duplicates", 3, near), ("already written earlier", 2, earlier)],
        y_fmt=lambda v: f"{v:.3g}%",
        y_max=top,
    )
    read = sum(r["entries_read"] for r in rows)
    summary = (
        f'<p class="note">Share of the entries each run read. Over the period: exact '
        f"{100 * sum(r['duplicates'] - r['near_duplicates'] for r in rows) / read:.1f}%, near "
        f"{100 * sum(r['near_duplicates'] for r in rows) / read:.1f}%, already written "
        f"{100 * sum(r['already_written'] for r in rows) / read:.1f}% of {int(read):,} entries read.</p>"
    )
    return _section("Duplicate and near-duplicate rates", f'<div class="solo">{chart}</div>' + summary, "rates")


def _feeds_section(health: list[dict[str, Any]] | str, runs: Runs, now: dt.datetime) -> str:
    if isinstance(health, str):
        return _section("Feed health", f'<p class="bad">Could not read the feed state: {e(health)}</p>', "feeds")
    by_url = {str(h.get("feed_url")): h for h in health if h.get("feed_url")}
    urls = list(by_url) + [u for u in runs.feed_names if u not in by_url]
    if not urls:
        return _section("Feed health", '<p class="none">No feed state yet.</p>', "feeds")
    lines, failing, silent = [], 0, 0
    for url in urls:
        h = by_url.get(url, {})
        polls = runs.feed_entries.get(url, [])
        failures = int(h.get("consecutive_failures") or 0)
        status_code = h.get("last_status")
        if failures:
            status, cls, rank = f"failing ({failures}x)", "bad", 0
            failing += 1
        elif not h:
            status, cls, rank = "no state", "warn", 1
        elif len(polls) >= 2 and not any(n for _, n in polls):
            status, cls, rank = "silent", "warn", 2
            silent += 1
        elif status_code == 304:
            status, cls, rank = "ok (304)", "ok", 3
        else:
            status, cls, rank = "ok", "ok", 3
        if status_code and (failures or status_code not in (200, 304)):
            status += f" · HTTP {status_code}"
        last_new = next((when for when, n in reversed(polls) if n), None)
        success, success_key = _ago(h.get("last_success_at"), now)
        due, due_key = _ago(h.get("next_due_at"), now)
        new_text, new_key = _ago(last_new, now) if last_new else ("not in period", "0")
        trusted = h.get("validators_trusted")
        if not (h.get("etag") or h.get("last_modified")):
            validators = "none"
        else:
            validators = "trusted" if trusted or trusted is None else "distrusted"
        note = h.get("validators_note") or ""
        error = h.get("last_error") or ""
        name = runs.feed_names.get(url, "")
        values = [n for _, n in polls[-SPARK_RUNS:]]
        lines.append(
            (
                (rank, (name or url).lower()),
                f'<tr><td data-v="{e((name or url).lower())}">{e(name) or "-"}<div class="url">{e(url)}</div></td>'
                f'<td data-v="{rank}"><span class="{cls}">{e(status)}</span>'
                + (f'<div class="url">{e(error[:300])}</div>' if error and failures else "")
                + f'</td><td data-v="{success_key}" title="{e(_iso(h.get("last_success_at")))}">{e(success)}</td>'
                f'<td class="n">{failures}</td>'
                f'<td data-v="{due_key}" title="{e(_iso(h.get("next_due_at")))}">{e(due)}'
                f'<div class="url">{e(h.get("next_due_reason") or "")}</div></td>'
                f"<td>{e(validators)}" + (f'<div class="url">{e(note)}</div>' if note else "") + "</td>"
                f'<td data-v="{new_key}">{e(new_text)}</td>'
                f'<td class="n">{int(h.get("total_new_entries") or 0):,}</td>'
                f'<td data-v="{sum(values)}">{sparkline(values)}</td></tr>',
            )
        )
    lines.sort(key=lambda line: line[0])  # failing first, then by name: the order a reader wants without the script
    head = (
        '<tr><th>feed</th><th>status</th><th>last success</th><th class="n">consecutive failures</th>'
        '<th>next due</th><th>validators</th><th>last new entries</th><th class="n">new entries (all time)</th>'
        f"<th>new entries per run (last {SPARK_RUNS} polls)</th></tr>"
    )
    intro = (
        f'<p class="note">{len(urls)} feeds: <span class="bad">{failing} failing</span>, '
        f'<span class="warn">{silent} silent</span> (polled at least twice in the period, nothing new). '
        "Click a column header to sort.</p>"
    )
    table = (
        f'<div class="scroll"><table class="sortable wide"><thead>{head}</thead>'
        f"<tbody>{''.join(row for _, row in lines)}</tbody></table></div>"
    )
    return _section("Feed health", intro + table, "feeds")


def _articles_section(articles: ArticleCounts | str) -> str:
    if isinstance(articles, str):
        return _section("Articles", f'<p class="bad">Could not read the articles: {e(articles)}</p>', "articles")
    per = "hour" if articles.bucket_seconds == 3600 else "day"
    span = f" (the first at {_iso(articles.first)}, the last at {_iso(articles.last)})" if articles.total else ""
    body = (
        f'<p class="note">{articles.total:,} articles fetched in the period{e(span)}, per {per} of their '
        "fetch time (when they arrived).</p>"
    )
    charts = []
    for key, counts, other in (
        ("language", articles.by_language, "other languages"),
        ("topic", articles.by_topic, "other topics"),
    ):
        title = f"Articles per {per} by {key}"
        chart = stacked_bars(title, articles.bucket_seconds, _series_by(counts, other), articles.span)
        totals = collections.Counter()
        for (_, value), n in counts.items():
            totals[value] += n
        if len(totals) > MAX_SERIES:
            every = ", ".join(f"{e(k)} {n:,}" for k, n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))
            chart += f'<p class="note">Every {key}: {every}.</p>'
        charts.append(f"<div><h3>{e(title)}</h3>{chart}</div>")
    body += f'<div class="grid2">{"".join(charts)}</div>'

    return _section(f"Articles per {per}", body, "articles")


def _dead_letters_section(dead: dict[tuple[str, str], DeadLetterGroup] | str) -> str:
    if isinstance(dead, str):
        return _section("Dead letters", f'<p class="bad">Could not read the dead letters: {e(dead)}</p>', "dead")
    if not dead:
        return _section("Dead letters", '<p class="none">No dead letters in this period.</p>', "dead")
    total = sum(g.count for g in dead.values())
    rows, details = [], []
    for (stage, reason), group in sorted(dead.items(), key=lambda kv: (-kv[1].count, kv[0])):
        rows.append(
            f'<tr><td>{e(stage)}</td><td>{e(reason)}</td><td class="n">{group.count:,}</td>'
            f'<td class="n">{100 * group.count / total:.1f}%</td></tr>'
        )
        examples = []
        for ex in group.examples:
            status = f" · HTTP {e(ex.get('status'))}" if ex.get("status") else ""
            examples.append(
                f'<div><div class="url">{e(ex.get("feed_url"))} · {e(ex.get("entry_key") or "(whole feed)")}'
                f"{status} · {e(_iso(ex.get('time')))} · run {e(ex.get('run_id'))}</div>"
                f"<div>{e(ex.get('message'))}</div>"
                + (f"<pre>{e(ex.get('raw_excerpt'))}</pre>" if ex.get("raw_excerpt") else "")
                + "</div>"
            )
        details.append(
            f"<details><summary>{e(stage)} / {e(reason)}: {group.count:,} "
            f"(first {len(group.examples)})</summary>{''.join(examples)}</details>"
        )
    table = (
        '<div class="scroll"><table class="sortable"><thead><tr><th>stage</th><th>reason</th>'
        '<th class="n">count</th><th class="n">share</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    return _section(
        "Dead letters by stage and reason",
        f'<p class="note">{total:,} dead letters in the period.</p>' + table + "<h3>Examples</h3>" + "".join(details),
        "dead",
    )


# The reconciliation is summary.ACCOUNTED; fields a record lacks count as 0, and any other count in the record is
# listed below it, so a field added later is shown even before this page knows its meaning.


def _reconciliation_section(latest: dict[str, Any] | None) -> str:
    if not latest:
        return _section("Latest run", '<p class="none">No run in this period.</p>', "latest")
    read = _num(latest, "entries_read")
    terms = [(k.replace("_", " "), _num(latest, k)) for k in ACCOUNTED]
    rest = read - sum(v for _, v in terms)
    reconciled = latest.get("reconciled")
    verdict = {True: '<span class="ok">reconciled</span>', False: '<span class="bad">NOT reconciled</span>'}.get(
        reconciled, '<span class="warn">no verdict in the record</span>'
    )
    rows = [f'<tr><td>entries read</td><td class="n">{_fmt(read)}</td></tr>']
    rows += [f'<tr><td>= {e(name)}</td><td class="n">{_fmt(v)}</td></tr>' for name, v in terms]
    if rest:
        rows.append(
            f'<tr><td class="warn">not accounted for by the counts above</td><td class="n">{_fmt(rest)}</td></tr>'
        )
    rows.append(f'<tr><td>rows in the files written</td><td class="n">{_fmt(_num(latest, "rows_in_files"))}</td></tr>')
    shown = {"entries_read", "rows_in_files", *ACCOUNTED}
    other = [
        (k, v)
        for k, v in sorted(latest.items())
        if k not in shown and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    other_rows = "".join(f'<tr><td>{e(k.replace("_", " "))}</td><td class="n">{_fmt(v)}</td></tr>' for k, v in other)
    nested = []
    for key, value in sorted(latest.items()):
        if isinstance(value, dict) and value and all(isinstance(v, (int, float)) for v in value.values()):
            items = "".join(
                f'<tr><td>{e(k)}</td><td class="n">{_fmt(v)}</td></tr>'
                for k, v in sorted(value.items(), key=lambda kv: (-kv[1], kv[0]))
            )
            nested.append(
                f"<details><summary>{e(key.replace('_', ' '))} ({len(value)})</summary><table>{items}</table></details>"
            )
    head = (
        f"<p>Run <b>{e(latest.get('run_id'))}</b>, {e(latest.get('state') or '-')}, started "
        f"{e(_iso(latest.get('started_at')))}, finished {e(_iso(latest.get('finished_at')))}: {verdict}.</p>"
    )
    body = (
        head + f'<div class="grid2"><div><h3>Reconciliation</h3><table>{"".join(rows)}</table></div>'
        f"<div><h3>All counts in the record</h3><table>{other_rows}</table></div></div>" + "".join(nested)
    )
    return _section("Latest run", body, "latest")


def _render(
    output: str,
    now: dt.datetime,
    cutoff: dt.datetime | None,
    runs: Runs,
    health: list[dict[str, Any]] | str,
    articles: ArticleCounts | str,
    dead: dict[tuple[str, str], DeadLetterGroup] | str,
) -> str:
    period = f"since {cutoff:%Y-%m-%d %H:%M} UTC" if cutoff else "all time"
    written = sum(r["articles_written"] for r in runs.rows)
    dead_total = sum(g.count for g in dead.values()) if isinstance(dead, dict) else "?"
    failing = sum(1 for h in health if (h.get("consecutive_failures") or 0) > 0) if isinstance(health, list) else "?"
    latest = runs.latest or {}
    reconciled = {True: "yes", False: "NO"}.get(latest.get("reconciled"), "-")
    cards = [
        (len(runs.rows), "runs"),
        (_fmt(written), "articles written"),
        (dead_total if isinstance(dead_total, str) else f"{dead_total:,}", "dead letters"),
        (failing, "feeds failing"),
        (reconciled, "latest run reconciled"),
    ]
    cards_html = "".join(f'<div class="card"><b>{e(v)}</b><span>{e(k)}</span></div>' for v, k in cards)
    sections = [
        _reconciliation_section(runs.latest),
        _runs_section(runs),
        _feeds_section(health, runs, now),
        _articles_section(articles),
        _rates_section(runs),
        _dead_letters_section(dead),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{e(_CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer"><link rel="icon" href="data:,">'
        f"<title>newsbeam report: {e(output)}</title><style>{_STYLE}</style></head><body><main>"
        f'<h1>newsbeam report</h1><p class="meta">{e(output)} · {e(period)} · generated '
        f'{now:%Y-%m-%d %H:%M} UTC</p><div class="cards">{cards_html}</div>'
        + "".join(sections)
        + f"</main><script>{_SCRIPT}</script></body></html>\n"
    )
