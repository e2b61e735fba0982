"""The batch pipeline graph: feeds in; Parquet partitions, dead letters, feed reports and near-duplicate
signatures out (into the run's staging directory, which the driver commits). `build()` is the whole assembly.

Articles travel in batches (pipeline/plane/): stage A finishes each feed in one step and stages its articles as
Parquet; stage B decides duplicates on their compact key columns; stage C writes the windows the decisions keep.
What crosses a Beam boundary is small: file paths and counts, dead letters, feed reports, never an article.
"""

from __future__ import annotations

import datetime as dt

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.options.value_provider import StaticValueProvider

from pipeline.config import Config
from pipeline.feed_reports import report_to_json
from pipeline.ingest import feed_settings
from pipeline.layout import (
    STAGED_FEED_REPORTS,
    STAGED_SEEN_KEYS,
    STAGED_SIGNATURES,
    STAGED_WORK,
    OutputLayout,
)
from pipeline.plane.decide import Decide, DecideSettings
from pipeline.plane.finalize import WriteWindows
from pipeline.plane.staging import StageFeeds, StageSettings
from transforms.fetch import STAGE as FETCH_STAGE
from transforms.health import ReportFeedHealth
from transforms.neardup import lookback_patterns
from transforms.sink import SinkSettings, WriteDeadLetters


def build(
    p: beam.Pipeline, config: Config, run_id: str, now: dt.datetime, seen_index: str = "", processes: int = 1
) -> None:
    """Wire every stage into `p`. Files go to the run's staging directory; the driver commits them afterwards.
    `seen_index`: the key index file of what earlier runs wrote (pipeline.seen_index.load_seen_index; '' when empty).
    `processes`: forked processes finishing feeds, and writing windows, at once (pipeline/runners.py
    `feed_processes`)."""
    layout = OutputLayout(config.output)
    work = layout.staged(run_id, STAGED_WORK)
    staged = (
        p
        | "Feeds" >> beam.Create(list(enumerate(config.feeds)))
        | "Stage"
        >> StageFeeds(
            feed_settings(config, run_id, seen_index),
            StageSettings(work, config.window.size_seconds, config.neardup, processes),
        )
    )
    decided = staged.chunks | "Decide" >> Decide(
        DecideSettings(
            work_dir=work,
            seen_keys_dir=layout.staged(run_id, STAGED_SEEN_KEYS),
            signatures_dir=layout.staged(run_id, STAGED_SIGNATURES),
            run_id=run_id,
            dedup=config.dedup,
            neardup=config.neardup,
            written_index=seen_index,
            prior_patterns=tuple(lookback_patterns(layout.signatures, now, config.dedup.neardup_lookback_seconds)),
            writers=processes,
        )
    )
    sink = SinkSettings(layout.run_staging(run_id), run_id, config.window.size_seconds, temp_path=layout.temp)
    decided.shards | "WriteArticles" >> WriteWindows(sink, processes)
    staged.dead_letters | "WriteDeadLetters" >> WriteDeadLetters(sink)
    fetch_failures = staged.dead_letters | "FetchFailures" >> beam.Filter(lambda d: d.stage == FETCH_STAGE)
    (
        staged.reports
        | "FeedHealth" >> ReportFeedHealth(fetch_failures, decided.new_entries)
        | "ReportLines" >> beam.Map(report_to_json)
        | "WriteReports"
        >> fileio.WriteToFiles(
            path=layout.staged(run_id, STAGED_FEED_REPORTS),
            file_naming=fileio.default_file_naming("reports", ".jsonl"),
            temp_directory=StaticValueProvider(str, layout.run_temp(run_id, STAGED_FEED_REPORTS)),
            shards=1,
        )
    )
