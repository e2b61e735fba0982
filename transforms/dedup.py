"""DeduplicateArticles: exact duplicates within a run, by canonical URL, by GUID and by content hash, and
articles already written by an earlier run.

Three passes, each a CombinePerKey that keeps one article per key: first by canonical URL, then by (feed, GUID),
then by a hash of the normalised title and text. Running them in sequence makes a chain A~B (same URL), B~C (same
text) collapse as well, as long as the survivor of the first pass carries the link. The survivor is chosen
deterministically, whatever the bundle order: earliest `published_at`, then smallest `article_id`. It carries
`duplicate_count`, the number of copies it stands for. No pass is quadratic: each is one keyed combine.

Across runs: given the rows of the key index (transforms.history.ReadWrittenKeys, Arrow batches of 64-bit hashes
of the id, canonical URL and content hash of every article written and still seen in a feed), an article whose id,
URL or content hash is among them is dropped and counted as `dedup/already_written`, and the keys it matched are
emitted so the index can note they were seen again. The index is streamed past the set of this run's keys (a side
input, as small as the run), never the other way round.

Streaming (DeduplicateWithState): two keyed passes, by `article_id` (canonical URL, else feed + GUID) and then by
content hash. Each pass is a stateful DoFn in the global window that remembers a key until the watermark passes
`max(published_at, fetched_at) + dedup.forget_after` of the last copy seen (an event-time timer clears it): an entry
seen in every poll is written once, and one that comes back after that long away counts as new (the batch key index
follows the same rule). The first copy to arrive is the one kept (a stream cannot wait for an earlier-published one),
and `duplicate_count` stays 0 (the copy is written before its duplicates arrive). It runs before RouteTooLate, so an
old entry that stays in its feed is one dead letter, not one per poll.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, NamedTuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.coders import VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

from transforms.article import INDEX_KEY_COLUMNS, Article, identity_keys
from transforms.counters import ALREADY_WRITTEN, DUPLICATES, counter
from transforms.expiry import forget_at
from transforms.side_inputs import CachedSideInput
from transforms.urls import DEFAULT_TRACKING_PARAMETERS


@dataclasses.dataclass(frozen=True)
class DedupSettings:
    """Which keys make two articles the same, and which URL query parameters are tracking noise."""

    by_url: bool = True
    by_guid: bool = True
    by_content: bool = True
    tracking_parameters: tuple[str, ...] = DEFAULT_TRACKING_PARAMETERS
    # How far back (in event time) earlier runs' near-duplicate signatures are read (YAML `dedup.lookback`).
    neardup_lookback_seconds: int = dataclasses.field(default=14 * 86400, metadata={"unit": "seconds"})
    # How long an article written is remembered after it was last seen in a feed (batch key index, streaming state).
    forget_after_seconds: int = dataclasses.field(default=30 * 86400, metadata={"unit": "seconds"})


_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_for_hash(text: str) -> str:
    """Case, accents' composition, punctuation and spacing removed: what two copies of a text still share."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def content_hash(title: str, text: str) -> str:
    """A 32-hex-digit hash of the normalised title and text."""
    body = normalise_for_hash(title) + "\n" + normalise_for_hash(text)
    return hashlib.blake2b(body.encode("utf-8"), digest_size=16).hexdigest()


_FAR_FUTURE = dt.datetime.max.replace(tzinfo=dt.timezone.utc)


def keep_order(article: Article) -> tuple:
    """Sort key of the copy to keep: earliest published, then smallest id."""
    return (article.published_at or _FAR_FUTURE, article.article_id)


def merge_duplicates(kept: Article, other: Article) -> Article:
    """The copy to keep of two duplicates, carrying the count of both."""
    first, second = (kept, other) if keep_order(kept) <= keep_order(other) else (other, kept)
    return dataclasses.replace(first, duplicate_count=first.duplicate_count + second.duplicate_count + 1)


class _KeepFirstCombineFn(beam.CombineFn):
    """Keeps one article of a duplicate group and counts the group's members.

    Associative and commutative, so the kept article does not depend on bundle order.
    """

    def create_accumulator(self) -> tuple[Article | None, int]:
        return None, 0

    def add_input(self, accumulator: tuple[Article | None, int], article: Article) -> tuple[Article, int]:
        kept, members = accumulator
        return (article if kept is None else merge_duplicates(kept, article)), members + 1

    def merge_accumulators(self, accumulators: Iterable[tuple[Article | None, int]]) -> tuple[Article | None, int]:
        result, total = None, 0
        for kept, members in accumulators:
            if kept is not None:
                result = kept if result is None else merge_duplicates(result, kept)
                total += members
        return result, total

    def extract_output(self, accumulator: tuple[Article | None, int]) -> tuple[Article | None, int]:
        return accumulator


class ByKey(beam.PTransform):
    """Applies `keyed_step` to the (key, article) pairs of the articles whose key is not empty; the others pass
    through unchanged. `keyed_step` must give Articles back. Keys are str, so they get a deterministic coder (keyed
    state needs one)."""

    def __init__(self, key_fn: Callable[[Article], str], step_label: str, keyed_step: beam.PTransform):
        super().__init__()
        self._key_fn = key_fn
        self._step_label = step_label
        self._keyed_step = keyed_step

    def expand(self, articles: beam.PCollection) -> beam.PCollection:
        key_fn = self._key_fn
        keyed, keyless = articles | "SplitOnKey" >> beam.Partition(lambda a, _: 0 if key_fn(a) else 1, 2)
        done = (
            keyed
            | "Key" >> beam.Map(lambda a: (key_fn(a), a)).with_output_types(tuple[str, Article])
            | self._step_label >> self._keyed_step
        )
        return (done, keyless) | "Rejoin" >> beam.Flatten()


def _drop_duplicates_by(kind: str, key_fn: Callable[[Article], str]) -> ByKey:
    """One pass: articles with the same non-empty key collapse into one (counted); keyless ones pass through."""
    keep_one = beam.CombinePerKey(_KeepFirstCombineFn()) | beam.ParDo(_CountDropped(kind))
    return ByKey(key_fn, "KeepOne", keep_one)


class _CountDropped(beam.DoFn):
    def __init__(self, kind: str):
        self._dropped = counter(DUPLICATES)
        self._dropped_kind = Metrics.counter("dedup", f"duplicates_by_{kind}")

    def process(self, keyed_group: tuple[str, tuple[Article, int]]) -> Iterable[Article]:
        article, members = keyed_group[1]
        if members > 1:
            self._dropped.inc(members - 1)
            self._dropped_kind.inc(members - 1)
        yield article


def _keys_by_column(keys: Iterable[tuple[str, int]]) -> dict[str, pa.Array]:
    by_column: dict[str, set[int]] = {column: set() for column in INDEX_KEY_COLUMNS}
    for column, value in keys:
        by_column[column].add(value)
    return {column: pa.array(sorted(values), pa.int64()) for column, values in by_column.items()}


class MatchWrittenFn(beam.DoFn):
    """Emits the (column, key hash) pairs of this run that also appear in a batch of index rows."""

    def __init__(self):
        self._wanted = CachedSideInput(_keys_by_column)

    def process(self, written: pa.Table, run_keys: list[tuple[str, int]]) -> Iterable[tuple[str, int]]:
        wanted = self._wanted.get(run_keys)
        for column in INDEX_KEY_COLUMNS:
            if column in written.column_names and len(wanted[column]):
                values = written.column(column)
                for value in pc.filter(values, pc.is_in(values, value_set=wanted[column])).to_pylist():
                    yield column, value


SEEN_TAG = "seen"


class _DropWrittenFn(beam.DoFn):
    """Drops the articles already written; emits their matched keys under SEEN_TAG (they were seen again)."""

    def __init__(self):
        self._known = CachedSideInput(set)
        self._dropped = counter(ALREADY_WRITTEN)

    def process(
        self, article: Article, written_keys: list[tuple[str, int]]
    ) -> Iterator[Article | TaggedOutput[Literal[SEEN_TAG], tuple[str, int]]]:
        known = self._known.get(written_keys)
        matched = [key for key in identity_keys(article) if key in known]
        if not matched:
            yield article
            return
        self._dropped.inc()
        for key in matched:
            yield beam.pvalue.TaggedOutput(SEEN_TAG, key)


class Deduplicated(NamedTuple):
    """What DeduplicateArticles returns when given the index: the articles to write, and the (column, key hash)
    pairs of index rows seen again in this run (for their `last_seen`)."""

    articles: beam.PCollection
    seen_keys: beam.PCollection


class DeduplicateArticles(beam.PTransform):
    """Articles -> one article per exact-duplicate group (by URL, GUID, content hash), with `duplicate_count`.

    Given `written` (Arrow batches of key index rows, transforms.history.ReadWrittenKeys), it also drops the
    articles already written and returns `Deduplicated(articles, seen_keys)` instead of the articles alone."""

    def __init__(self, settings: DedupSettings = DedupSettings(), written: beam.PCollection | None = None):
        super().__init__()
        self._settings = settings
        self._written = written

    def expand(self, articles: beam.PCollection):
        settings = self._settings
        hashed = articles | "ContentHash" >> beam.Map(
            lambda a: dataclasses.replace(a, content_hash=content_hash(a.title, a.text))
        )
        passes = [
            ("url", settings.by_url, lambda a: a.url),
            ("guid", settings.by_guid, lambda a: f"{a.feed_url}\n{a.guid}" if a.guid else ""),
            ("content", settings.by_content, lambda a: a.content_hash),
        ]
        result = hashed
        for kind, enabled, key_fn in passes:
            if enabled:
                result = result | f"By{kind.title()}" >> _drop_duplicates_by(kind, key_fn)
        if self._written is None:
            return result
        run_keys = beam.pvalue.AsList(result | "RunKeys" >> beam.FlatMap(identity_keys))
        matched = self._written | "MatchWritten" >> beam.ParDo(MatchWrittenFn(), run_keys)
        dropped = result | "DropWritten" >> beam.ParDo(_DropWrittenFn(), beam.pvalue.AsList(matched)).with_outputs(
            SEEN_TAG, main="articles"
        )
        return Deduplicated(dropped.articles, dropped[SEEN_TAG])


# Streaming: the same keys as keyed state, each remembered until `dedup.forget_after` after its last copy.


class _FirstSeenFn(beam.DoFn):
    """Keyed (key, article) -> the article the first time its key is seen; later copies are counted and dropped.

    Each copy pushes the key's expiry (`forget_at`) later, so an entry that stays in its feed stays known; the key
    is forgotten once the watermark passes `forget_after_seconds` after the last copy.
    """

    # The expiry, in microseconds: timers cannot be read back, and a copy must only ever push it later.
    FORGET_AT = userstate.ReadModifyWriteStateSpec("forget_at", VarIntCoder())
    FORGET = userstate.TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, kind: str, forget_after_seconds: float):
        self._forget_after_seconds = forget_after_seconds
        self._duplicates = counter(DUPLICATES)
        self._duplicates_kind = Metrics.counter("dedup", f"duplicates_by_{kind}")
        self._forgotten = Metrics.counter("dedup", f"forgotten_{kind}_keys")

    def process(
        self,
        keyed: tuple[str, Article],
        forget_state=beam.DoFn.StateParam(FORGET_AT),
        forget_timer=beam.DoFn.TimerParam(FORGET),
    ) -> Iterable[Article]:
        article = keyed[1]
        known_until = forget_state.read()
        expiry = forget_at(article, self._forget_after_seconds)
        if known_until is None or expiry.micros > known_until:
            forget_state.write(expiry.micros)
            forget_timer.set(expiry)
        if known_until is not None:
            self._duplicates.inc()
            self._duplicates_kind.inc()
            return
        yield article

    @userstate.on_timer(FORGET)
    def on_forget(self, forget_state=beam.DoFn.StateParam(FORGET_AT)) -> Iterable[Article]:
        forget_state.clear()
        self._forgotten.inc()
        return ()


def _drop_seen(kind: str, key_fn: Callable[[Article], str], forget_after_seconds: float) -> ByKey:
    """One keyed pass of DeduplicateWithState; articles whose key is empty pass through."""
    return ByKey(key_fn, "FirstSeen", beam.ParDo(_FirstSeenFn(kind, forget_after_seconds)))


def _content_key(article: Article) -> str:
    # Two articles with neither title nor text share a hash without sharing anything else.
    return article.content_hash if (article.title or article.text) else ""


class DeduplicateWithState(beam.PTransform):
    """Articles (in the global window) -> each article once: by id, then by content hash (`by_content`), each key
    remembered until the watermark passes `forget_at` (`dedup.forget_after` after the last copy)."""

    def __init__(self, settings: DedupSettings = DedupSettings()):
        super().__init__()
        self._settings = settings

    def expand(self, articles: beam.PCollection) -> beam.PCollection:
        forget_after = self._settings.forget_after_seconds
        hashed = articles | "ContentHash" >> beam.Map(
            lambda a: dataclasses.replace(a, content_hash=content_hash(a.title, a.text))
        )
        unique = hashed | "ById" >> _drop_seen("id", lambda a: a.article_id, forget_after)
        if self._settings.by_content:
            unique = unique | "ByContent" >> _drop_seen("content", _content_key, forget_after)
        return unique
