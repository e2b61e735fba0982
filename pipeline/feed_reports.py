"""The feed reports a run's pipeline stages (`_staging/<run_id>/feed_reports/`, one JSON line per feed), which the
driver folds into the feed health (pipeline.schedule)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from pipeline import storage
from pipeline.commit import staged_files
from pipeline.layout import STAGED_FEED_REPORTS
from transforms.feed_report import FeedReport


def report_to_json(report: FeedReport) -> str:
    """One FeedReport as a JSON line."""
    return json.dumps(dataclasses.asdict(report), default=lambda v: v.isoformat(), sort_keys=True)


def report_from_json(line: str) -> FeedReport:
    """The inverse of report_to_json."""
    data = json.loads(line)
    if data.get("fetched_at"):
        data["fetched_at"] = dt.datetime.fromisoformat(data["fetched_at"])
    return FeedReport(**data)


def read_reports(output: str, run_id: str) -> list[FeedReport]:
    """The FeedReports the run's pipeline staged."""
    reports = []
    for path in staged_files(output, run_id, STAGED_FEED_REPORTS):
        for line in storage.read_bytes(path).decode("utf-8").splitlines():
            if line.strip():
                reports.append(report_from_json(line))
    return reports
