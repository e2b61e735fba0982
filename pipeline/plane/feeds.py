"""One feed, start to finish: fetch, parse, (the article pages), clean, classify, in one Python loop per chunk.

    processor = FeedProcessor(settings); processor.setup()
    for item in processor.process(source):   # lists of finished Articles (a chunk), DeadLetters, one FeedReport

Both graphs run it as one DoFn per feed (pipeline/plane/staging.py for batch, pipeline/streaming.py): each stage's
own per-element step (FetchFeedFn, FeedParser, ArticlePages, ArticleCleaner, ArticleClassifier: the code the stages'
composites run in their DoFns) is called directly, so the counters, the dead letters and every rule are the stages'
own, but the articles of a feed never cross a Beam boundary between stages (each crossing cost a pickle of the
whole article, and the in-memory runner kept every one).
The entries of a big feed are finished `chunk_size` at a time, so a feed of 100,000 entries is never all in memory;
nor are its bytes: a body over `fetch.spool_bytes` waits in a temporary file while it is read (transforms/spool.py),
deleted when the feed is done, failed or abandoned.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import TaggedOutput

from transforms.article import INDEX_KEY_COLUMNS, Article
from transforms.classify import ArticleClassifier, ClassifySettings
from transforms.clean import ArticleCleaner, CleanSettings
from transforms.dead_letter import DeadLetter
from transforms.extract import ArticlePages, ExtractSettings
from transforms.feed import FeedSource, FetchedFeed
from transforms.feed_report import FeedReport
from transforms.fetch import FetchFeedFn, FetchSettings
from transforms.parse import FeedParser, ParseSettings
from transforms.topic_model import load_topic_model

CHUNK_SIZE = 2000


@dataclasses.dataclass(frozen=True)
class FeedSettings:
    """What the per-feed loop needs. `extract` is None when no feed's pages are fetched; `extract_modes` gives a
    feed's own mode (feed URL -> mode). `written_index`: the key index of earlier runs (batch): the pages of entries
    already written are not fetched again."""

    fetch: FetchSettings = FetchSettings()
    parse: ParseSettings = ParseSettings()
    clean: CleanSettings = CleanSettings()
    classify: ClassifySettings = ClassifySettings()
    extract: ExtractSettings | None = None
    extract_modes: tuple[tuple[str, str], ...] = ()
    run_id: str = ""
    written_index: str = ""
    chunk_size: int = CHUNK_SIZE


_MODELS: dict[str, object] = {}
_INDEX_KEYS: dict[str, np.ndarray] = {}
_PROCESS_LOCK = threading.Lock()


def _topic_model(path: str):
    # One model per process, whatever the number of DoFn instances (it is small, but loading it takes a while).
    with _PROCESS_LOCK:
        if path not in _MODELS:
            _MODELS[path] = load_topic_model(path)
        return _MODELS[path]


def _written_page_keys(index_path: str) -> np.ndarray:
    """The sorted id and URL keys of the key index: read once per process, and only when pages are fetched."""
    with _PROCESS_LOCK:
        if index_path not in _INDEX_KEYS:
            parts = []
            if index_path:
                with FileSystems.open(index_path, compression_type="uncompressed") as handle:
                    table = pq.read_table(handle, columns=list(INDEX_KEY_COLUMNS[:2]))
                parts = [c.drop_null().to_numpy() for c in table.columns]
            _INDEX_KEYS[index_path] = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        return _INDEX_KEYS[index_path]


def _split(outputs: Iterable) -> Iterator[tuple[str, object]]:
    """A stage DoFn's outputs as (tag, value); the main output's tag is ''."""
    for out in outputs:
        if isinstance(out, TaggedOutput):
            yield out.tag, out.value
        else:
            yield "", out


class FeedProcessor:
    """The per-feed loop. Build it, call `setup()` once (in a DoFn's setup), then `process(source)` per feed."""

    def __init__(self, settings: FeedSettings):
        self._settings = settings
        # The feed is read here, in the process that fetched it: a big body may wait in a temporary file.
        self._fetch = FetchFeedFn(settings.fetch, spool=True)
        self._parser = FeedParser(settings.parse)
        self._cleaner = ArticleCleaner(settings.clean)
        model_path = settings.classify.model_path
        self._model_path = model_path
        # Loaded (and validated) now, as ClassifyArticles does: a bad model file fails before any fetch.
        model_languages = frozenset(load_topic_model(model_path).languages) if model_path else frozenset()
        self._classifier = ArticleClassifier(settings.classify, model_languages)
        extract = settings.extract
        self._pages = None if extract is None else ArticlePages(extract, dict(settings.extract_modes), settings.run_id)

    def setup(self) -> None:
        self._fetch.setup()
        self._classifier.setup()
        self._model = _topic_model(self._model_path) if self._model_path else None
        if self._pages is not None:
            self._pages.setup()

    def teardown(self) -> None:
        self._fetch.teardown()
        if self._pages is not None:
            self._pages.teardown()

    def process(self, source: FeedSource) -> Iterator[list[Article] | DeadLetter | FeedReport]:
        """A feed's finished articles, a chunk (list) at a time, and its dead letters and FeedReport."""
        for tag, fetched in _split(self._fetch.process(source)):
            if tag:
                yield fetched
                continue
            try:
                yield from self._read(fetched)
            finally:  # also when the feed fails, or whoever reads this generator stops early
                fetched.close()

    def _read(self, fetched: FetchedFeed) -> Iterator[list[Article] | DeadLetter | FeedReport]:
        chunk: list[Article] = []
        for item in self._parser.parse(fetched):
            if not isinstance(item, Article):  # a dead letter, or the feed's report
                yield item
                continue
            chunk.append(item)
            if len(chunk) >= self._settings.chunk_size:
                yield from self._finish(chunk)
                chunk = []
        if chunk:
            yield from self._finish(chunk)

    def _finish(self, articles: list[Article]) -> Iterator[list[Article] | DeadLetter]:
        """A chunk through the page step (when on), clean and classify: its dead letters, then its articles."""
        page_letters: list[DeadLetter] = []
        if self._pages is not None:
            index = self._settings.written_index
            articles, page_letters = self._pages.fetch_chunk(articles, _written_page_keys(index) if index else None)
        cleaned, clean_letters = self._cleaner.clean_chunk(articles)
        finished, classify_letters = self._classifier.classify_chunk(cleaned, self._model)
        yield from page_letters
        yield from clean_letters
        yield from classify_letters
        if finished:
            yield finished
