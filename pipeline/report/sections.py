"""The sections of the report: the latest run's reconciliation, runs over time, feed health, articles, duplicate
rates, dead letters; and the cards at the top."""

from __future__ import annotations

import collections
import datetime as dt
from typing import Any

from pipeline.report.charts import e, fmt, line_chart, nice_max, sparkline, stacked_bars
from pipeline.report.data import ArticleCounts, DeadLetterGroup, Runs, as_time, num
from pipeline.report.page import section
from pipeline.summary import ACCOUNTED

SPARK_RUNS = 30  # entries per run: the sparkline shows a feed's last 30 polls in the period
MAX_SERIES = 7  # languages or topics drawn on their own; the rest are "other"


def _iso(value: Any) -> str:
    moment = as_time(value)
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "-"


def _ago(value: Any, now: dt.datetime) -> tuple[str, str]:
    """(text, sort key) for a moment: '3h ago' / 'in 20m', with the absolute time for the tooltip."""
    moment = as_time(value)
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


def runs_section(runs: Runs) -> str:
    rows = runs.rows
    if not rows:
        return section("Runs", '<p class="none">No run records in this period.</p>', "runs")
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
    return section("Runs over time", body, "runs")


def rates_section(runs: Runs) -> str:
    rows = [r for r in runs.rows if r["entries_read"] > 0]
    if not rows:
        return section("Duplicate rates", '<p class="none">No run in this period read any entry.</p>', "rates")
    exact = [(_epoch(r["started"]), 100 * (r["duplicates"] - r["near_duplicates"]) / r["entries_read"]) for r in rows]
    near = [(_epoch(r["started"]), 100 * r["near_duplicates"] / r["entries_read"]) for r in rows]
    earlier = [(_epoch(r["started"]), 100 * r["already_written"] / r["entries_read"]) for r in rows]
    top = nice_max(max(max(v for _, v in exact + near + earlier), 1))
    chart = line_chart(
        "Duplicate rates",
        [("exact duplicates", 1, exact), ("near duplicates", 3, near), ("already written earlier", 2, earlier)],
        yfmt=lambda v: f"{v:.3g}%",
        y_max=top,
    )
    read = sum(r["entries_read"] for r in rows)
    summary = (
        f'<p class="note">Share of the entries each run read. Over the period: exact '
        f"{100 * sum(r['duplicates'] - r['near_duplicates'] for r in rows) / read:.1f}%, near "
        f"{100 * sum(r['near_duplicates'] for r in rows) / read:.1f}%, already written "
        f"{100 * sum(r['already_written'] for r in rows) / read:.1f}% of {int(read):,} entries read.</p>"
    )
    return section("Duplicate and near-duplicate rates", f'<div class="solo">{chart}</div>' + summary, "rates")


def feeds_section(health: list[dict[str, Any]] | str, runs: Runs, now: dt.datetime) -> str:
    if isinstance(health, str):
        return section("Feed health", f'<p class="bad">Could not read the feed state: {e(health)}</p>', "feeds")
    by_url = {str(h.get("feed_url")): h for h in health if h.get("feed_url")}
    urls = list(by_url) + [u for u in runs.feed_names if u not in by_url]
    if not urls:
        return section("Feed health", '<p class="none">No feed state yet.</p>', "feeds")
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
    return section("Feed health", intro + table, "feeds")


def articles_section(articles: ArticleCounts | str) -> str:
    if isinstance(articles, str):
        return section("Articles", f'<p class="bad">Could not read the articles: {e(articles)}</p>', "articles")
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

    return section(f"Articles per {per}", body, "articles")


def dead_letters_section(dead: dict[tuple[str, str], DeadLetterGroup] | str) -> str:
    if isinstance(dead, str):
        return section("Dead letters", f'<p class="bad">Could not read the dead letters: {e(dead)}</p>', "dead")
    if not dead:
        return section("Dead letters", '<p class="none">No dead letters in this period.</p>', "dead")
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
    return section(
        "Dead letters by stage and reason",
        f'<p class="note">{total:,} dead letters in the period.</p>' + table + "<h3>Examples</h3>" + "".join(details),
        "dead",
    )


# The reconciliation is summary.ACCOUNTED; fields a record lacks count as 0, and any other count in the record is
# listed below it, so a field added later is shown even before this page knows its meaning.


def reconciliation_section(latest: dict[str, Any] | None) -> str:
    if not latest:
        return section("Latest run", '<p class="none">No run in this period.</p>', "latest")
    read = num(latest, "entries_read")
    terms = [(k.replace("_", " "), num(latest, k)) for k in ACCOUNTED]
    rest = read - sum(v for _, v in terms)
    reconciled = latest.get("reconciled")
    verdict = {True: '<span class="ok">reconciled</span>', False: '<span class="bad">NOT reconciled</span>'}.get(
        reconciled, '<span class="warn">no verdict in the record</span>'
    )
    rows = [f'<tr><td>entries read</td><td class="n">{fmt(read)}</td></tr>']
    rows += [f'<tr><td>= {e(name)}</td><td class="n">{fmt(v)}</td></tr>' for name, v in terms]
    if rest:
        rows.append(
            f'<tr><td class="warn">not accounted for by the counts above</td><td class="n">{fmt(rest)}</td></tr>'
        )
    rows.append(f'<tr><td>rows in the files written</td><td class="n">{fmt(num(latest, "rows_in_files"))}</td></tr>')
    shown = {"entries_read", "rows_in_files", *ACCOUNTED}
    other = [
        (k, v)
        for k, v in sorted(latest.items())
        if k not in shown and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    other_rows = "".join(f'<tr><td>{e(k.replace("_", " "))}</td><td class="n">{fmt(v)}</td></tr>' for k, v in other)
    nested = []
    for key, value in sorted(latest.items()):
        if isinstance(value, dict) and value and all(isinstance(v, (int, float)) for v in value.values()):
            items = "".join(
                f'<tr><td>{e(k)}</td><td class="n">{fmt(v)}</td></tr>'
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
    return section("Latest run", body, "latest")


def cards(runs: Runs, health: list[dict[str, Any]] | str, dead: dict[tuple[str, str], DeadLetterGroup] | str) -> str:
    """The figures at the top of the page."""
    written = sum(r["articles_written"] for r in runs.rows)
    dead_total = sum(g.count for g in dead.values()) if isinstance(dead, dict) else "?"
    failing = sum(1 for h in health if (h.get("consecutive_failures") or 0) > 0) if isinstance(health, list) else "?"
    latest = runs.latest or {}
    reconciled = {True: "yes", False: "NO"}.get(latest.get("reconciled"), "-")
    figures = [
        (len(runs.rows), "runs"),
        (fmt(written), "articles written"),
        (dead_total if isinstance(dead_total, str) else f"{dead_total:,}", "dead letters"),
        (failing, "feeds failing"),
        (reconciled, "latest run reconciled"),
    ]
    return "".join(f'<div class="card"><b>{e(v)}</b><span>{e(k)}</span></div>' for v, k in figures)
