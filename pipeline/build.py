"""The pipeline graph: feeds in, Parquet partitions and dead letters out. `build()` is the whole assembly."""

from __future__ import annotations

import apache_beam as beam

from pipeline.config import Config
from transforms.classify import ClassifyArticles
from transforms.clean import CleanArticles
from transforms.dedup import DeduplicateArticles
from transforms.fetch import FetchFeeds
from transforms.parse import ParseEntries
from transforms.sink import SinkSettings, WriteDeadLetters, WriteParquetPartitions
from transforms.window import WindowByEventTime


def build(p: beam.Pipeline, config: Config, run_id: str) -> dict[str, beam.PCollection]:
    """Wire every stage into `p`; returns the written article files and dead-letter files (paths)."""
    fetched = p | "Feeds" >> beam.Create(config.feeds) | "Fetch" >> FetchFeeds(config.fetch, run_id)
    parsed = fetched.feeds | "Parse" >> ParseEntries(config.parse, run_id)
    cleaned = parsed.articles | "Clean" >> CleanArticles(config.clean, run_id)
    classified = cleaned.articles | "Classify" >> ClassifyArticles(config.classify, run_id)
    unique = classified.articles | "Deduplicate" >> DeduplicateArticles(config.dedup)
    windowed = unique | "Window" >> WindowByEventTime(config.window)

    sink = SinkSettings(config.output, run_id, config.window.size_seconds)
    dead_letters = (
        fetched.dead_letters,
        parsed.dead_letters,
        cleaned.dead_letters,
        classified.dead_letters,
    ) | "AllDeadLetters" >> beam.Flatten()
    return {
        "article_files": windowed | "WriteArticles" >> WriteParquetPartitions(sink),
        "dead_letter_files": dead_letters | "WriteDeadLetters" >> WriteDeadLetters(sink),
    }
