"""ParseEntries: turn fetched feed documents into Articles, one per entry, one entry at a time.

The readers (transforms/readers/) do the reading: RSS and Atom streamed with lxml, feedparser for what that cannot
read (flagged `malformed_feed`, a feed-level dead letter whose entries go on), JSON Feed; a document that is not a
feed at all (an HTML page, say) is a dead letter `not_a_feed`, and one no charset decodes is `bad_encoding`
(transforms/charsets.py). A 304 (nothing changed since the last run) has no entries and is no error.

Every entry is handled on its own: an entry with no title, no text and no link is a dead letter `empty_entry`, one
that raises anything while being read is a dead letter `bad_entry`, and the others go on. When a whole feed cannot
be read (`not_a_feed`, `bad_encoding`, `parse_error`), the entries it appears to hold are counted as read and each
becomes an entry dead letter of the same reason, so the run's counts still see them.

Beside the articles, each feed yields a `FeedReport` (transforms/feed_report.py): validators, body hash, entries
seen and the feed's own polling hint (RSS `<ttl>`), from which the driver keeps the feed's health.

The event time is settled while reading, where all the dates of an entry are known: `published`, else `updated`,
else the fetch time (`ParseSettings` says which dates are trusted). Only http(s) links are kept as an article's
`url` (a link with another scheme or an invalid port is dropped and counted).

    python -m pytest tests/transforms/test_parse.py -q
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Literal, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from transforms import spool
from transforms.article import Article
from transforms.counters import (
    ARTICLES_PARSED,
    ENTRIES_READ,
    FEEDS_PARSED,
    MALFORMED_FEEDS,
    NOT_A_FEED,
    NOT_MODIFIED,
    counter,
)
from transforms.dead_letter import DEAD_LETTER_TAG, DeadLetter, DeadLetterOutput, reject
from transforms.feed import FetchedFeed
from transforms.feed_report import FeedReport, body_hash, max_age_seconds
from transforms.readers import read_entries
from transforms.readers.base import STAGE, FeedStats, ParseSettings, feed_problem
from transforms.spool import Body


@dataclasses.dataclass
class ParsedFeed:
    """What one document yielded, collected: articles, rejected entries, and the feed-level problem if any."""

    articles: list[Article]
    rejects: list[DeadLetter]
    problem: DeadLetter | None = None
    entries_read: int = 0
    ttl_seconds: float | None = None
    stats: FeedStats | None = None


def parse_feed(fetched: FetchedFeed, settings: ParseSettings = ParseSettings()) -> ParsedFeed:
    """Parse one FetchedFeed into lists of Articles and dead letters. Never raises.

    For tests and tools; the pipeline uses `iter_feed`, which does not hold a feed's articles all at once.
    """
    stats = FeedStats()
    articles, rejects = [], []
    for item in iter_feed(fetched, settings, stats):
        (rejects if isinstance(item, DeadLetter) else articles).append(item)
    return ParsedFeed(articles, rejects, stats.problem, stats.entries_read, stats.ttl_seconds, stats)


def iter_feed(
    fetched: FetchedFeed, settings: ParseSettings = ParseSettings(), stats: FeedStats | None = None
) -> Iterator[Article | DeadLetter]:
    """Articles and entry dead letters of one FetchedFeed, one at a time; `stats` gets the rest. Never raises."""
    stats = stats if stats is not None else FeedStats()
    if fetched.not_modified:
        return
    try:
        yield from read_entries(fetched, settings, stats)
    except Exception as err:  # noqa: BLE001 - a parser bug costs this feed (counted), not the run
        stats.problem = feed_problem(fetched, "parse_error", f"{type(err).__name__}: {err}")
    if stats.problem is not None and stats.problem.reason != "malformed_feed":
        yield from _unread_entries(fetched, stats)


# An entry element as it starts in the bytes, for counting the entries of a feed that could not be read.
_ENTRY_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)[\s>/]")
# A spooled body is counted a chunk at a time, so a tag cut by a chunk's end is carried into the next chunk, up to
# this long: libxml2 refuses longer names (XML_MAX_NAME_LENGTH, 50,000) without huge_tree, which is never set.
_LONGEST_TAG = 64 * 1024


def count_entry_tags(body: Body) -> int:
    """How many entry elements (`<item`, `<entry`, any prefix) the bytes seem to start."""
    if isinstance(body, bytes):
        return len(_ENTRY_TAG.findall(body))
    total, carry = 0, b""
    for part in spool.chunks(body):
        data = carry + part
        # A match holds one "<", its first byte: everything before the last "<" is counted now, and the rest
        # waits for the next chunk, unless it is longer than any tag can be.
        cut = data.rfind(b"<", max(0, len(data) - _LONGEST_TAG))
        cut = len(data) if cut < 0 else cut
        total += len(_ENTRY_TAG.findall(data, 0, cut))
        carry = data[cut:]
    return total + len(_ENTRY_TAG.findall(carry))


def _unread_entries(fetched: FetchedFeed, stats: FeedStats) -> Iterator[DeadLetter]:
    """One entry dead letter per entry the document seems to hold beyond those read, so the run counts them."""
    problem = stats.problem
    start = stats.entries_read
    total = count_entry_tags(fetched.body)
    for index in range(start, total):
        stats.entries_read += 1
        yield reject(
            STAGE,
            problem.reason,
            feed_url=fetched.source.url,
            entry_key=f"{fetched.url}#entry-{index}",
            message=f"entry {index + 1} of {total} in a feed that could not be read",
            time=problem.time,
        )


def feed_report(fetched: FetchedFeed, stats: FeedStats | ParsedFeed) -> FeedReport:
    """The health report of a feed that was fetched (whether or not it parsed)."""
    failed = stats.problem is not None and stats.problem.reason != "malformed_feed"
    return FeedReport(
        feed_url=fetched.source.url,
        fetched_at=fetched.fetched_at,
        ok=not failed,
        status=fetched.status,
        error=f"{stats.problem.reason}: {stats.problem.message}"[:500] if failed else "",
        not_modified=fetched.not_modified,
        sent_validators=bool(fetched.source.etag or fetched.source.last_modified),
        etag=fetched.header("ETag"),
        last_modified=fetched.header("Last-Modified"),
        body_hash=body_hash(fetched.body) if not fetched.not_modified else "",
        entries=stats.entries_read,
        ttl_seconds=stats.ttl_seconds,
        max_age_seconds=max_age_seconds(fetched.header("Cache-Control")),
    )


# The stage


class FeedParser:
    """Reads fetched feeds into Articles, counting as it goes: the step ParseEntries runs in its DoFn and the
    per-feed loop (pipeline/plane/feeds.py) calls directly, so both read, count and reject by the same code."""

    def __init__(self, settings: ParseSettings):
        self._settings = settings
        self._feeds = counter(FEEDS_PARSED)
        self._entries = counter(ENTRIES_READ)
        self._articles = counter(ARTICLES_PARSED)
        self._rejects = Metrics.counter(STAGE, "empty_entries")
        self._bad_entries = Metrics.counter(STAGE, "bad_entries")
        self._unread = Metrics.counter(STAGE, "unread_entries")
        self._malformed = counter(MALFORMED_FEEDS)
        self._not_feeds = counter(NOT_A_FEED)
        self._not_modified = counter(NOT_MODIFIED)
        self._repaired = Metrics.counter(STAGE, "encoding_repaired_feeds")
        self._links_dropped = Metrics.counter(STAGE, "links_dropped")
        self._dates_untrusted = Metrics.counter(STAGE, "dates_untrusted")

    def parse(self, fetched: FetchedFeed) -> Iterator[Article | DeadLetter | FeedReport]:
        """The feed's articles and dead letters, one at a time as they are read (a feed's articles are never all
        in memory together), then its FeedReport."""
        stats = FeedStats()
        for item in iter_feed(fetched, self._settings, stats):
            if isinstance(item, DeadLetter):
                {"empty_entry": self._rejects, "bad_entry": self._bad_entries}.get(item.reason, self._unread).inc()
            else:
                self._articles.inc()
            yield item
        self._entries.inc(stats.entries_read)
        self._links_dropped.inc(stats.links_dropped)
        self._dates_untrusted.inc(stats.dates_untrusted)
        if stats.encoding_repaired:
            self._repaired.inc()
        if stats.problem is not None:
            (self._malformed if stats.problem.reason == "malformed_feed" else self._not_feeds).inc()
            yield stats.problem
        if stats.problem is None or stats.problem.reason == "malformed_feed":
            self._feeds.inc()
        if fetched.not_modified:
            self._not_modified.inc()
        yield feed_report(fetched, stats)


class _ParseFeedFn(beam.DoFn):
    """FeedParser in a DoFn: articles on the main output, dead letters and the report on their tags."""

    def __init__(self, settings: ParseSettings):
        self._parser = FeedParser(settings)

    def process(
        self, fetched: FetchedFeed
    ) -> Iterator[Article | DeadLetterOutput | TaggedOutput[Literal[REPORT_TAG], FeedReport]]:
        for item in self._parser.parse(fetched):
            if isinstance(item, DeadLetter):
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, item)
            elif isinstance(item, FeedReport):
                yield beam.pvalue.TaggedOutput(REPORT_TAG, item)
            else:
                yield item


REPORT_TAG = "reports"


class Parsed(NamedTuple):
    """What ParseEntries returns: articles, dead letters, and one FeedReport per feed."""

    articles: beam.PCollection
    dead_letters: beam.PCollection
    reports: beam.PCollection


class ParseEntries(beam.PTransform):
    """FetchedFeed -> Article per entry; unreadable feeds and entries -> dead letters; a report per feed."""

    def __init__(self, settings: ParseSettings = ParseSettings()):
        super().__init__()
        self._settings = settings

    def expand(self, feeds: beam.PCollection):
        outputs = feeds | "ParseFeed" >> beam.ParDo(_ParseFeedFn(self._settings)).with_outputs(
            DEAD_LETTER_TAG, REPORT_TAG, main="articles"
        )
        return Parsed(outputs.articles, outputs[DEAD_LETTER_TAG], outputs[REPORT_TAG])
