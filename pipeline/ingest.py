"""IngestFeeds: the streaming graph's head, polled FeedSources in, clean classified Articles out.

    ingested = polls | "Ingest" >> IngestFeeds(config, run_id)

Each poll of a feed is finished in one step by the per-feed loop the batch graph stages with
(pipeline/plane/feeds.py: fetch, parse, the article pages when some feed asks for them, clean, classify): the
streaming graph keeps its per-article keyed-state dedup after it, so its articles are emitted one by one, a chunk at
a time. Every stage's rejects come out as one dead-letter PCollection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam

from pipeline.config import Config
from pipeline.plane.feeds import FeedProcessor, FeedSettings
from transforms.article import Article
from transforms.dead_letter import DEAD_LETTER_TAG, DeadLetter, DeadLetterOutput
from transforms.feed import FeedSource


class Ingested(NamedTuple):
    """What IngestFeeds returns: the classified articles and every dead letter on the way."""

    articles: beam.PCollection
    dead_letters: beam.PCollection


def extraction_on(config: Config) -> bool:
    """True when some feed's entries may have their page fetched (the step is skipped otherwise)."""
    return any((feed.extract or config.extract.mode) != "off" for feed in config.feeds)


def feed_settings(config: Config, run_id: str, seen_index: str = "") -> FeedSettings:
    """What the per-feed loop needs of the config. `seen_index` (batch): the key index of earlier runs, whose
    entries' pages are not fetched again."""
    return FeedSettings(
        fetch=config.fetch,
        parse=config.parse,
        clean=config.clean,
        classify=config.classify,
        extract=config.extract if extraction_on(config) else None,
        extract_modes=tuple((f.url, f.extract) for f in config.feeds if f.extract),
        run_id=run_id,
        written_index=seen_index,
    )


class _IngestFn(beam.DoFn):
    """A FeedSource -> its finished Articles, one by one; dead letters on their tag (the FeedReport is batch's)."""

    def __init__(self, settings: FeedSettings):
        self._processor = FeedProcessor(settings)

    def setup(self):
        self._processor.setup()

    def teardown(self):
        self._processor.teardown()

    def process(self, source: FeedSource) -> Iterator[Article | DeadLetterOutput]:
        for item in self._processor.process(source):
            if isinstance(item, DeadLetter):
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, item)
            elif isinstance(item, list):
                yield from item


class IngestFeeds(beam.PTransform):
    """FeedSources -> Ingested(articles, dead_letters)."""

    def __init__(self, config: Config, run_id: str) -> None:
        super().__init__()
        self._settings = feed_settings(config, run_id)

    def expand(self, feeds: beam.PCollection):
        out = feeds | "Feeds" >> beam.ParDo(_IngestFn(self._settings)).with_outputs(DEAD_LETTER_TAG, main="articles")
        return Ingested(out.articles, out[DEAD_LETTER_TAG])
