"""What the report reads of an output: run records, feed state, and the articles and dead letters, in batches."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline import storage
from pipeline.layout import OutputLayout

EXAMPLES = 3  # dead-letter examples per stage and reason
EXCERPT_CHARS = 400
HOURLY_UP_TO = 14 * 86400  # longer periods are charted per day
_BATCH_ROWS = 8192  # dead-letter rows carry up to 4 KB of raw input each: small batches keep memory flat


@dataclasses.dataclass
class Runs:
    """What the run records of the period say."""

    rows: list[dict[str, Any]]  # one per run, oldest first: started (datetime) and the numbers charted
    latest: dict[str, Any] | None  # the newest record, whole
    feed_entries: dict[str, list[tuple[dt.datetime, int]]]  # feed URL -> (run start, new entries) where polled
    feed_names: dict[str, str]
    unreadable: list[str]


def num(record: dict[str, Any], key: str) -> float:
    """A count of a run record, 0 when the record lacks it (older or newer records are read leniently)."""
    value = record.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def as_time(value: Any) -> dt.datetime | None:
    """A datetime or ISO 8601 string as an aware datetime (UTC when it names no zone); None when it is neither."""
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
    finished = as_time(record.get("finished_at"))
    return {
        "run_id": str(record.get("run_id", "")),
        "started": started,
        "entries_read": num(record, "entries_read"),
        "articles_written": num(record, "articles_written"),
        "duplicates": num(record, "duplicates"),
        "near_duplicates": num(record, "near_duplicates_dropped") + num(record, "near_duplicates_marked"),
        "already_written": num(record, "already_written"),
        "dead_letters": num(record, "entry_dead_letters") + num(record, "feed_dead_letters"),
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
        started = as_time(record.get("started_at")) if isinstance(record, dict) else None
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
                feed_entries[url].append((started, int(num(feed, "new_entries"))))
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
    if not storage.has_files(path):
        return None
    filesystem, where = storage.arrow_filesystem(path)  # an object store is read with the command's options
    return ds.dataset(where, filesystem=filesystem, format="parquet", partitioning="hive")


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
