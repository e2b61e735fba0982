"""ParseEntries: turn fetched feed documents into Articles, one per entry.

RSS 0.9x/1.0/2.0 and Atom 0.3/1.0 are read by feedparser (given the response's Content-Type so that the declared
charset is honoured); JSON Feed 1.x, which feedparser does not read, is parsed here. A feed feedparser flags as
malformed ("bozo") keeps the entries it salvaged; the flag is counted and reported as a dead letter with reason
`malformed_feed` (a feed-level record, not an entry). A document that is not a feed at all (an HTML page, say) is a
dead letter `not_a_feed`. An entry with no title, no text and no link is a dead letter `empty_entry`. A 304 (the
feed has not changed since the last run) has no entries and is no error.

Beside the articles, each feed yields a `FeedReport` (transforms.health): validators, body hash, entries seen and
the feed's own polling hint (RSS `<ttl>`), from which the driver keeps the feed's health.

The event time is settled here, where all the dates of an entry are known: `published`, else `updated`, else the
fetch time; a date more than `max_future_seconds` after the fetch is replaced by the fetch time. `date_source` says
which was used. WindowByEventTime then only assigns windows.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import email.utils
import json
import re
from typing import Any, Iterable, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.article import (
    DEAD_LETTER_TAG,
    UTC,
    Article,
    DeadLetter,
    excerpt,
    stable_id,
    utcnow,
)
from transforms.dedup import canonical_url
from transforms.health import FeedReport, body_hash, max_age_seconds

_JSON_FEED_VERSION = re.compile(r"^https?://jsonfeed\.org/version/1(\.\d+)?/?$")


@dataclasses.dataclass(frozen=True)
class ParseSettings:
    """How entries are read. `max_future_seconds`: a date further than this past the fetch time is not trusted."""

    max_future_seconds: int = dataclasses.field(default=86400, metadata={"unit": "seconds"})


# feedparser only knows English month names; many real feeds (UOL, older Le Monde and El País feeds...) localise
# RFC 822 dates. Dropping the (redundant) day name and translating the month lets the standard parser do the rest.
_LOCALISED_MONTHS = {
    "ene": "Jan", "gen": "Jan", "janv": "Jan", "fev": "Feb", "fév": "Feb", "févr": "Feb", "fevr": "Feb",
    "mars": "Mar", "mär": "Mar", "mrz": "Mar", "abr": "Apr", "avr": "Apr", "mai": "May", "mag": "May",
    "juin": "Jun", "giu": "Jun", "juil": "Jul", "lug": "Jul", "ago": "Aug", "août": "Aug", "aout": "Aug",
    "set": "Sep", "sept": "Sep", "out": "Oct", "ott": "Oct", "okt": "Oct", "dez": "Dec", "dic": "Dec", "déc": "Dec",
}
_LEADING_DAY_NAME = re.compile(r"^\s*[^\W\d_]+\.?,\s*")
_MONTH_WORD = re.compile(r"(?<=\d\s)[^\W\d_]+\.?")


def parse_date(value: str | None) -> dt.datetime | None:
    """A feed date string as an aware UTC datetime, or None when it cannot be read.

    Accepts RFC 822 (also with localised day and month names), RFC 3339 / ISO 8601, and a bare date.
    """
    if not value or not value.strip():
        return None
    text = value.strip()
    for attempt in (text, _translate_date_words(text)):
        try:
            parsed = email.utils.parsedate_to_datetime(attempt)
        except (TypeError, ValueError, IndexError):
            parsed = None
        if parsed is None:
            try:
                parsed = dt.datetime.fromisoformat(attempt.replace("Z", "+00:00"))
            except ValueError:
                parsed = None
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)  # a date without a zone is read as UTC: the least surprising guess
            return parsed.astimezone(UTC)
    return None


def _translate_date_words(text: str) -> str:
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        return _LOCALISED_MONTHS.get(word.lower().rstrip("."), word)

    return _MONTH_WORD.sub(swap, _LEADING_DAY_NAME.sub("", text))


def resolve_event_time(
    published: dt.datetime | None,
    updated: dt.datetime | None,
    fetched: dt.datetime,
    max_future_seconds: int,
) -> tuple[dt.datetime, str]:
    """The event time of an entry and where it came from: `published`, `updated` or `fetched`.

    A date more than `max_future_seconds` after the fetch is a publisher's mistake (or a scheduled post leaking):
    it is not trusted, and the fetch time is used instead.
    """
    limit = fetched + dt.timedelta(seconds=max_future_seconds)
    for value, source in ((published, "published"), (updated, "updated")):
        if value is not None and value <= limit:
            return value, source
    return fetched, "fetched"


def _struct_to_datetime(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _language_code(value: str | None) -> str:
    """'en-US' -> 'en'; '' for nothing."""
    if not value:
        return ""
    return value.strip().replace("_", "-").split("-")[0].lower()


def is_json_feed(body: bytes, content_type: str) -> bool:
    """True when the document is (or claims to be) a JSON Feed rather than XML."""
    if "json" in content_type.lower():
        return True
    return body.lstrip()[:1] == b"{"


@dataclasses.dataclass
class ParsedFeed:
    """What one document yielded: articles, rejected entries, and the feed-level problem if any."""

    articles: list[Article]
    rejects: list[DeadLetter]
    problem: DeadLetter | None = None
    entries_read: int = 0
    ttl_seconds: float | None = None


def parse_feed(fetched: Any, settings: ParseSettings = ParseSettings(), run_id: str = "") -> ParsedFeed:
    """Parse one FetchedFeed (from transforms.fetch) into Articles and dead letters. Never raises for bad input."""
    if fetched.not_modified:
        return ParsedFeed([], [])
    if is_json_feed(fetched.body, fetched.content_type):
        return _parse_json_feed(fetched, settings, run_id)
    return _parse_xml_feed(fetched, settings, run_id)


def _benign_bozo() -> tuple[type, ...]:
    # A feed served as text/plain or octet-stream, or whose declared charset had to be overridden, is read fine:
    # those flags are about the server's headers, not a broken document.
    import feedparser

    return (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride)


def _parse_xml_feed(fetched: Any, settings: ParseSettings, run_id: str) -> ParsedFeed:
    import feedparser  # imported here: it is slow to import and only workers need it

    headers = {"content-type": fetched.content_type or "application/xml", "content-location": fetched.url}
    doc = feedparser.parse(fetched.body, response_headers=headers, sanitize_html=False)
    if not doc.get("version") and not doc.entries:
        message = str(doc.get("bozo_exception") or "no feed element found")
        return ParsedFeed([], [], _feed_problem(fetched, "not_a_feed", message, run_id))
    feed_language = _language_code(doc.feed.get("language"))
    # RSS 0.90/1.0 items have one date, dc:date, which feedparser files as `updated`; it is the publication date.
    single_date = doc.get("version", "") in ("rss090", "rss10")
    result = ParsedFeed([], [], None, len(doc.entries), _ttl_seconds(doc.feed.get("ttl")))
    if doc.get("bozo") and not isinstance(doc.get("bozo_exception"), _benign_bozo()):
        result.problem = _feed_problem(
            fetched,
            "malformed_feed",
            f"kept {len(doc.entries)} salvaged entries; {doc.get('bozo_exception')}",
            run_id,
        )
    for index, entry in enumerate(doc.entries):
        contents = [c for c in entry.get("content", []) if c.get("value")]
        text = max((c["value"] for c in contents), key=len, default="") or entry.get("summary", "")
        authors = [a.get("name", "") for a in entry.get("authors", []) if a.get("name")]
        if not authors and entry.get("author"):
            authors = [entry["author"]]
        tags = [t.get("term") or t.get("label") for t in entry.get("tags", [])]
        # dict.get, not entry.get: feedparser's get() silently substitutes `published` for a missing `updated`.
        published = _struct_to_datetime(dict.get(entry, "published_parsed")) or parse_date(dict.get(entry, "published"))
        updated = _struct_to_datetime(dict.get(entry, "updated_parsed")) or parse_date(dict.get(entry, "updated"))
        if single_date and published is None:
            published, updated = updated, None
        fields = dict(
            link=entry.get("link", ""),
            guid=entry.get("id", ""),
            title=entry.get("title", ""),
            text=text,
            authors=authors,
            tags=[t for t in tags if t],
            published=published,
            updated=updated,
            language=_language_code(entry.get("language")) or feed_language,
        )
        _add_entry(result, fetched, index, fields, json.dumps(_jsonable(entry))[:8192], settings, run_id)
    return result


def _parse_json_feed(fetched: Any, settings: ParseSettings, run_id: str) -> ParsedFeed:
    try:
        doc = json.loads(fetched.body.decode(_charset(fetched.content_type) or "utf-8", "replace"))
    except ValueError as err:
        return ParsedFeed([], [], _feed_problem(fetched, "not_a_feed", f"invalid JSON: {err}", run_id))
    if not isinstance(doc, dict) or not _JSON_FEED_VERSION.match(str(doc.get("version", ""))):
        return ParsedFeed([], [], _feed_problem(fetched, "not_a_feed", "JSON without a JSON Feed version", run_id))
    items = doc.get("items")
    if not isinstance(items, list):
        return ParsedFeed([], [], _feed_problem(fetched, "not_a_feed", "JSON Feed without an items list", run_id))
    feed_language = _language_code(doc.get("language"))
    result = ParsedFeed([], [], None, len(items))
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            item = {"_invalid": item}
        authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else [])
        fields = dict(
            link=str(item.get("url") or item.get("external_url") or ""),
            guid=str(item.get("id") or ""),
            title=str(item.get("title") or ""),
            text=str(item.get("content_html") or item.get("content_text") or item.get("summary") or ""),
            authors=[str(a.get("name")) for a in authors if isinstance(a, dict) and a.get("name")],
            tags=[str(t) for t in item.get("tags") or [] if t],
            published=parse_date(str(item.get("date_published") or "")),
            updated=parse_date(str(item.get("date_modified") or "")),
            language=_language_code(item.get("language")) or feed_language,
        )
        _add_entry(result, fetched, index, fields, json.dumps(item, default=str), settings, run_id)
    return result


def _add_entry(
    result: ParsedFeed,
    fetched: Any,
    index: int,
    fields: dict[str, Any],
    raw: str,
    settings: ParseSettings,
    run_id: str,
) -> None:
    source = fetched.source
    url = canonical_url(fields["link"]) if fields["link"] else ""
    guid = fields["guid"].strip()
    title, text = fields["title"].strip(), fields["text"].strip()
    entry_key = url or guid or f"{fetched.url}#entry-{index}"
    if not (title or text or url):
        result.rejects.append(
            DeadLetter(
                stage="parse",
                reason="empty_entry",
                feed_url=source.url,
                entry_key=entry_key,
                message="entry has no title, no text and no link",
                raw_excerpt=excerpt(raw),
                time=utcnow(),
                run_id=run_id,
            )
        )
        return
    # The id follows the article, not the feed: the same URL seen in two feeds is the same article.
    if url:
        article_id = stable_id("url", url)
    elif guid:
        article_id = stable_id("guid", source.url, guid)
    else:
        article_id = stable_id("entry", source.url, title, text)
    event_time, date_source = resolve_event_time(
        fields["published"], fields["updated"], fetched.fetched_at, settings.max_future_seconds
    )
    result.articles.append(
        Article(
            article_id=article_id,
            feed_url=source.url,
            source=source.name,
            url=url,
            guid=guid,
            title=title,
            text=text,
            authors=tuple(fields["authors"]),
            tags=tuple(fields["tags"]),
            published_at=event_time,
            updated_at=fields["updated"],
            fetched_at=fetched.fetched_at,
            date_source=date_source,
            declared_language=source.language or fields["language"],
            default_topic=source.topic,
            run_id=run_id,
        )
    )


def _ttl_seconds(value: Any) -> float | None:
    """RSS <ttl> is in minutes."""
    try:
        minutes = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return minutes * 60 if minutes > 0 else None


def feed_report(fetched: Any, parsed: ParsedFeed) -> FeedReport:
    """The health report of a feed that was fetched (whether or not it parsed)."""
    failed = parsed.problem is not None and parsed.problem.reason != "malformed_feed"
    return FeedReport(
        feed_url=fetched.source.url,
        fetched_at=fetched.fetched_at,
        ok=not failed,
        status=fetched.status,
        error=f"{parsed.problem.reason}: {parsed.problem.message}"[:500] if failed else "",
        not_modified=fetched.not_modified,
        sent_validators=bool(fetched.source.etag or fetched.source.last_modified),
        etag=fetched.header("ETag"),
        last_modified=fetched.header("Last-Modified"),
        body_hash=body_hash(fetched.body) if not fetched.not_modified else "",
        entries=parsed.entries_read,
        ttl_seconds=parsed.ttl_seconds,
        max_age_seconds=max_age_seconds(fetched.header("Cache-Control")),
    )


def _feed_problem(fetched: Any, reason: str, message: str, run_id: str) -> DeadLetter:
    return DeadLetter(
        stage="parse",
        reason=reason,
        feed_url=fetched.source.url,
        status=fetched.status,
        message=message[:1000],
        raw_excerpt=excerpt(fetched.body),
        time=utcnow(),
        run_id=run_id,
    )


def _charset(content_type: str) -> str:
    match = re.search(r"charset=([\w.:-]+)", content_type or "", re.I)
    return match.group(1) if match else ""


def _jsonable(value: Any) -> Any:
    """feedparser's entry as plain JSON, for the raw excerpt of a dead letter."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if not k.endswith("_parsed")}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class _ParseFeedFn(beam.DoFn):
    def __init__(self, settings: ParseSettings, run_id: str):
        self._settings = settings
        self._run_id = run_id
        self._feeds = Metrics.counter("parse", "feeds_parsed")
        self._entries = Metrics.counter("parse", "entries_read")
        self._articles = Metrics.counter("parse", "articles")
        self._rejects = Metrics.counter("parse", "empty_entries")
        self._malformed = Metrics.counter("parse", "malformed_feeds")
        self._not_feeds = Metrics.counter("parse", "not_a_feed")
        self._not_modified = Metrics.counter("parse", "not_modified")

    def process(self, fetched: Any) -> Iterable[Any]:
        try:
            parsed = parse_feed(fetched, self._settings, self._run_id)
        except Exception as err:  # a parser bug must not cost the run: the feed is recorded and the run goes on
            parsed = ParsedFeed([], [], _feed_problem(fetched, "parse_error", f"{type(err).__name__}: {err}", self._run_id))
        if parsed.problem is not None:
            (self._malformed if parsed.problem.reason == "malformed_feed" else self._not_feeds).inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, parsed.problem)
        if parsed.problem is None or parsed.problem.reason == "malformed_feed":
            self._feeds.inc()
        if fetched.not_modified:
            self._not_modified.inc()
        yield beam.pvalue.TaggedOutput(REPORT_TAG, feed_report(fetched, parsed))
        self._entries.inc(parsed.entries_read)
        self._articles.inc(len(parsed.articles))
        self._rejects.inc(len(parsed.rejects))
        for letter in parsed.rejects:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, letter)
        yield from parsed.articles


REPORT_TAG = "reports"


class Parsed(NamedTuple):
    """What ParseEntries returns: articles, dead letters, and one FeedReport per feed."""

    articles: beam.PCollection
    dead_letters: beam.PCollection
    reports: beam.PCollection


class ParseEntries(beam.PTransform):
    """FetchedFeed -> Article per entry; unreadable feeds and empty entries -> dead letters; a report per feed."""

    def __init__(self, settings: ParseSettings = ParseSettings(), run_id: str = ""):
        super().__init__()
        self._settings = settings
        self._run_id = run_id

    def expand(self, feeds: beam.PCollection) -> Parsed:
        outputs = feeds | "ParseFeed" >> beam.ParDo(_ParseFeedFn(self._settings, self._run_id)).with_outputs(
            DEAD_LETTER_TAG, REPORT_TAG, main="articles"
        )
        return Parsed(outputs.articles, outputs[DEAD_LETTER_TAG], outputs[REPORT_TAG])
