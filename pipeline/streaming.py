"""The streaming graph: poll the feeds forever, write each event-time window as the watermark passes it.

    newsbeam run --streaming --runner=DataflowRunner ...      (see the README for Dataflow and Flink)

`build_streaming()` is the assembly, beside `pipeline.build.build()` (batch): the same FetchFeeds, ParseEntries,
CleanArticles and ClassifyArticles stages, then the streaming-only ones of transforms.stream. Files go straight into
`<output>/articles/` and `<output>/dead_letter/` (there is no end of run to stage a commit for); every firing of a
window writes new files, never over an earlier one. Feed health, conditional GET and the run summary are batch-only.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

from pipeline.config import Config
from pipeline.layout import OutputLayout
from transforms.classify import ClassifyArticles
from transforms.clean import CleanArticles
from transforms.extract import FetchArticlePages
from transforms.fetch import FetchFeeds
from transforms.parse import ParseEntries
from transforms.sink import SinkSettings, WriteDeadLetters, WriteParquetPartitions
from transforms.stream import (
    DeduplicateWithState,
    DropNearCopiesWithState,
    PollFeeds,
    RouteTooLate,
    StreamSettings,
    WindowDeadLetters,
    at_fetch_time,
)
from transforms.window import WindowByEventTime


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

    fetched = polls | "Fetch" >> FetchFeeds(config.fetch)
    parsed = fetched.feeds | "Parse" >> ParseEntries(config.parse)
    entries, page_dead_letters = parsed.articles, ()
    if any((feed.extract or config.extract.mode) != "off" for feed in config.feeds):
        # No written keys here: the streaming job's own state deduplicates after classify, so an entry seen in
        # every poll has its page fetched once per worker instance (the stage's cache), not once per poll.
        pages = parsed.articles | "ExtractPages" >> FetchArticlePages(
            config.extract, config.feeds, run_id, group_by_url=False
        )
        entries, page_dead_letters = pages.articles, (pages.dead_letters,)
    cleaned = entries | "Clean" >> CleanArticles(config.clean)
    classified = cleaned.articles | "Classify" >> ClassifyArticles(config.classify)
    unique = (
        classified.articles
        | "PollTime" >> beam.Map(at_fetch_time)
        | "Deduplicate" >> DeduplicateWithState(config.dedup)
    )
    if config.neardup.enabled and stream.near_duplicates:
        unique = unique | "NearDuplicates" >> DropNearCopiesWithState(config.neardup, config.dedup.lookback_seconds)
    timely = unique | "TooLate" >> RouteTooLate(config.window)
    windowed = timely.articles | "Window" >> WindowByEventTime(config.window, streaming=True)

    # Not under _temp/: a batch run's clean-up removes every other run's directory there.
    temp = OutputLayout(config.output).streaming_temp
    sink = SinkSettings(config.output, run_id, config.window.size_seconds, temp_path=temp)
    article_files = windowed | "WriteArticles" >> WriteParquetPartitions(sink)
    dead_letters = (
        (
            fetched.dead_letters,
            parsed.dead_letters,
            *page_dead_letters,
            cleaned.dead_letters,
            classified.dead_letters,
            timely.dead_letters,
        )
        | "AllDeadLetters" >> beam.Flatten()
        | "DeadLetterWindows" >> WindowDeadLetters(stream, config.window)
    )
    dead_letter_files = dead_letters | "WriteDeadLetters" >> WriteDeadLetters(sink)
    return StreamingGraph(windowed, dead_letters, article_files, dead_letter_files)
