"""What every feed reader shares: the settings, the stats of one document, and the turning of an entry's fields
into an Article (or a dead letter).

A format reader (xml.py, salvage.py, json_feed.py) finds the entries of a document and, for each, hands
`EntryReader.read` two callables: one giving the entry's fields (link, base, guid, title, text, authors, tags,
published, updated, language), one giving its raw text for a dead letter. Everything after that is here, once:
the link, the id, the event time and its trust, the empty entry, the entry that raises.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from collections.abc import Callable
from typing import Any

from transforms import spool
from transforms.article import Article, stable_id
from transforms.dead_letter import RAW_EXCERPT_BYTES, DeadLetter, reject
from transforms.feed import FetchedFeed
from transforms.urls import article_link, canonical_url

STAGE = "parse"


@dataclasses.dataclass(frozen=True)
class ParseSettings:
    """How entries are read. A date further than `max_future_seconds` past the fetch time, or before
    `earliest_year`, is not trusted (the fetch time is used instead)."""

    max_future_seconds: int = dataclasses.field(default=86400, metadata={"unit": "seconds"})
    earliest_year: int = 1990


def is_plausible(value: dt.datetime | None, fetched: dt.datetime, settings: ParseSettings) -> bool:
    """Whether a date can be trusted: after the start of `earliest_year` and not too far past the fetch."""
    if value is None:
        return False
    return value.year >= settings.earliest_year and value <= fetched + dt.timedelta(seconds=settings.max_future_seconds)


def resolve_event_time(
    published: dt.datetime | None,
    updated: dt.datetime | None,
    fetched: dt.datetime,
    max_future_seconds: int,
    earliest_year: int = ParseSettings.earliest_year,
) -> tuple[dt.datetime, str]:
    """The event time of an entry and where it came from: `published`, `updated` or `fetched`.

    A date more than `max_future_seconds` after the fetch is a publisher's mistake (or a scheduled post leaking),
    and one before `earliest_year` a placeholder: neither is trusted, and the fetch time is used instead.
    """
    settings = ParseSettings(max_future_seconds, earliest_year)
    for value, source in ((published, "published"), (updated, "updated")):
        if is_plausible(value, fetched, settings):
            return value, source
    return fetched, "fetched"


@dataclasses.dataclass
class FeedStats:
    """What reading one document found besides its entries; filled in while the entries are read."""

    entries_read: int = 0
    ttl_seconds: float | None = None
    problem: DeadLetter | None = None
    encoding_repaired: bool = False
    links_dropped: int = 0
    dates_untrusted: int = 0
    parser: str = ""  # "lxml", "feedparser" or "json"


class EntryReader:
    """Turns the fields of one entry into an Article or a dead letter; counts what it sees."""

    def __init__(self, fetched: FetchedFeed, settings: ParseSettings, stats: FeedStats):
        self.fetched = fetched
        self.settings = settings
        self.stats = stats
        self.feed_language = ""

    def read(self, index: int, fields: Callable[[], dict[str, Any]], raw: Callable[[], str]) -> Article | DeadLetter:
        """One entry: any exception while reading it makes it a `bad_entry` dead letter, never more."""
        self.stats.entries_read += 1
        try:
            return self._article(index, fields(), raw)
        except Exception as err:  # noqa: BLE001 - one entry's surprise must not cost the others
            try:
                text = raw()
            except Exception:  # noqa: BLE001
                text = ""
            return self._reject(index, "", "bad_entry", f"{type(err).__name__}: {err}", text)

    def _article(self, index: int, fields: dict[str, Any], raw: Callable[[], str]) -> Article | DeadLetter:
        fetched, source = self.fetched, self.fetched.source
        link = fields.get("link") or ""
        base = urllib.parse.urljoin(fetched.url, fields["base"]) if fields.get("base") else fetched.url
        url = article_link(link, base)
        if link and not url:
            self.stats.links_dropped += 1
        url = canonical_url(url) if url else ""
        guid = (fields.get("guid") or "").strip()
        title, text = (fields.get("title") or "").strip(), (fields.get("text") or "").strip()
        if not (title or text or url):
            return self._reject(index, url or guid, "empty_entry", "entry has no title, no text and no link", raw())
        # The id follows the article, not the feed: the same URL seen in two feeds is the same article.
        if url:
            article_id = stable_id("url", url)
        elif guid:
            article_id = stable_id("guid", source.url, guid)
        else:
            article_id = stable_id("entry", source.url, title, text)
        published, updated = fields.get("published"), fields.get("updated")
        event_time, date_source = resolve_event_time(
            published, updated, fetched.fetched_at, self.settings.max_future_seconds, self.settings.earliest_year
        )
        if any(d is not None and not is_plausible(d, fetched.fetched_at, self.settings) for d in (published, updated)):
            self.stats.dates_untrusted += 1
        return Article(
            article_id=article_id,
            feed_url=source.url,
            source=source.name,
            url=url,
            guid=guid,
            title=title,
            text=text,
            authors=tuple(fields.get("authors") or ()),
            tags=tuple(fields.get("tags") or ()),
            published_at=event_time,
            updated_at=updated if is_plausible(updated, fetched.fetched_at, self.settings) else None,
            fetched_at=fetched.fetched_at,
            date_source=date_source,
            declared_language=source.language or fields.get("language") or self.feed_language,
            default_topic=source.topic,
            encoding_repaired=self.stats.encoding_repaired,
        )

    def _reject(self, index: int, key: str, reason: str, message: str, raw: str) -> DeadLetter:
        return reject(
            STAGE,
            reason,
            feed_url=self.fetched.source.url,
            entry_key=key or f"{self.fetched.url}#entry-{index}",
            message=message,
            raw=raw,
        )


def language_code(value: Any) -> str:
    """'en-US' -> 'en'; '' for nothing."""
    if not value or not isinstance(value, str):
        return ""
    return value.strip().replace("_", "-").split("-")[0].lower()


def ttl_seconds(value: Any) -> float | None:
    """RSS <ttl> is in minutes."""
    try:
        minutes = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return minutes * 60 if 0 < minutes < float("inf") else None


def feed_problem(fetched: FetchedFeed, reason: str, message: str) -> DeadLetter:
    raw = spool.head(fetched.body, RAW_EXCERPT_BYTES)  # all a dead letter keeps of it
    return reject(STAGE, reason, feed_url=fetched.source.url, status=fetched.status, message=message, raw=raw)
