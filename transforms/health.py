"""ReportFeedHealth: one report per feed per run.

A `FeedReport` says what happened to one feed in this run: fetched or not, status, the caching validators the
server sent, the body's hash, entries seen, entries new to the dataset, and the server's hints on when to come back
(RSS `<ttl>`, `Cache-Control: max-age`, `Retry-After`). The driver folds each report into the feed's health and
decides when the feed is due again (pipeline/schedule.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import apache_beam as beam

from transforms.dead_letter import DeadLetter
from transforms.feed_report import FeedReport


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
    """(reports, dead letters of feeds, (feed URL, articles written) pairs) -> one FeedReport per feed with
    `new_entries`."""

    def __init__(self, dead_letters: beam.PCollection, new_entries: beam.PCollection):
        super().__init__()
        self._dead_letters = dead_letters
        self._new_entries = new_entries

    def expand(self, reports: beam.PCollection) -> beam.PCollection:
        failures = (
            self._dead_letters
            | "FeedFailures" >> beam.Filter(lambda d: not d.is_entry and d.reason != "malformed_feed")
            | "FailureReports" >> beam.Map(failure_report)
        )
        all_reports = (reports, failures) | "AllReports" >> beam.Flatten() | beam.Map(lambda r: (r.feed_url, r))
        new_counts = self._new_entries | "CountByFeed" >> beam.CombinePerKey(sum)
        return (
            {"report": all_reports, "new": new_counts}
            | "JoinByFeed" >> beam.CoGroupByKey()
            | "Merge" >> beam.FlatMap(_merge)
        )
