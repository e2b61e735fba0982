"""The run summary: Beam counters turned into the numbers a user reads, checked against the files on disk.

The same numbers are printed as a table and written to `<output>/_runs/<run_id>.json`. They reconcile when every
entry read from a feed is accounted for: entries read = articles written + duplicates + already written (by an
earlier run) + entry dead letters; and the files hold exactly the articles written.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from transforms import counters as n

# The reconciliation: every entry read is one of these. The run record keeps each under its name, and the report
# (pipeline/report/) shows the sum from the same list.
ACCOUNTED = ("articles_written", "duplicates", "already_written", "entry_dead_letters")


@dataclasses.dataclass
class RunSummary:
    """What one run did. `reconciled` is False when some entry is unaccounted for."""

    run_id: str
    output: str
    started_at: str
    runner: str = ""
    finished_at: str = ""
    state: str = ""
    feeds_configured: int = 0
    feeds_skipped: int = 0
    feeds_not_modified: int = 0
    feeds_ok: int = 0
    feeds_failed: int = 0
    feeds_malformed: int = 0
    entries_read: int = 0
    articles_written: int = 0
    rows_in_files: int = 0
    duplicates: int = 0
    already_written: int = 0
    near_duplicates_dropped: int = 0
    near_duplicates_marked: int = 0
    near_duplicate_clusters: int = 0
    near_duplicates_of_earlier_runs: int = 0
    revisions: int = 0
    entry_dead_letters: int = 0
    feed_dead_letters: int = 0
    page_dead_letters: int = 0  # pages not fetched or extracted; their articles were kept with the feed's text
    dead_letters_by_reason: dict[str, int] = dataclasses.field(default_factory=dict)
    articles_by_language: dict[str, int] = dataclasses.field(default_factory=dict)
    articles_by_topic: dict[str, int] = dataclasses.field(default_factory=dict)
    article_files: list[str] = dataclasses.field(default_factory=list)
    dead_letter_files: list[str] = dataclasses.field(default_factory=list)
    feeds: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    counters: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def reconciled(self) -> bool:
        """Every entry read is written, dropped as a duplicate or dead-lettered, and the files hold every row."""
        accounted = sum(getattr(self, name) for name in ACCOUNTED)
        return self.entries_read == accounted and self.rows_in_files == self.articles_written

    def record(self) -> dict[str, Any]:
        """The run record, as written to `_runs/<run_id>.json`."""
        return {**dataclasses.asdict(self), "reconciled": self.reconciled}


def counter_values(metrics_result: Any) -> dict[str, int]:
    """All counters as `namespace/name` -> value, summed over the steps that share a name.

    Committed values where the runner has them (they exclude retried bundles), attempted ones otherwise.
    """
    totals: dict[str, int] = collections.Counter()
    for counter in metrics_result.query()["counters"]:
        try:
            value = counter.committed
        except Exception:  # some runners raise rather than return None when they do not track committed values
            value = None
        if value is None:
            value = counter.attempted or 0
        totals[f"{counter.key.metric.namespace}/{counter.key.metric.name}"] += int(value)
    return dict(totals)


def _with_prefix(counters: dict[str, int], namespace: str) -> dict[str, int]:
    prefix = namespace + "/"
    return dict(sorted((k[len(prefix) :], v) for k, v in counters.items() if k.startswith(prefix) and v))


def parquet_rows(paths: list[str]) -> int:
    """Rows in these Parquet files, read from their footers."""
    total = 0
    for path in paths:
        with FileSystems.open(path, compression_type="uncompressed") as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
    return total


def summarise(summary: RunSummary, counters: dict[str, int], article_files: list[str]) -> RunSummary:
    """Fill `summary` from the counters and the article files the run wrote."""
    c = collections.defaultdict(int, counters)
    summary.counters = dict(sorted(counters.items()))
    summary.feeds_ok = c[n.FEEDS_PARSED]
    summary.feeds_malformed = c[n.MALFORMED_FEEDS]
    summary.feeds_failed = c[n.FEEDS_FAILED] + c[n.NOT_A_FEED]
    summary.entries_read = c[n.ENTRIES_READ]
    summary.articles_written = c[n.ARTICLES_WRITTEN]
    summary.duplicates = c[n.DUPLICATES]
    summary.already_written = c[n.ALREADY_WRITTEN]
    summary.near_duplicates_dropped = c[n.NEAR_COPIES_DROPPED]
    summary.near_duplicates_marked = c[n.NEAR_COPIES_MARKED]
    summary.near_duplicate_clusters = c[n.NEAR_CLUSTERS]
    summary.near_duplicates_of_earlier_runs = c[n.NEAR_MATCHED_PRIOR]
    summary.revisions = c[n.NEAR_REVISIONS]
    summary.feeds_not_modified = c[n.NOT_MODIFIED]
    summary.entry_dead_letters = c[n.DEAD_LETTER_ENTRIES]
    summary.feed_dead_letters = c[n.DEAD_LETTER_FEEDS]
    summary.page_dead_letters = c[n.DEAD_LETTER_PAGES]
    summary.dead_letters_by_reason = _with_prefix(counters, n.BY_DEAD_LETTER_REASON)
    summary.articles_by_language = _with_prefix(counters, n.BY_LANGUAGE)
    summary.articles_by_topic = _with_prefix(counters, n.BY_TOPIC)
    summary.rows_in_files = parquet_rows(article_files)
    return summary


def feed_table(config: Any, health: dict[str, Any], polled: set[str]) -> list[dict[str, Any]]:
    """One row per configured feed: its health after this run, for the summary and the run record."""
    rows = []
    for feed in config.feeds:
        h = health.get(feed.url)
        rows.append(
            {
                "name": feed.name,
                "feed_url": feed.url,
                "polled": feed.url in polled,
                "status": h.last_status if h else None,
                "failures": h.consecutive_failures if h else 0,
                "new_entries": h.new_entries if h and feed.url in polled else 0,
                "entries_seen": h.entries_seen if h else 0,
                "validators": _validators(h),
                "last_error": h.last_error if h else "",
                "next_due_at": h.next_due_at.isoformat(timespec="seconds") if h and h.next_due_at else "",
            }
        )
    return rows


def _validators(health: Any) -> str:
    if health is None or not (health.etag or health.last_modified):
        return "none"
    return "trusted" if health.validators_trusted else "distrusted"


def format_table(summary: RunSummary) -> str:
    """The summary as a plain-text table for the terminal."""
    rows: list[tuple[str, Any]] = [
        ("run", summary.run_id),
        ("state", summary.state),
        ("runner", summary.runner),
        ("output", summary.output),
        ("feeds configured", summary.feeds_configured),
        ("feeds skipped (not due)", summary.feeds_skipped),
        ("feeds ok", summary.feeds_ok),
        ("feeds not modified (304)", summary.feeds_not_modified),
        ("feeds failed", summary.feeds_failed),
        ("feeds malformed (entries salvaged)", summary.feeds_malformed),
        ("entries read", summary.entries_read),
        ("articles written", summary.articles_written),
        ("duplicates dropped (exact + near)", summary.duplicates),
        ("  near-duplicates dropped", summary.near_duplicates_dropped),
        ("  near-duplicates marked", summary.near_duplicates_marked),
        ("  near-duplicate clusters", summary.near_duplicate_clusters),
        ("  copies of earlier runs' articles", summary.near_duplicates_of_earlier_runs),
        ("  revisions", summary.revisions),
        ("already written earlier", summary.already_written),
        ("dead letters (entries)", summary.entry_dead_letters),
        ("dead letters (feeds)", summary.feed_dead_letters),
        ("dead letters (pages)", summary.page_dead_letters),
        ("article files", len(summary.article_files)),
        ("reconciled", "yes" if summary.reconciled else "NO"),
    ]
    sections = [
        ("dead letters by reason", summary.dead_letters_by_reason),
        ("articles by language", summary.articles_by_language),
        ("articles by topic", summary.articles_by_topic),
    ]
    width = max(len(k) for k, _ in rows) + 2
    lines = [f"{k:<{width}}{v}" for k, v in rows]
    for title, counts in sections:
        lines.append(f"{title}:")
        lines.extend(f"  {k:<{width - 2}}{v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        if not counts:
            lines.append("  (none)")
    if summary.feeds:
        lines.append("feeds:")
        name_width = max(len(f["name"]) for f in summary.feeds) + 2
        lines.append(
            f"  {'name':<{name_width}}{'polled':<8}{'status':<8}{'new':>5} {'fails':>5}  {'validators':<12}next due"
        )
        for f in summary.feeds:
            lines.append(
                f"  {f['name']:<{name_width}}{'yes' if f['polled'] else 'no':<8}{str(f['status'] or '-'):<8}"
                f"{f['new_entries']:>5} {f['failures']:>5}  {f['validators'] or '-':<12}{f['next_due_at'] or '-'}"
            )
    return "\n".join(lines)
