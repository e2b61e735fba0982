"""The pipeline graph: feeds in, Parquet partitions, dead letters and feed reports out. `build()` is the assembly."""

from __future__ import annotations

import datetime as dt

import apache_beam as beam
from apache_beam.io import fileio

from pipeline.config import Config
from pipeline.state import REPORTS_DIR, report_to_json, staging_path
from transforms.classify import ClassifyArticles
from transforms.clean import CleanArticles
from transforms.dedup import DeduplicateArticles
from transforms.fetch import FetchFeeds
from transforms.health import ReportFeedHealth
from transforms.history import ReadWrittenKeys
from transforms.parse import ParseEntries
from transforms.sink import ARTICLES_DIR, SinkSettings, WriteDeadLetters, WriteParquetPartitions
from transforms.window import WindowByEventTime


def build(p: beam.Pipeline, config: Config, run_id: str, now: dt.datetime) -> None:
    """Wire every stage into `p`. Files go to the run's staging directory; the driver commits them afterwards."""
    fetched = p | "Feeds" >> beam.Create(config.feeds) | "Fetch" >> FetchFeeds(config.fetch, run_id)
    parsed = fetched.feeds | "Parse" >> ParseEntries(config.parse, run_id)
    cleaned = parsed.articles | "Clean" >> CleanArticles(config.clean, run_id)
    classified = cleaned.articles | "Classify" >> ClassifyArticles(config.classify, run_id)
    written = p | "WrittenKeys" >> ReadWrittenKeys(
        beam.io.filesystems.FileSystems.join(config.output, ARTICLES_DIR), now, config.dedup.lookback_seconds
    )
    unique = classified.articles | "Deduplicate" >> DeduplicateArticles(config.dedup, written)
    windowed = unique | "Window" >> WindowByEventTime(config.window)

    staging = staging_path(config.output, run_id)
    sink = SinkSettings(staging, run_id, config.window.size_seconds, temp_path=f"{config.output}/_temp")
    windowed | "WriteArticles" >> WriteParquetPartitions(sink)
    dead_letters = (
        fetched.dead_letters,
        parsed.dead_letters,
        cleaned.dead_letters,
        classified.dead_letters,
    ) | "AllDeadLetters" >> beam.Flatten()
    dead_letters | "WriteDeadLetters" >> WriteDeadLetters(sink)
    (
        parsed.reports
        | "FeedHealth" >> ReportFeedHealth(fetched.dead_letters, unique)
        | "ReportLines" >> beam.Map(report_to_json)
        | "WriteReports"
        >> fileio.WriteToFiles(
            path=f"{staging}/{REPORTS_DIR}",
            file_naming=fileio.default_file_naming("reports", ".jsonl"),
            temp_directory=beam.options.value_provider.StaticValueProvider(
                str, f"{config.output}/_temp/{run_id}/{REPORTS_DIR}"
            ),
            shards=1,
        )
    )
