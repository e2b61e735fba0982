"""The one element type that flows through every stage, and its Parquet schema.

An `Article` is created by ParseEntries from one feed entry and refined by each later stage with
`dataclasses.replace` (stages never mutate an element: Beam may hand the same object to two consumers).
Until CleanArticles has run, `title` and `text` hold the entry's raw markup; afterwards they are plain text.

A `DeadLetter` is the record of something that could not become (or stay) an Article: a feed that failed to
fetch or parse, an entry with nothing in it, an article left empty by cleaning. Every stage routes its
rejects to the `dead_letters` output, and WriteParquetPartitions writes them all to one place.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any, NamedTuple

import apache_beam as beam
import pyarrow as pa

UTC = dt.timezone.utc

# Dead letters keep at most this much of the raw input: enough to debug, never a copy of a whole feed.
RAW_EXCERPT_BYTES = 4096


@dataclasses.dataclass(frozen=True)
class Article:
    """One news article. Stages refine it with `dataclasses.replace`; see the README for each column."""

    article_id: str
    feed_url: str
    source: str
    url: str = ""
    guid: str = ""
    title: str = ""
    text: str = ""
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


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A rejected feed or entry, with the stage that rejected it and why."""

    stage: str
    reason: str
    feed_url: str
    message: str = ""
    entry_key: str = ""
    status: int | None = None
    retry_after_seconds: float | None = None
    raw_excerpt: str = ""
    time: dt.datetime | None = None
    run_id: str = ""

    @property
    def is_entry(self) -> bool:
        """True when this rejects one entry (it counts in the reconciliation), False for a whole feed."""
        return bool(self.entry_key)


class Routed(NamedTuple):
    """What every stage returns: the articles that go on, and the dead letters it produced."""

    articles: beam.PCollection
    dead_letters: beam.PCollection


DEAD_LETTER_TAG = "dead_letters"

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

DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("feed_url", pa.string()),
        pa.field("entry_key", pa.string()),
        pa.field("status", pa.int32()),
        pa.field("retry_after_seconds", pa.float64()),
        pa.field("message", pa.string()),
        pa.field("raw_excerpt", pa.string()),
        pa.field("time", _TS),
        pa.field("run_id", pa.string()),
    ]
)


def article_row(article: Article) -> dict[str, Any]:
    """The Parquet row of an article (columns of ARTICLE_SCHEMA only)."""
    row = {name: getattr(article, name) for name in ARTICLE_SCHEMA.names}
    row["authors"] = list(article.authors)
    row["tags"] = list(article.tags)
    row["labels"] = list(article.labels)
    return row


def dead_letter_row(letter: DeadLetter) -> dict[str, Any]:
    """The Parquet row of a dead letter."""
    return {name: getattr(letter, name) for name in DEAD_LETTER_SCHEMA.names}


def stable_id(*parts: str) -> str:
    """A 32-hex-digit id that depends only on `parts`, so the same entry gets the same id in every run."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


def excerpt(raw: bytes | str | None, limit: int = RAW_EXCERPT_BYTES) -> str:
    """At most `limit` bytes of `raw` as text, cut on a character boundary."""
    if raw is None:
        return ""
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else bytes(raw)
    return data[:limit].decode("utf-8", "ignore")


def utcnow() -> dt.datetime:
    """Now, in UTC, to the microsecond (Parquet's resolution)."""
    return dt.datetime.now(UTC)
