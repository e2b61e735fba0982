"""One feed, start to finish: fetch, parse, (the article pages), clean, classify, in one Python loop per chunk.

    processor = FeedProcessor(settings); processor.setup()
    for item in processor.process(source):   # lists of finished Articles (a chunk), DeadLetters, one FeedReport

Both graphs run it as one DoFn per feed (pipeline/plane/staging.py for batch, pipeline/streaming.py): each stage's
own per-element logic (the DoFns of transforms/fetch, parse, clean, classify and extract) is called directly, so the
counters, the dead letters and every rule are the stages' own, but the articles of a feed never cross a Beam boundary
between stages (each crossing cost a pickle of the whole article, and the in-memory runner kept every one).
The entries of a big feed are finished `chunk_size` at a time, so a feed of 100,000 entries is never all in memory.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from transforms.article import INDEX_KEY_COLUMNS, Article
from transforms.classify import (
    _FOR_MODEL_TAG,
    ClassifySettings,
    _ApplyTopicFn,
    _DetectLanguageFn,
    model_failure,
)
from transforms.clean import CleanSettings, _CleanArticleFn
from transforms.dead_letter import DEAD_LETTER_TAG, DeadLetter
from transforms.extract import ArticlePages, ExtractSettings
from transforms.feed import FeedSource
from transforms.feed_report import FeedReport
from transforms.fetch import FetchFeedFn, FetchSettings
from transforms.parse import ParseSettings, _ParseFeedFn
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
        self._fetch = FetchFeedFn(settings.fetch)
        self._parse = _ParseFeedFn(settings.parse)
        self._clean = _CleanArticleFn(settings.clean)
        model_path = settings.classify.model_path
        self._model_path = model_path
        # Loaded (and validated) now, as ClassifyArticles does: a bad model file fails before any fetch.
        model_languages = frozenset(load_topic_model(model_path).languages) if model_path else frozenset()
        self._detect = _DetectLanguageFn(settings.classify.language, model_languages)
        self._topic = _ApplyTopicFn(settings.classify)
        extract = settings.extract
        self._pages = None if extract is None else ArticlePages(extract, dict(settings.extract_modes), settings.run_id)
        self._failed_batches = Metrics.counter("classify", "topic_model_failed_batches")
        self._failed_articles = Metrics.counter("classify", "topic_model_failed_articles")

    def setup(self) -> None:
        self._fetch.setup()
        self._detect.setup()
        self._topic.setup()
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
            chunk: list[Article] = []
            for tag, item in _split(self._parse.process(fetched)):
                if tag:
                    yield item
                    continue
                chunk.append(item)
                if len(chunk) >= self._settings.chunk_size:
                    yield from self._finish(chunk)
                    chunk = []
            if chunk:
                yield from self._finish(chunk)

    def _finish(self, raw: list[Article]) -> Iterator[list[Article] | DeadLetter]:
        letters: list[DeadLetter] = []
        if self._pages is not None:
            index = self._settings.written_index
            raw, letters = self._pages.fetch_chunk(raw, _written_page_keys(index) if index else None)
        cleaned = []
        for article in raw:
            for tag, out in _split(self._clean.process(article)):
                (letters if tag else cleaned).append(out)
        detected, for_model = [], []
        for article in cleaned:
            for tag, out in _split(self._detect.process(article)):
                if tag == DEAD_LETTER_TAG:
                    letters.append(out)
                elif tag == _FOR_MODEL_TAG:
                    for_model.append(out)
                else:
                    detected.append(out)
        detected.extend(self._predict(for_model, letters))
        finished = []
        for element in detected:
            for tag, out in _split(self._topic.process(element)):
                (letters if tag else finished).append(out)
        yield from letters
        if finished:
            yield finished

    def _predict(self, for_model: list[tuple[Article, str]], letters: list[DeadLetter]) -> list:
        """(article, prediction) for each article the topic model reads, in one vectorised call per chunk; when the
        model raises, the articles go on without its topic and one dead letter says so (as RunInference's
        exception handling does in ClassifyArticles)."""
        if not for_model:
            return []
        try:
            labels, probs = self._model.predict_proba([text for _, text in for_model])
        except Exception as err:  # noqa: BLE001 - a model bug costs topics, never articles
            self._failed_batches.inc()
            self._failed_articles.inc(len(for_model))
            letters.append(model_failure((for_model, (type(err), err, err.__traceback__))))
            return [article for article, _ in for_model]
        return [
            (article, _Prediction((label, prob)))
            for (article, _), label, prob in zip(for_model, labels, probs.tolist())
        ]


class _Prediction:
    """What _ApplyTopicFn reads of a RunInference PredictionResult: `inference`, (label, probability)."""

    __slots__ = ("inference",)

    def __init__(self, inference: tuple[str, float]):
        self.inference = inference
