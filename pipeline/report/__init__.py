"""`newsbeam report`: one self-contained HTML page about an output, built from the output alone.

    _runs/*.json           runs over time, duplicate rates, the latest run's reconciliation, entries per feed per run
    _state/feeds.parquet   feed health
    articles/              articles per hour by language and topic (three columns scanned in batches)
    dead_letter/           dead letters by stage and reason, with a few examples

The page needs no network: charts are SVG drawn here, the style and the small sorting script are inline and allowed
by a Content-Security-Policy that names their hashes, so nothing else can run. Everything that comes from a feed
(names, URLs, errors, raw excerpts) is hostile input and is escaped. Run records are read leniently: a field an
older (or newer) record lacks counts as absent, never as an error.

The parts: data.py reads the output (run records, feed state, articles and dead letters in batches), charts.py draws
SVG, page.py holds the page's frame, style, script and Content-Security-Policy, sections.py writes each section.
"""

from __future__ import annotations

import datetime as dt
import logging

from pipeline import storage
from pipeline.layout import OutputLayout
from pipeline.report.data import load_feed_state, load_runs, scan_articles, scan_dead_letters
from pipeline.report.page import page
from pipeline.report.sections import (
    articles_section,
    cards,
    dead_letters_section,
    feeds_section,
    rates_section,
    reconciliation_section,
    runs_section,
)

_LOG = logging.getLogger("newsbeam")

DEFAULT_SINCE_SECONDS = 7 * 86400


def write_report(
    output: str, out: str | None = None, since_seconds: float = DEFAULT_SINCE_SECONDS, now: dt.datetime | None = None
) -> str:
    """Build the report of `output` and write it atomically to `out` (default `_report/index.html` in it)."""
    out = out or OutputLayout(output).report_page
    storage.write_atomically(out, build_report(output, since_seconds, now).encode("utf-8"))
    return out


def build_report(output: str, since_seconds: float = DEFAULT_SINCE_SECONDS, now: dt.datetime | None = None) -> str:
    """The HTML page for `output`, covering the last `since_seconds` (0: everything)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    cutoff = now - dt.timedelta(seconds=since_seconds) if since_seconds else None
    runs = load_runs(output, cutoff)
    health = load_feed_state(output)
    articles = _guarded(lambda: scan_articles(output, cutoff, now))
    dead = _guarded(lambda: scan_dead_letters(output, cutoff))
    period = f"since {cutoff:%Y-%m-%d %H:%M} UTC" if cutoff else "all time"
    sections = [
        reconciliation_section(runs.latest),
        runs_section(runs),
        feeds_section(health, runs, now),
        articles_section(articles),
        rates_section(runs),
        dead_letters_section(dead),
    ]
    return page(output, now, period, cards(runs, health, dead), sections)


def _guarded(read):
    """A section's data, or the error that kept it from being read (the rest of the page still renders)."""
    try:
        return read()
    except Exception as err:  # an unreadable dataset spoils one section, never the page
        _LOG.warning("report: %s: %s", type(err).__name__, err)
        return f"{type(err).__name__}: {err}"
