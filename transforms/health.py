"""ReportFeedHealth: one report per feed per run, and the rules that turn reports into feed health.

A `FeedReport` says what happened to one feed in this run: fetched or not, status, the caching validators the
server sent, the body's hash, entries seen, entries new to the dataset, and the server's hints on when to come back
(RSS `<ttl>`, `Cache-Control: max-age`, `Retry-After`). The driver folds each report into the feed's `FeedHealth`
with `next_health` (a pure function) and stores the result in `<output>/_state/`.

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
import hashlib
import random
import re
from typing import Iterable

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from transforms.article import DeadLetter

MAX_BACKOFF_SECONDS = 86400


@dataclasses.dataclass(frozen=True)
class FeedReport:
    """What happened to one feed in one run."""

    feed_url: str
    fetched_at: dt.datetime | None = None
    ok: bool = False
    status: int | None = None
    error: str = ""
    not_modified: bool = False
    sent_validators: bool = False
    etag: str = ""
    last_modified: str = ""
    body_hash: str = ""
    entries: int = 0
    new_entries: int = 0
    ttl_seconds: float | None = None
    max_age_seconds: float | None = None
    retry_after_seconds: float | None = None


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


def body_hash(body: bytes) -> str:
    """The hash by which two fetches of a feed are compared."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.I)


def max_age_seconds(cache_control: str | None) -> float | None:
    """`max-age` from a Cache-Control header, or None."""
    if not cache_control or re.search(r"no-cache|no-store", cache_control, re.I):
        return None
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else None


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


def failure_report(letter: DeadLetter) -> FeedReport:
    """The report of a feed that could not be fetched or read."""
    return FeedReport(
        feed_url=letter.feed_url,
        fetched_at=letter.time,
        ok=False,
        status=letter.status,
        error=f"{letter.reason}: {letter.message}"[:500],
        retry_after_seconds=letter.retry_after_seconds,
    )


def _merge(element: tuple[str, dict[str, list]]) -> Iterable[FeedReport]:
    feed_url, groups = element
    new_entries = sum(groups["new"])
    reports = sorted(groups["report"], key=lambda r: (r.ok, r.fetched_at is not None))
    if not reports:  # articles without a report cannot happen; keep the count rather than lose it
        reports = [FeedReport(feed_url=feed_url, ok=True)]
    # A failure report wins over a success one for the same feed (a feed that fetched but could not be parsed).
    yield dataclasses.replace(reports[0], new_entries=new_entries)


class ReportFeedHealth(beam.PTransform):
    """(reports, dead letters of feeds, articles to be written) -> one FeedReport per feed with `new_entries`."""

    def __init__(self, dead_letters: beam.PCollection, written: beam.PCollection):
        super().__init__()
        self._dead_letters = dead_letters
        self._written = written

    def expand(self, reports: beam.PCollection) -> beam.PCollection:
        failures = (
            self._dead_letters
            | "FeedFailures" >> beam.Filter(lambda d: not d.is_entry and d.reason != "malformed_feed")
            | "FailureReports" >> beam.Map(failure_report)
        )
        all_reports = (reports, failures) | "AllReports" >> beam.Flatten() | beam.Map(lambda r: (r.feed_url, r))
        new_counts = (
            self._written
            | "Unwindow" >> beam.WindowInto(GlobalWindows())
            | "FeedOf" >> beam.Map(lambda a: a.feed_url)
            | "CountByFeed" >> beam.combiners.Count.PerElement()
        )
        return (
            {"report": all_reports, "new": new_counts}
            | "JoinByFeed" >> beam.CoGroupByKey()
            | "Merge" >> beam.FlatMap(_merge)
        )
