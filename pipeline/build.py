"""The batch pipeline graph: feeds in; Parquet partitions, dead letters, feed reports and near-duplicate
signatures out (into the run's staging directory, which the driver commits). `build()` is the whole assembly."""

from __future__ import annotations

import datetime as dt

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.options.value_provider import StaticValueProvider

from pipeline.config import Config
from pipeline.feed_reports import report_to_json
from pipeline.ingest import IngestFeeds
from pipeline.layout import STAGED_FEED_REPORTS, STAGED_SEEN_KEYS, STAGED_SIGNATURES, OutputLayout
from pipeline.seen_index import SEEN_KEYS_SCHEMA
from transforms.dedup import DeduplicateArticles
from transforms.health import ReportFeedHealth
from transforms.history import ReadWrittenKeys
from transforms.neardup import SIGNATURE_SCHEMA, DeduplicateNearCopies, ReadPriorSignatures, signature_row
from transforms.sink import (
    ParquetSink,
    SinkSettings,
    WriteDeadLetters,
    WriteParquet,
    WriteParquetPartitions,
)
from transforms.window import WindowByEventTime


def build(p: beam.Pipeline, config: Config, run_id: str, now: dt.datetime, seen_index: str = "") -> None:
    """Wire every stage into `p`. Files go to the run's staging directory; the driver commits them afterwards.
    `seen_index`: the key index file of what earlier runs wrote (pipeline.seen_index.load_seen_index; '' when empty)."""
    layout = OutputLayout(config.output)
    written = p | "WrittenKeys" >> ReadWrittenKeys(seen_index)
    ingested = p | "Feeds" >> beam.Create(config.feeds) | "Ingest" >> IngestFeeds(config, run_id, written=written)
    deduplicated = ingested.articles | "Deduplicate" >> DeduplicateArticles(config.dedup, written)
    unique = deduplicated.articles
    prior = p | "PriorSignatures" >> ReadPriorSignatures(layout.signatures, now, config.dedup.neardup_lookback_seconds)
    near = unique | "NearDuplicates" >> DeduplicateNearCopies(config.neardup, prior)
    windowed = near.articles | "Window" >> WindowByEventTime(config.window)

    sink = SinkSettings(layout.run_staging(run_id), run_id, config.window.size_seconds, temp_path=layout.temp)
    windowed | "WriteArticles" >> WriteParquetPartitions(sink)
    # The index keys this run saw again: the driver moves their `last_seen` (pipeline.seen_index.write_seen_index).
    deduplicated.seen_keys | "WriteSeenKeys" >> WriteParquet(
        sink, STAGED_SEEN_KEYS, lambda _: ParquetSink(SEEN_KEYS_SCHEMA, lambda k: {"column": k[0], "key": k[1]}, ())
    )
    ingested.dead_letters | "WriteDeadLetters" >> WriteDeadLetters(sink)
    (
        near.signatures
        # What later runs match against: the articles written (in drop mode the copies point at them anyway).
        | "WrittenSignatures"
        >> beam.Filter(lambda r, mark: mark or r.canonical_id in ("", r.article_id), config.neardup.mode == "mark")
        | "WriteSignatures"
        >> WriteParquet(
            sink,
            STAGED_SIGNATURES,
            lambda _: ParquetSink(SIGNATURE_SCHEMA, signature_row, ("article_id",)),
            lambda r: f"date={r.published_at:%Y-%m-%d}",
        )
    )
    (
        ingested.reports
        | "FeedHealth" >> ReportFeedHealth(ingested.fetch_failures, near.articles)
        | "ReportLines" >> beam.Map(report_to_json)
        | "WriteReports"
        >> fileio.WriteToFiles(
            path=layout.staged(run_id, STAGED_FEED_REPORTS),
            file_naming=fileio.default_file_naming("reports", ".jsonl"),
            temp_directory=StaticValueProvider(str, layout.run_temp(run_id, STAGED_FEED_REPORTS)),
            shards=1,
        )
    )
