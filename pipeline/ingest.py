"""IngestFeeds: the head both graphs share, FeedSources in, clean classified Articles out.

    ingested = feeds | "Ingest" >> IngestFeeds(config, run_id, written=written)     # batch
    ingested = polls | "Ingest" >> IngestFeeds(config, run_id, streaming=True)      # streaming

Fetch, parse, (the article pages, when some feed asks for them), clean and classify; every stage's rejects flattened
into one dead-letter PCollection. The batch and streaming graphs (pipeline/build.py, pipeline/streaming.py) differ
only in what follows: batch deduplicates against the key index and the run's own articles, streaming against keyed
state.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

from pipeline.config import Config
from transforms.article import identity_keys
from transforms.classify import ClassifyArticles
from transforms.clean import CleanArticles
from transforms.dedup import MatchWrittenFn
from transforms.extract import FetchArticlePages
from transforms.fetch import FetchFeeds
from transforms.parse import ParseEntries


class Ingested(NamedTuple):
    """What IngestFeeds returns: the classified articles, every dead letter on the way, the fetch failures alone
    (batch's feed health reports them) and ParseEntries' FeedReports."""

    articles: beam.PCollection
    dead_letters: beam.PCollection
    fetch_failures: beam.PCollection
    reports: beam.PCollection


def extraction_on(config: Config) -> bool:
    """True when some feed's entries may have their page fetched (the stage is left out of the graph otherwise)."""
    return any((feed.extract or config.extract.mode) != "off" for feed in config.feeds)


class IngestFeeds(beam.PTransform):
    """FeedSources -> Ingested(articles, dead_letters, fetch_failures, reports).

    `written` (batch): the key index rows of earlier runs (transforms.history.ReadWrittenKeys); the pages of entries
    already written are not fetched again. `streaming`: each page is fetched once per worker instance rather than
    grouped by URL over the run (a stream has no end of run to group over).
    """

    def __init__(
        self, config: Config, run_id: str, written: beam.PCollection | None = None, streaming: bool = False
    ) -> None:
        super().__init__()
        self._config = config
        self._run_id = run_id
        self._written = written
        self._streaming = streaming

    def expand(self, feeds: beam.PCollection):
        config = self._config
        fetched = feeds | "Fetch" >> FetchFeeds(config.fetch)
        parsed = fetched.feeds | "Parse" >> ParseEntries(config.parse)
        entries, page_dead_letters = parsed.articles, ()
        if extraction_on(config):
            written_keys = None
            if self._written is not None:
                run_keys = beam.pvalue.AsList(parsed.articles | "PageKeys" >> beam.FlatMap(identity_keys))
                written_keys = self._written | "WrittenPageKeys" >> beam.ParDo(MatchWrittenFn(), run_keys)
            pages = parsed.articles | "ExtractPages" >> FetchArticlePages(
                config.extract,
                config.feeds,
                self._run_id,
                written_keys=written_keys,
                group_by_url=not self._streaming,
            )
            entries, page_dead_letters = pages.articles, (pages.dead_letters,)
        cleaned = entries | "Clean" >> CleanArticles(config.clean)
        classified = cleaned.articles | "Classify" >> ClassifyArticles(config.classify)
        dead_letters = (
            fetched.dead_letters,
            parsed.dead_letters,
            *page_dead_letters,
            cleaned.dead_letters,
            classified.dead_letters,
        ) | "AllDeadLetters" >> beam.Flatten()
        return Ingested(classified.articles, dead_letters, fetched.dead_letters, parsed.reports)
