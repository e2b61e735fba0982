"""The one element type that flows through every stage, and its Parquet schema.

An `Article` is created by ParseEntries from one feed entry and refined by each later stage with
`dataclasses.replace` (stages never mutate an element: Beam may hand the same object to two consumers).
Until CleanArticles has run, `title` and `text` hold the entry's raw markup; afterwards they are plain text.

A `DeadLetter` is the record of something that could not become (or stay) an Article: a feed that failed to
fetch or parse, an entry with nothing in it, an article left empty by cleaning. Every stage builds its rejects with
`reject` and routes them to the `dead_letters` output; WriteDeadLetters writes them all to one place.

Neither is stamped with the run id by a stage: the sink sets the `run_id` column of every row it writes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import operator
import os
import traceback
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apache_beam as beam
import pyarrow as pa
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms import window as beam_window
from apache_beam.utils.timestamp import Duration, Timestamp

UTC = dt.timezone.utc

# Dead letters keep at most this much of the raw input: enough to debug, never a copy of a whole feed.
RAW_EXCERPT_BYTES = 4096
# And at most this much of a message (some libraries put a whole document in an exception's text).
MESSAGE_CHARS = 1000


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
        # applies). The default reduction pickles a dict of 28 field names and looks up the class's slot names on
        # every call; a tuple of the values in field order is a fifth smaller and about twice as fast to round-trip.
        return _article_from_values, (_ARTICLE_VALUES(self),)


_ARTICLE_FIELDS = tuple(f.name for f in dataclasses.fields(Article))
_ARTICLE_VALUES = operator.attrgetter(*_ARTICLE_FIELDS)


def _article_from_values(values: tuple) -> Article:
    # Bypasses the frozen __init__ (28 guarded setattrs): the values came from a valid Article.
    article = object.__new__(Article)
    article.__dict__.update(zip(_ARTICLE_FIELDS, values))
    return article


# Article identity: the canonical form of a link (ParseEntries keys articles by it, dedup compares it).

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


@dataclasses.dataclass(frozen=True)
class FeedSource:
    """One configured feed. `url` is http(s), file://, or an absolute local path.

    `etag` and `last_modified` are the validators of the last fetch; when set, the request is conditional
    (If-None-Match / If-Modified-Since) and a 304 comes back as a FetchedFeed with `not_modified`.
    """

    name: str
    url: str
    language: str = ""
    topic: str = ""
    # Full article text for this feed's entries: "off", "when_short" or "always"; "" follows the config's extract.mode.
    extract: str = ""
    etag: str = ""
    last_modified: str = ""


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
    run_id: str = ""  # set in the written row by WriteDeadLetters, not by the stage that rejects

    @property
    def is_page(self) -> bool:
        """True for a page that could not be fetched or extracted: its article was kept with the feed's text, so
        it is not a lost entry and does not count in the reconciliation."""
        return self.stage == PAGE_STAGE

    @property
    def is_entry(self) -> bool:
        """True when this rejects one entry (it counts in the reconciliation), False for a whole feed or a page."""
        return bool(self.entry_key) and not self.is_page


def reject(
    stage: str,
    reason: str,
    *,
    article: Article | None = None,
    feed_url: str = "",
    entry_key: str = "",
    message: str = "",
    error: BaseException | None = None,
    status: int | None = None,
    retry_after_seconds: float | None = None,
    raw: bytes | str | None = None,
    time: dt.datetime | None = None,
) -> DeadLetter:
    """The one way a stage builds a DeadLetter.

    `article` gives the feed URL and the entry key (its id) unless they are given. `error` gives the message when
    there is none: the exception's type and text and where it was raised. `raw` is kept as an excerpt of at most
    RAW_EXCERPT_BYTES, the message is cut to MESSAGE_CHARS, and `time` defaults to now. No run id: the sink stamps it.
    """
    if article is not None:
        feed_url = feed_url or article.feed_url
        entry_key = entry_key or article.article_id
    if error is not None and not message:
        message = describe_error(error)
    return DeadLetter(
        stage=stage,
        reason=reason,
        feed_url=feed_url,
        entry_key=entry_key,
        message=message[:MESSAGE_CHARS],
        status=status,
        retry_after_seconds=retry_after_seconds,
        raw_excerpt=excerpt(raw),
        time=time or utcnow(),
    )


def describe_error(error: BaseException) -> str:
    """`Type: text (at file.py:line in function)`: the traceback's last frame is enough to find the bug."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


class Routed(NamedTuple):
    """What every stage returns: the articles that go on, and the dead letters it produced."""

    articles: beam.PCollection
    dead_letters: beam.PCollection


DEAD_LETTER_TAG = "dead_letters"
# A DoFn's dead-letter output, in its return hint: Beam (2.78+) then types the main output as its element alone.
DeadLetterOutput = TaggedOutput[Literal[DEAD_LETTER_TAG], DeadLetter]
# The stage of dead letters about an article's page (FetchArticlePages): the article itself went on.
PAGE_STAGE = "extract"

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


# The identity keys, each under the column of the key index (`_state/seen/`, pipeline.seen_index) that holds its hash.
INDEX_KEY_COLUMNS = ("id_key", "url_key", "content_key")


def key_hash(value: str) -> int:
    """The signed 64-bit hash under which a key is kept in the index. Two different keys share one with odds of
    about 1 in 2**64 per pair, so a run of 10,000 articles against 15 million indexed keys wrongly finds one already
    written with odds of about 1 in 10**8."""
    return int.from_bytes(
        hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little", signed=True
    )


def excerpt(raw: bytes | str | None, limit: int = RAW_EXCERPT_BYTES) -> str:
    """At most `limit` bytes of `raw` as text, cut on a character boundary."""
    if raw is None:
        return ""
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else bytes(raw)
    return data[:limit].decode("utf-8", "ignore")


# Fixes the clock (ISO 8601, e.g. 2027-01-10T00:00:00Z) for tests: `newsbeam run --now` sets it for its run.
NOW_ENV = "NEWSBEAM_NOW"


def parse_instant(value: str) -> dt.datetime:
    """An ISO 8601 instant as an aware UTC datetime (UTC when it names no zone); ValueError when it is not one."""
    instant = dt.datetime.fromisoformat(value.strip())
    return (instant if instant.tzinfo else instant.replace(tzinfo=UTC)).astimezone(UTC)


def utcnow() -> dt.datetime:
    """Now, in UTC, to the microsecond (Parquet's resolution); the instant in NEWSBEAM_NOW when it is set."""
    fixed = os.environ.get(NOW_ENV)
    return parse_instant(fixed) if fixed else dt.datetime.now(UTC)


_END_OF_GLOBAL_WINDOW = beam_window.GlobalWindow().max_timestamp()


def forget_at(article: Article, lookback_seconds: float) -> Timestamp:
    """When a key last seen with this article may be forgotten: `max(published_at, fetched_at) + lookback`, in event
    time. Counted from the fetch too, so an old entry still in its feed is not re-admitted at every poll."""
    times = [t for t in (article.published_at, article.fetched_at) if t is not None]
    if not times:
        return _END_OF_GLOBAL_WINDOW
    return min(Timestamp.from_utc_datetime(max(times)) + Duration(seconds=lookback_seconds), _END_OF_GLOBAL_WINDOW)
