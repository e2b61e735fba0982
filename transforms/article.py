"""The one element type that flows through every stage, its Parquet schema, and its identity.

An `Article` is created by ParseEntries from one feed entry and refined by each later stage with
`dataclasses.replace` (stages never mutate an element: Beam may hand the same object to two consumers).
Until CleanArticles has run, `title` and `text` hold the entry's raw markup; afterwards they are plain text.

Its identity: `stable_id` makes its `article_id`, and `identity_keys` are the hashes under which the key index
(`_state/seen/`, pipeline.seen_index) remembers that it was written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import operator
from typing import Any

import pyarrow as pa


@dataclasses.dataclass(frozen=True)
class Article:
    """One news article. Stages refine it with `dataclasses.replace`; see docs/output.md for each column."""

    article_id: str
    feed_url: str
    source: str
    url: str = ""
    guid: str = ""
    title: str = ""
    text: str = ""
    summary: str = ""
    text_source: str = ""
    canonical_url: str = ""
    authors: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    published_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    fetched_at: dt.datetime | None = None
    date_source: str = ""
    declared_language: str = ""
    default_topic: str = ""
    language: str = "und"
    language_score: float = 0.0
    topic: str = "unknown"
    topic_score: float = 0.0
    labels: tuple[str, ...] = ()
    content_hash: str = ""
    duplicate_count: int = 0
    cluster_id: str = ""
    cluster_size: int = 1
    duplicate_of: str = ""
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    run_id: str = ""
    encoding_repaired: bool = False  # the feed's bytes contradicted its declared charset and were decoded otherwise

    def __reduce__(self):
        # Beam pickles every Article between fused stages (most PCollections are untyped, so no registered coder
        # applies). The default reduction pickles a dict of every field name; a tuple of the values in field order
        # is smaller and faster to round-trip (benchmarks/cpu_profile.py shows the pickling's share of a run).
        return _article_from_values, (_ARTICLE_VALUES(self),)


_ARTICLE_FIELDS = tuple(f.name for f in dataclasses.fields(Article))
_ARTICLE_VALUES = operator.attrgetter(*_ARTICLE_FIELDS)


def _fast_init():
    """Article's __init__ with the dataclass's signature, filling the instance's __dict__ in one step. The frozen
    dataclass's own sets each of the 32 fields through object.__setattr__ (about 8 us an Article, most of what a
    dataclasses.replace costs), and each article is built about five times (read, cleaned, classified, ...).
    The fields have no factories, converters or __post_init__, so both build the same instance."""
    fields = dataclasses.fields(Article)
    assert all(f.default_factory is dataclasses.MISSING and f.init for f in fields)
    params = ", ".join(f.name if f.default is dataclasses.MISSING else f"{f.name}=_default_{f.name}" for f in fields)
    values = ", ".join(f"{f.name!r}: {f.name}" for f in fields)
    namespace = {f"_default_{f.name}": f.default for f in fields} | {"_set": object.__setattr__}
    exec(f"def __init__(self, {params}):\n    _set(self, '__dict__', {{{values}}})\n", namespace)  # noqa: S102
    init = namespace["__init__"]
    init.__qualname__ = "Article.__init__"
    init.__doc__ = Article.__init__.__doc__
    return init


Article.__init__ = _fast_init()


def _article_from_values(values: tuple) -> Article:
    # Bypasses the frozen __init__ (a guarded setattr per field): the values came from a valid Article.
    article = object.__new__(Article)
    article.__dict__.update(zip(_ARTICLE_FIELDS, values))
    return article


_TS = pa.timestamp("us", tz="UTC")

ARTICLE_SCHEMA = pa.schema(
    [
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("guid", pa.string()),
        pa.field("feed_url", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("title", pa.string()),
        pa.field("text", pa.string()),
        pa.field("summary", pa.string()),
        pa.field("text_source", pa.string()),
        pa.field("canonical_url", pa.string()),
        pa.field("authors", pa.list_(pa.string())),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("published_at", _TS, nullable=False),
        pa.field("updated_at", _TS),
        pa.field("fetched_at", _TS),
        pa.field("date_source", pa.string()),
        pa.field("declared_language", pa.string()),
        pa.field("language", pa.string()),
        pa.field("language_score", pa.float32()),
        pa.field("topic", pa.string()),
        pa.field("topic_score", pa.float32()),
        pa.field("labels", pa.list_(pa.string())),
        pa.field("content_hash", pa.string()),
        pa.field("duplicate_count", pa.int32()),
        pa.field("cluster_id", pa.string()),
        pa.field("cluster_size", pa.int32()),
        pa.field("duplicate_of", pa.string()),
        pa.field("window_start", _TS),
        pa.field("window_end", _TS),
        pa.field("run_id", pa.string()),
        pa.field("encoding_repaired", pa.bool_()),
    ]
)


def article_row(article: Article) -> dict[str, Any]:
    """The Parquet row of an article (columns of ARTICLE_SCHEMA only)."""
    row = {name: getattr(article, name) for name in ARTICLE_SCHEMA.names}
    row["authors"] = list(article.authors)
    row["tags"] = list(article.tags)
    row["labels"] = list(article.labels)
    return row


def stable_id(*parts: str) -> str:
    """A 32-hex-digit id that depends only on `parts`, so the same entry gets the same id in every run."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


# The identity keys, each under the column of the key index (`_state/seen/`, pipeline.seen_index) that holds its hash.
INDEX_KEY_COLUMNS = ("id_key", "url_key", "content_key")


def key_hash(value: str) -> int:
    """The signed 64-bit hash under which a key is kept in the index. Two different keys share one with odds of
    about 1 in 2**64 per pair: a run of n articles against an index of m keys wrongly finds one already written
    with odds of about n * m / 2**64."""
    return int.from_bytes(
        hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little", signed=True
    )


def identity_keys(article: Article) -> list[tuple[str, int]]:
    """The (index column, key hash) pairs under which an article is looked up among those already written: its id,
    canonical URL and content hash, each when not empty. Before DeduplicateArticles has set `content_hash` (when
    the page step (transforms/extract.py) asks whether a page is wanted), that is the id and URL alone."""
    values = (article.article_id, article.url, article.content_hash)
    return [(column, key_hash(value)) for column, value in zip(INDEX_KEY_COLUMNS, values) if value]
