"""Feed scheduling on the driver: each feed's health across runs, when it is due again, and where that is kept.

The driver folds each run's `FeedReport` (transforms/feed_report.py) into the feed's `FeedHealth` with `next_health` (a
pure function) and stores the result in `<output>/_state/feeds.parquet`; the next run polls only the feeds that
`schedule_feeds` finds due.

Conditional GET: the validators (ETag, Last-Modified) of a feed are sent only while they are trusted. A server
whose validators lie is caught two ways: a full GET (sent without validators once per `validator_check_seconds`)
that returns a different body under the same validators, or a 200 to a conditional request whose body is the one we
already had. Either way the feed's validators are no longer trusted, and the reason is recorded.

Scheduling: a healthy feed is due again after `poll_seconds`, or later if the server's hints ask for it. A failing
feed backs off exponentially from `failure_backoff_seconds`, with jitter, capped at a day (and never sooner than a
Retry-After); it is never dropped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.layout import OutputLayout
from pipeline.storage import write_atomically
from transforms.feed import FeedSource
from transforms.feed_report import FeedReport

_LOG = logging.getLogger("newsbeam")

MAX_BACKOFF_SECONDS = 86400


@dataclasses.dataclass(frozen=True)
class FeedHealth:
    """A feed's state across runs, as stored in `_state/feeds.parquet`."""

    feed_url: str
    etag: str = ""
    last_modified: str = ""
    body_hash: str = ""
    validators_trusted: bool = True
    validators_note: str = ""
    last_full_check_at: dt.datetime | None = None
    last_attempt_at: dt.datetime | None = None
    last_success_at: dt.datetime | None = None
    consecutive_failures: int = 0
    last_error: str = ""
    last_status: int | None = None
    entries_seen: int = 0
    new_entries: int = 0
    total_new_entries: int = 0
    next_due_at: dt.datetime | None = None
    next_due_reason: str = ""


@dataclasses.dataclass(frozen=True)
class HealthSettings:
    """How often feeds are polled and how failing ones back off (the `schedule:` section of the config)."""

    poll_seconds: float = dataclasses.field(default=0.0, metadata={"unit": "seconds"})
    failure_backoff_seconds: float = dataclasses.field(default=300.0, metadata={"unit": "seconds"})
    validator_check_seconds: float = dataclasses.field(default=86400.0, metadata={"unit": "seconds"})
    respect_hints: bool = True


def use_validators(health: FeedHealth | None, now: dt.datetime, settings: HealthSettings) -> bool:
    """Whether this run's request for the feed should be conditional."""
    if health is None or not health.validators_trusted or not (health.etag or health.last_modified):
        return False
    last_check = health.last_full_check_at
    return last_check is not None and (now - last_check).total_seconds() < settings.validator_check_seconds


def next_health(
    previous: FeedHealth | None,
    report: FeedReport,
    now: dt.datetime,
    settings: HealthSettings,
    rand: random.Random | None = None,
) -> FeedHealth:
    """Fold one run's report into the feed's health: validators, trust, counters, next due time."""
    rand = rand or random.Random(f"{report.feed_url}{now.isoformat()}")
    h = previous or FeedHealth(feed_url=report.feed_url)
    when = report.fetched_at or now
    if not report.ok:
        failures = h.consecutive_failures + 1
        delay = min(MAX_BACKOFF_SECONDS, settings.failure_backoff_seconds * 2 ** (failures - 1))
        delay = delay / 2 + rand.random() * delay / 2  # jitter: feeds that failed together spread out
        reason = f"backoff after {failures} failure(s)"
        if report.retry_after_seconds and report.retry_after_seconds > delay:
            delay, reason = min(MAX_BACKOFF_SECONDS, report.retry_after_seconds), "Retry-After"
        return dataclasses.replace(
            h,
            last_attempt_at=when,
            consecutive_failures=failures,
            last_error=report.error,
            last_status=report.status,
            new_entries=0,
            next_due_at=now + dt.timedelta(seconds=delay),
            next_due_reason=reason,
        )

    trusted, note = h.validators_trusted, h.validators_note
    same_validators = bool(report.etag or report.last_modified) and (report.etag, report.last_modified) == (
        h.etag,
        h.last_modified,
    )
    if not report.not_modified and h.body_hash and trusted:
        if report.sent_validators and report.body_hash == h.body_hash:
            trusted, note = False, f"{when:%Y-%m-%dT%H:%MZ}: 200 with an unchanged body to a conditional GET"
        elif not report.sent_validators and same_validators and report.body_hash != h.body_hash:
            trusted, note = False, f"{when:%Y-%m-%dT%H:%MZ}: body changed under unchanged validators"
    full_check = not report.sent_validators and not report.not_modified

    delay, reason = settings.poll_seconds, "poll interval"
    if settings.respect_hints:
        for hint, name in ((report.ttl_seconds, "feed ttl"), (report.max_age_seconds, "Cache-Control max-age")):
            if hint and hint > delay:
                delay, reason = min(float(hint), MAX_BACKOFF_SECONDS), name
    return dataclasses.replace(
        h,
        etag=h.etag if report.not_modified else report.etag,
        last_modified=h.last_modified if report.not_modified else report.last_modified,
        body_hash=h.body_hash if report.not_modified else report.body_hash,
        validators_trusted=trusted,
        validators_note=note,
        last_full_check_at=when if full_check else h.last_full_check_at,
        last_attempt_at=when,
        last_success_at=when,
        consecutive_failures=0,
        last_error="",
        last_status=report.status,
        entries_seen=report.entries if not report.not_modified else h.entries_seen,
        new_entries=report.new_entries,
        total_new_entries=h.total_new_entries + report.new_entries,
        next_due_at=now + dt.timedelta(seconds=delay),
        next_due_reason=reason,
    )


def schedule_feeds(
    feeds: Iterable[FeedSource],
    settings: HealthSettings,
    health: dict[str, FeedHealth],
    now: dt.datetime,
    poll_all: bool,
) -> tuple[list[FeedSource], list[FeedSource]]:
    """The feeds due now (with their validators when trusted) and those skipped because they are not due."""
    due, skipped = [], []
    for feed in feeds:
        h = health.get(feed.url)
        if not poll_all and h is not None and h.next_due_at is not None and h.next_due_at > now:
            skipped.append(feed)
            continue
        if use_validators(h, now, settings):
            feed = dataclasses.replace(feed, etag=h.etag, last_modified=h.last_modified)
        due.append(feed)
    return due, skipped


_TS = pa.timestamp("us", tz="UTC")
_HEALTH_TYPES = {
    "consecutive_failures": pa.int32(),
    "last_status": pa.int32(),
    "entries_seen": pa.int64(),
    "new_entries": pa.int64(),
    "total_new_entries": pa.int64(),
    "validators_trusted": pa.bool_(),
}
FEED_HEALTH_SCHEMA = pa.schema(
    [
        pa.field(f.name, _HEALTH_TYPES.get(f.name, _TS if f.name.endswith("_at") else pa.string()))
        for f in dataclasses.fields(FeedHealth)
    ]
)


def load_feed_health(output: str) -> dict[str, FeedHealth]:
    """Feed health by URL; {} on a first run. A corrupt or unreadable file is a warning, never an error: the run
    then behaves as a first run (the dataset, not this file, is what prevents duplicates)."""
    path = OutputLayout(output).feed_state
    if not FileSystems.exists(path):
        return {}
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            rows = pq.read_table(handle).to_pylist()
        names = {f.name for f in dataclasses.fields(FeedHealth)}
        return {row["feed_url"]: FeedHealth(**{k: v for k, v in row.items() if k in names}) for row in rows}
    except Exception as err:
        _LOG.warning(
            "ignoring unreadable feed state %s (%s: %s); running as a first run", path, type(err).__name__, err
        )
        return {}


def save_feed_health(output: str, health: Iterable[FeedHealth]) -> None:
    """Write the feed state atomically (temporary file, then rename)."""
    rows = [dataclasses.asdict(h) for h in sorted(health, key=lambda h: h.feed_url)]
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=FEED_HEALTH_SCHEMA), buffer, compression="zstd")
    write_atomically(OutputLayout(output).feed_state, buffer.getvalue().to_pybytes())
