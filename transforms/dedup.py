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
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from transforms.article import INDEX_KEY_COLUMNS, Article, key_hash  # noqa: F401 (re-exported)
from transforms.counters import ALREADY_WRITTEN, DUPLICATES, counter
from transforms.side_inputs import CachedSideInput

DEFAULT_TRACKING_PARAMETERS = (
    "utm_*",
    "fbclid",
    "gclid",
    "dclid",
    "msclkid",
    "mc_cid",
    "mc_eid",
    "igshid",
    "_ga",
    "yclid",
    "ref_src",
    "cmpid",
    "ito",
    "at_medium",
    "at_campaign",
    "ns_mchannel",
    "ns_source",
    "ns_campaign",
    "ns_linkname",
    "ns_fee",
    "xtor",
)

_DEFAULT_PORTS = {"http": "80", "https": "443"}


@dataclasses.dataclass(frozen=True)
class DedupSettings:
    """Which keys make two articles the same, and which URL query parameters are tracking noise."""

    by_url: bool = True
    by_guid: bool = True
    by_content: bool = True
    tracking_parameters: tuple[str, ...] = DEFAULT_TRACKING_PARAMETERS
    # How far back (in event time) earlier runs' near-duplicate signatures are read.
    lookback_seconds: int = dataclasses.field(default=14 * 86400, metadata={"unit": "seconds"})
    # How long an article written is remembered after it was last seen in a feed (batch key index, streaming state).
    forget_after_seconds: int = dataclasses.field(default=30 * 86400, metadata={"unit": "seconds"})


@functools.lru_cache(maxsize=16)
def _tracking_rules(tracking_parameters: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """(exact names, name prefixes) of tracking parameters, lower-cased: built once per list, not once per URL
    (ParseEntries canonicalises every entry's link)."""
    exact = frozenset(p.lower() for p in tracking_parameters if not p.endswith("*"))
    prefixes = tuple(p[:-1].lower() for p in tracking_parameters if p.endswith("*"))
    return exact, prefixes


def canonical_url(url: str, tracking_parameters: Iterable[str] = DEFAULT_TRACKING_PARAMETERS) -> str:
    """The URL with scheme and host lower-cased, default port, fragment and tracking parameters removed,
    and the remaining query sorted. A string that is not an absolute URL is returned stripped, unchanged."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    netloc = host if ":" not in host else f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and str(port) != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    if parts.username:
        netloc = f"{parts.username}{':' + parts.password if parts.password else ''}@{netloc}"
    exact, prefixes = _tracking_rules(tuple(tracking_parameters))
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in exact and not (prefixes and k.lower().startswith(prefixes))
    )
    return urlunsplit((scheme, netloc, parts.path or "/", urlencode(query), ""))


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


def identity_keys(article: Article) -> list[tuple[str, int]]:
    """The (index column, key hash) pairs under which an article is looked up among those already written: its id,
    canonical URL and content hash, each when not empty."""
    values = (article.article_id, article.url, article.content_hash)
    return [(column, key_hash(value)) for column, value in zip(INDEX_KEY_COLUMNS, values) if value]


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

    def process(self, article: Article, written_keys: list[tuple[str, int]]) -> Iterable:
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

    def expand(self, articles: beam.PCollection) -> beam.PCollection:
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
