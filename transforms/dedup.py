"""Exact duplicates within a run, by canonical URL, by GUID and by content hash, and articles already written by an
earlier run.

Batch (`exact_duplicates`, on arrays; the batch graph's decision step, pipeline/plane/decide.py, runs it on the key
columns it staged): three passes, first by canonical URL, then by (feed, GUID), then by a hash of the normalised
title and text, each one sort that keeps one article per key. Running them in sequence makes a chain A~B (same URL),
B~C (same text) collapse as well, as long as the survivor of the first pass carries the link. The survivor is the
earliest `published_at`, then the smallest `article_id`, whatever the input order; it carries `duplicate_count`, the
number of copies it stands for.

Across runs (`written_matches`): the key index (pipeline.seen_index: 64-bit hashes of the id, canonical URL and
content hash of every article written and still seen in a feed) is streamed past the set of this run's keys, a
record batch at a time, never the other way round; an article whose id, URL or content hash is among them is
dropped and counted as `dedup/already_written`, and the keys it matched are kept so the index can note they were
seen again.

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
import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.coders import VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

from transforms.article import Article
from transforms.counters import DUPLICATES, counter
from transforms.expiry import forget_at
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
# For ASCII text, the same on bytes: every byte but a letter or digit becomes a space, then the words are joined by
# one. Two C passes, where the regex makes a replacement per space between words (a fifth of a run's cleaning cost).
_ASCII_NON_WORD_TO_SPACE = bytes(c if chr(c).isalnum() else 0x20 for c in range(128)) + b" " * 128


def normalise_for_hash(text: str) -> str:
    """Case, accents' composition, punctuation and spacing removed: what two copies of a text still share."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    if folded.isascii():
        return " ".join(folded.encode("ascii").translate(_ASCII_NON_WORD_TO_SPACE).decode("ascii").split())
    return _NON_WORD.sub(" ", folded).strip()


def content_hash(title: str, text: str) -> str:
    """A 32-hex-digit hash of the normalised title and text."""
    body = normalise_for_hash(title) + "\n" + normalise_for_hash(text)
    return hashlib.blake2b(body.encode("utf-8"), digest_size=16).hexdigest()


class ExactDuplicates(NamedTuple):
    """What `exact_duplicates` decides for n rows: which survive, each survivor's `duplicate_count`, and the copies
    each pass dropped (by kind)."""

    keep: np.ndarray  # bool (n,)
    duplicate_count: np.ndarray  # int64 (n,): the copies a survivor stands for (0 for the others)
    dropped: dict[str, int]


def exact_duplicates(
    passes: Sequence[tuple[str, np.ndarray, np.ndarray]], published_us: np.ndarray, id_rank: np.ndarray
) -> ExactDuplicates:
    """The keep-one passes on arrays: each pass is (kind, int64 key hashes, bool mask of rows that have the key).

    In order, the rows still kept that share a key of the pass collapse into one: the earliest `published_us`, then
    the smallest `id_rank` (the rank of the article id), then the first row. The survivor's count is the sum of its
    group's counts plus the copies dropped, so a chain A~B (URL), B~C (text) collapses too, as long as the survivor of
    the first pass carries the link. One sort per pass: no per-article objects, no quadratic step."""
    n = len(published_us)
    keep = np.ones(n, dtype=bool)
    count = np.zeros(n, dtype=np.int64)
    dropped: dict[str, int] = {}
    position = np.arange(n)
    for kind, keys, has_key in passes:
        rows = np.flatnonzero(keep & has_key)
        if len(rows) < 2:
            dropped[kind] = 0
            continue
        order = rows[np.lexsort((position[rows], id_rank[rows], published_us[rows], keys[rows]))]
        sorted_keys = keys[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = sorted_keys[1:] != sorted_keys[:-1]
        group = np.cumsum(first) - 1
        sizes = np.bincount(group)
        totals = np.bincount(group, weights=count[order]).astype(np.int64)
        keepers = order[first]
        keep[order[~first]] = False
        count[order[~first]] = 0
        count[keepers] = totals + sizes - 1
        dropped[kind] = int((sizes - 1).sum())
    return ExactDuplicates(keep, count, dropped)


def written_matches(
    run_keys: dict[str, np.ndarray], index_batches: Iterable[pa.RecordBatch | pa.Table]
) -> dict[str, np.ndarray]:
    """Per index column, the sorted distinct keys of this run (`run_keys[column]`, int64) that the key index holds.

    The index is streamed past the run's keys a batch at a time: its size follows what the feeds carry, and no step
    holds it whole."""
    wanted = {column: np.unique(keys) for column, keys in run_keys.items()}
    found: dict[str, list[np.ndarray]] = {column: [] for column in wanted}
    for batch in index_batches:
        for column, keys in wanted.items():
            if column in batch.column_names and len(keys):
                values = pc.drop_null(batch.column(column)).to_numpy(zero_copy_only=False)
                found[column].append(keys[np.isin(keys, values)])
    return {
        column: np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64) for column, parts in found.items()
    }


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
