"""The streaming graph: poll the feeds forever, write each event-time window as the watermark passes it.

    newsbeam run --streaming --runner=DataflowRunner ...      (see docs/streaming.md for Dataflow and Flink)

`build_streaming()` is the assembly, beside `pipeline.build.build()` (batch): the same head (pipeline.ingest.IngestFeeds),
then the streaming halves of the stages (keyed-state dedup, too-late routing, windowed dead letters). Files go straight into
`<output>/articles/` and `<output>/dead_letter/` (there is no end of run to stage a commit for); every firing of a
window writes new files, never over an earlier one. Feed health, conditional GET and the run summary are batch-only.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

from pipeline.config import Config
from pipeline.ingest import IngestFeeds
from pipeline.layout import OutputLayout
from transforms.dedup import DeduplicateWithState
from transforms.neardup.streaming import DropNearCopiesWithState
from transforms.poll import PollFeeds, StreamSettings, at_fetch_time
from transforms.sink import SinkSettings, WriteDeadLetters, WriteParquetPartitions
from transforms.window import RouteTooLate, WindowByEventTime, WindowDeadLetters


class StreamingGraph(NamedTuple):
    """The PCollections tests look at: windowed articles, windowed dead letters, and the paths each writes."""

    articles: beam.PCollection
    dead_letters: beam.PCollection
    article_files: beam.PCollection
    dead_letter_files: beam.PCollection


def build_streaming(
    p: beam.Pipeline,
    config: Config,
    run_id: str,
    source: beam.PTransform | beam.PCollection | None = None,
    stream: StreamSettings | None = None,
) -> StreamingGraph:
    """Wire the streaming graph into `p` (which must have `--streaming`).

    `source` gives the polls, FeedSources timestamped with the poll time: by default PollFeeds over `config.feeds`
    (PeriodicImpulse); tests pass a TestStream (a PTransform applied to `p`, or a PCollection). `stream` defaults
    to `config.streaming`.
    """
    stream = stream if stream is not None else config.streaming
    if source is None:
        source = PollFeeds(config.feeds, stream)
    polls = source if isinstance(source, beam.PCollection) else p | "Poll" >> source

    ingested = polls | "Ingest" >> IngestFeeds(config, run_id)
    unique = (
        ingested.articles | "PollTime" >> beam.Map(at_fetch_time) | "Deduplicate" >> DeduplicateWithState(config.dedup)
    )
    if config.neardup.enabled and stream.near_duplicates:
        unique = unique | "NearDuplicates" >> DropNearCopiesWithState(
            config.neardup, config.dedup.neardup_lookback_seconds
        )
    timely = unique | "TooLate" >> RouteTooLate(config.window)
    windowed = timely.articles | "Window" >> WindowByEventTime(config.window)

    # Not under _temp/: a batch run's clean-up removes every other run's directory there.
    temp = OutputLayout(config.output).streaming_temp
    sink = SinkSettings(config.output, run_id, config.window.size_seconds, temp_path=temp)
    article_files = windowed | "WriteArticles" >> WriteParquetPartitions(sink)
    dead_letters = (
        (ingested.dead_letters, timely.dead_letters)
        | "AllDeadLetters" >> beam.Flatten()
        | "DeadLetterWindows" >> WindowDeadLetters(stream.dead_letter_window_seconds, config.window)
    )
    dead_letter_files = dead_letters | "WriteDeadLetters" >> WriteDeadLetters(sink)
    return StreamingGraph(windowed, dead_letters, article_files, dead_letter_files)
