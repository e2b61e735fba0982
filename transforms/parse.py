"""ParseEntries: turn fetched feed documents into Articles, one per entry, one entry at a time.

Well-formed RSS 2.0 (and 0.91/0.92), RSS 1.0 (RDF) and Atom 1.0 documents are read incrementally with lxml's
iterparse (entities not expanded, no network, no huge trees), each entry cleared once read: memory is bounded by the
document's bytes plus the largest entry, not by the number of entries. Anything else (RSS 0.90, Atom 0.3, a document
that is not well-formed) goes to feedparser, which salvages what it can; the flag is counted and reported as a dead
letter `malformed_feed` (a feed-level record, not an entry). JSON Feed 1.x is parsed here. A document that is not a
feed at all (an HTML page, say) is a dead letter `not_a_feed`. A 304 (nothing changed since the last run) has no
entries and is no error.

Every entry is handled on its own: an entry with no title, no text and no link is a dead letter `empty_entry`, one
that raises anything while being read is a dead letter `bad_entry`, and the others go on. When a whole feed cannot
be read (`not_a_feed`, `bad_encoding`, `parse_error`), the entries it appears to hold are counted as read and each
becomes an entry dead letter of the same reason, so the run's counts still see them.

Charset: a BOM wins over any declaration (as XML says); otherwise the Content-Type charset, then the XML
declaration, then UTF-8. When the bytes contradict the declaration (a strict decode fails, or a BOM disagrees),
they are decoded by the evidence (another declaration, mostly-UTF-8, or charset detection) and the articles are
flagged `encoding_repaired`; when nothing decodes, the feed is a dead letter `bad_encoding`.

Beside the articles, each feed yields a `FeedReport` (transforms.health): validators, body hash, entries seen and
the feed's own polling hint (RSS `<ttl>`), from which the driver keeps the feed's health.

The event time is settled here, where all the dates of an entry are known: `published`, else `updated`, else the
fetch time. A date before `earliest_year` (placeholders such as the epoch or year 1) or more than
`max_future_seconds` after the fetch is not trusted. `date_source` says which was used. Only http(s) links are kept
as an article's `url` (a link with another scheme or an invalid port is dropped and counted).
"""

from __future__ import annotations

import calendar
import codecs
import dataclasses
import datetime as dt
import email.utils
import html
import io
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from transforms.article import Article, stable_id
from transforms.clock import UTC
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
from transforms.feed_report import FeedReport, body_hash, max_age_seconds
from transforms.urls import canonical_url

STAGE = "parse"

_JSON_FEED_VERSION = re.compile(r"^https?://jsonfeed\.org/version/1(\.\d+)?/?$")


@dataclasses.dataclass(frozen=True)
class ParseSettings:
    """How entries are read. A date further than `max_future_seconds` past the fetch time, or before
    `earliest_year`, is not trusted (the fetch time is used instead)."""

    max_future_seconds: int = dataclasses.field(default=86400, metadata={"unit": "seconds"})
    earliest_year: int = 1990


# Dates

# feedparser only knows English month names; many real feeds (UOL, older Le Monde and El País feeds...) localise
# RFC 822 dates. Dropping the (redundant) day name and translating the month lets the standard parser do the rest.
_LOCALISED_MONTHS = {
    "ene": "Jan",
    "gen": "Jan",
    "janv": "Jan",
    "fev": "Feb",
    "fév": "Feb",
    "févr": "Feb",
    "fevr": "Feb",
    "mars": "Mar",
    "mär": "Mar",
    "mrz": "Mar",
    "abr": "Apr",
    "avr": "Apr",
    "mai": "May",
    "mag": "May",
    "juin": "Jun",
    "giu": "Jun",
    "juil": "Jul",
    "lug": "Jul",
    "ago": "Aug",
    "août": "Aug",
    "aout": "Aug",
    "set": "Sep",
    "sept": "Sep",
    "out": "Oct",
    "ott": "Oct",
    "okt": "Oct",
    "dez": "Dec",
    "dic": "Dec",
    "déc": "Dec",
}
_LEADING_DAY_NAME = re.compile(r"^\s*[^\W\d_]+\.?,\s*")
_MONTH_WORD = re.compile(r"(?<=\d\s)[^\W\d_]+\.?")


def parse_date(value: str | None) -> dt.datetime | None:
    """A feed date string as an aware UTC datetime, or None when it cannot be read (or is out of range).

    Accepts RFC 822 (also with localised day and month names), RFC 3339 / ISO 8601, and a bare date.
    """
    if not value or not value.strip():
        return None
    text = value.strip()
    for attempt in (text, _translate_date_words(text)):
        parsed = None
        try:
            parsed = email.utils.parsedate_to_datetime(attempt)
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
        if parsed is None:
            try:
                parsed = dt.datetime.fromisoformat(attempt.replace("Z", "+00:00"))
            except ValueError:
                pass
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)  # a date without a zone is read as UTC: the least surprising guess
            try:
                return parsed.astimezone(UTC)
            except (OverflowError, ValueError):  # 9999-12-31T23:59:59-14:00, 0001-01-01T00:00:00+14:00
                return None
    return None


def _translate_date_words(text: str) -> str:
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        return _LOCALISED_MONTHS.get(word.lower().rstrip("."), word)

    return _MONTH_WORD.sub(swap, _LEADING_DAY_NAME.sub("", text))


def _feedparser_date(value: str | None) -> dt.datetime | None:
    """The many other formats feedparser's date handlers know (W3C-DTF variants, Korean, Greek, ...)."""
    if not value:
        return None
    try:
        from feedparser.datetimes import _parse_date

        return _struct_to_datetime(_parse_date(value))
    except Exception:  # noqa: BLE001 - a date handler's surprise costs the date, not the entry
        return None


def entry_date(value: str | None) -> dt.datetime | None:
    """An entry's date: ours first (fast, localised months), then feedparser's handlers."""
    return parse_date(value) or _feedparser_date(value)


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


def _struct_to_datetime(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return None


# Charset

_BOMS = (  # longest first: the UTF-32 LE BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_XML_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@dataclasses.dataclass(frozen=True)
class Decoding:
    """How to read a document's bytes: `codec` (a Python codec name), `errors`, and whether it was repaired."""

    codec: str
    bom: int = 0  # bytes of BOM to skip
    errors: str = "strict"
    repaired: bool = False
    note: str = ""

    def decode(self, body: bytes) -> str:
        """The document's text."""
        return body[self.bom :].decode(self.codec, self.errors)


def _codec(name: str) -> str:
    """A Python codec's canonical name ('' when unknown), with BOM-less families folded together."""
    try:
        canonical = codecs.lookup(name).name
    except (LookupError, ValueError):
        return ""
    return {
        "utf-8-sig": "utf-8",
        "utf-16-le": "utf-16",
        "utf-16-be": "utf-16",
        "utf-32-le": "utf-32",
        "utf-32-be": "utf-32",
    }.get(canonical, canonical)


def _decodes(body: bytes, codec: str) -> bool:
    try:
        body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def choose_decoding(body: bytes, content_type: str = "") -> Decoding | None:
    """How to decode a document, by its declarations and the evidence of its bytes; None when nothing decodes.

    A BOM wins over the declarations; a declaration the bytes contradict (a strict decode fails, or a BOM says
    otherwise) gives way to the evidence and the result is `repaired`.
    """
    bom_length = next((len(bom) for bom, _ in _BOMS if body.startswith(bom)), 0)
    declared = [name for name in (_charset(content_type), _xml_declared(body[bom_length:])) if name and _codec(name)]
    for bom, codec in _BOMS:
        if body.startswith(bom):
            if _decodes(body[len(bom) :], codec):
                disagrees = [name for name in declared if _codec(name) != _codec(codec)]
                note = f"BOM says {codec}, declared {disagrees[0]}" if disagrees else ""
                return Decoding(codec, len(bom), repaired=bool(disagrees), note=note)
            break
    candidates = list(dict.fromkeys([*(_codec(name) for name in declared), "utf-8"]))
    first = candidates[0]
    for codec in candidates:
        if _decodes(body, codec):
            note = f"declared {first}, decodes as {codec}" if codec != first else ""
            return Decoding(codec, repaired=codec != first, note=note)
    # Mostly UTF-8 with a few bad bytes: keep the good text rather than guess a single-byte charset for it all.
    text = body.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    good = len(_NON_ASCII.findall(text)) - bad
    if good > bad:
        return Decoding("utf-8", errors="replace", repaired=True, note=f"{bad} invalid UTF-8 sequences replaced")
    detected = _detect(body)
    if _codec(detected) in _LATIN_SINGLE_BYTE and _decodes(body, "cp1252"):
        # Detectors split hairs between Latin code pages on short texts; windows-1252 is what such pages are.
        detected = "cp1252"
    if detected and _decodes(body, detected):
        return Decoding(detected, repaired=True, note=f"declared {first}, bytes read as {detected}")
    return None


_LATIN_SINGLE_BYTE = {
    _codec(name)
    for name in (
        "latin-1",
        "iso8859-2",
        "iso8859-3",
        "iso8859-4",
        "iso8859-9",
        "iso8859-10",
        "iso8859-13",
        "iso8859-14",
        "iso8859-15",
        "iso8859-16",
        "cp1250",
        "cp1252",
        "cp1254",
        "cp1257",
        "mac-roman",
        "mac-latin2",
        "cp437",
        "cp850",
    )
}


def _detect(body: bytes) -> str:
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # requests brings it; without it, there is simply no detection
        return ""
    best = from_bytes(body[:200_000]).best()
    return best.encoding if best is not None else ""


def _xml_declared(body: bytes) -> str:
    match = _XML_DECLARED.match(body[:512])
    return match.group(1).decode("ascii") if match else ""


def _charset(content_type: str) -> str:
    match = re.search(r"charset=[\"']?([\w.:-]+)", content_type or "", re.I)
    return match.group(1) if match else ""


# Links


def article_link(link: str, base: str = "") -> str:
    """The entry's link as an absolute http(s) URL, or '' when it is none (other scheme, invalid port or host)."""
    link = (link or "").strip()
    if not link:
        return ""
    try:
        # Most links are absolute already: urljoin is the dearest step of reading an entry.
        absolute = (
            link
            if link[:8].lower().startswith(("http://", "https://")) or not base
            else urllib.parse.urljoin(base, link)
        )
        parts = urllib.parse.urlsplit(absolute)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    return absolute


# Reading one document


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


@dataclasses.dataclass
class ParsedFeed:
    """What one document yielded, collected: articles, rejected entries, and the feed-level problem if any."""

    articles: list[Article]
    rejects: list[DeadLetter]
    problem: DeadLetter | None = None
    entries_read: int = 0
    ttl_seconds: float | None = None
    stats: FeedStats | None = None


def parse_feed(fetched: Any, settings: ParseSettings = ParseSettings()) -> ParsedFeed:
    """Parse one FetchedFeed (from transforms.fetch) into lists of Articles and dead letters. Never raises.

    For tests and tools; the pipeline uses `iter_feed`, which does not hold a feed's articles all at once.
    """
    stats = FeedStats()
    articles, rejects = [], []
    for item in iter_feed(fetched, settings, stats):
        (rejects if isinstance(item, DeadLetter) else articles).append(item)
    return ParsedFeed(articles, rejects, stats.problem, stats.entries_read, stats.ttl_seconds, stats)


def iter_feed(
    fetched: Any, settings: ParseSettings = ParseSettings(), stats: FeedStats | None = None
) -> Iterator[Article | DeadLetter]:
    """Articles and entry dead letters of one FetchedFeed, one at a time; `stats` gets the rest. Never raises."""
    stats = stats if stats is not None else FeedStats()
    if fetched.not_modified:
        return
    try:
        yield from _iter_document(fetched, settings, stats)
    except Exception as err:  # noqa: BLE001 - a parser bug costs this feed (counted), not the run
        stats.problem = _feed_problem(fetched, "parse_error", f"{type(err).__name__}: {err}")
    if stats.problem is not None and stats.problem.reason != "malformed_feed":
        yield from _unread_entries(fetched, stats)


def _iter_document(fetched: Any, settings: ParseSettings, stats: FeedStats) -> Iterator:
    decoding = choose_decoding(fetched.body, fetched.content_type)
    if decoding is None:
        stats.problem = _feed_problem(fetched, "bad_encoding", "no character encoding decodes this document")
        return
    stats.encoding_repaired = decoding.repaired
    reader = _Entries(fetched, settings, stats)
    if is_json_feed(fetched.body[decoding.bom :], fetched.content_type):
        stats.parser = "json"
        yield from _parse_json_feed(fetched, decoding, reader)
        return
    # lxml reads UTF-8 bytes as they are; anything else is re-encoded once (the XML declaration is overridden).
    if decoding.codec == "utf-8" and decoding.errors == "strict":
        data = fetched.body[decoding.bom :]
    else:
        data = decoding.decode(fetched.body).encode("utf-8")
    yield from _parse_xml_feed(fetched, data, reader)


class _Entries:
    """Turns the fields of one entry into an Article or a dead letter; counts what it sees."""

    def __init__(self, fetched: Any, settings: ParseSettings, stats: FeedStats):
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


# An entry element as it starts in the bytes, for counting the entries of a feed that could not be read.
_ENTRY_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)[\s>/]")


def _unread_entries(fetched: Any, stats: FeedStats) -> Iterator[DeadLetter]:
    """One entry dead letter per entry the document seems to hold beyond those read, so the run counts them."""
    problem = stats.problem
    start = stats.entries_read
    total = len(_ENTRY_TAG.findall(fetched.body))
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


def is_json_feed(body: bytes, content_type: str) -> bool:
    """True when the document is (or claims to be) a JSON Feed rather than XML."""
    if "json" in content_type.lower():
        return True
    return body.lstrip()[:1] == b"{"


# XML: lxml for the well-formed formats it knows, feedparser for everything else

_ATOM = "{http://www.w3.org/2005/Atom}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_RSS1 = "{http://purl.org/rss/1.0/}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_DCTERMS = "{http://purl.org/dc/terms/}"
_CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
_ITUNES = "{http://www.itunes.com/dtds/podcast-1.0.dtd}"
_MEDIA = "{http://search.yahoo.com/mrss/}"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_ENTRY_TAGS = {"rss": "item", "rss10": _RSS1 + "item", "atom": _ATOM + "entry"}
_FEED_TAGS = {"language", "ttl", _DC + "language"}


class _NotStreamable(Exception):
    """A document the streaming reader does not handle: feedparser reads it instead."""


def _parse_xml_feed(fetched: Any, data: bytes, entries: _Entries) -> Iterator:
    done = 0
    try:
        for item in _stream_xml(data, entries):
            done += 1
            yield item
        entries.stats.parser = "lxml"
        return
    except _NotStreamable:
        pass
    except Exception:  # noqa: BLE001 - not well-formed (or an lxml surprise): feedparser salvages what it can
        pass
    yield from _parse_with_feedparser(fetched, data, entries, skip=done)


def _root_kind(data: bytes) -> tuple[str, str]:
    from lxml import etree

    for _, root in etree.iterparse(io.BytesIO(data), events=("start",), **_LXML_OPTIONS):
        if root.tag == "rss":
            return "rss", root.get(_XML_LANG, "")
        if root.tag == _RDF + "RDF":
            return "rss10", root.get(_XML_LANG, "")
        if root.tag == _ATOM + "feed":
            return "atom", root.get(_XML_LANG, "")
        break
    raise _NotStreamable()


_LXML_OPTIONS = dict(
    encoding="utf-8",  # the bytes were made UTF-8 whatever the XML declaration says
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)


def _stream_xml(data: bytes, entries: _Entries) -> Iterator[Article | DeadLetter]:
    from lxml import etree

    kind, language = _root_kind(data)
    entries.feed_language = _language_code(language)
    entry_tag = _ENTRY_TAGS[kind]
    read = _read_atom_entry if kind == "atom" else _read_rss_item
    index = 0
    for _, elem in etree.iterparse(io.BytesIO(data), events=("end",), tag=[entry_tag, *_FEED_TAGS], **_LXML_OPTIONS):
        if elem.tag != entry_tag:
            parent = elem.getparent()
            if parent is not None and parent.tag in ("channel", _RSS1 + "channel"):
                if elem.tag == "ttl":
                    entries.stats.ttl_seconds = _ttl_seconds(elem.text)
                elif not entries.feed_language:
                    entries.feed_language = _language_code(elem.text)
            continue
        yield entries.read(
            index,
            lambda elem=elem: read(elem, kind),
            lambda elem=elem: etree.tostring(elem, encoding="unicode")[:8192],
        )
        index += 1
        # Done with this entry: free it and everything before it, so memory does not grow with the feed.
        elem.clear(keep_tail=False)
        parent = elem.getparent()
        if parent is not None:
            while elem.getprevious() is not None:
                del parent[0]


# Namespaces publishers spell in more than one way.
_NAMESPACE_SPELLINGS = {_ITUNES.lower(): _ITUNES, "{http://search.yahoo.com/mrss}": _MEDIA}


def _local(tag: Any) -> tuple[str, str]:
    if not isinstance(tag, str):  # comments, entities
        return "", ""
    if tag[:1] == "{":
        ns, _, name = tag[1:].partition("}")
        ns = "{" + ns + "}"
        return _NAMESPACE_SPELLINGS.get(ns.lower(), ns), name
    return "", tag


def _text(elem: Any) -> str:
    """An element's character content, markup inside kept as markup (as feedparser does for HTML payloads)."""
    from lxml import etree

    if len(elem) == 0:
        return elem.text or ""
    parts = [elem.text or ""]
    for child in elem:
        if isinstance(child, etree._Entity):  # an entity left unexpanded: HTML's &nbsp; and friends
            parts.append(html.unescape(child.text or ""))
            parts.append(child.tail or "")
        else:
            parts.append(etree.tostring(child, encoding="unicode", with_tail=True))
    return "".join(parts)


def _atom_text(elem: Any) -> str:
    if elem.get("type", "").lower() == "xhtml":
        div = next(iter(elem), None)
        inner = div if div is not None and _local(div.tag)[1] == "div" else elem
        return _text(inner).strip()
    return _text(elem)


_EMAIL = re.compile(r"[\w.+-]+@(?:[\w-]+\.)+[a-zA-Z]{2,}")


def _author_name(value: str) -> str:
    """`jane@x.test (Jane Roe)` and `Jane Roe <jane@x.test>` -> Jane Roe; a bare address stays as it is."""
    value = (value or "").strip()
    match = _EMAIL.search(value)
    if not match:
        return value
    name = (value[: match.start()] + value[match.end() :]).replace("()", "").replace("<>", "").strip()
    name = name.strip("()<> \t").strip()
    return name or value


class _Extras:
    """What the common extension namespaces add to an entry: summaries, keywords and a fallback author."""

    def __init__(self):
        self.summaries: list[str] = []
        self.tags: list[str] = []
        self.authors: list[str] = []

    def read(self, child: Any, ns: str, name: str) -> bool:
        """Take `child` if it is one of ours; True when it was."""
        if (ns == _ITUNES and name == "summary") or (ns in (_MEDIA, _DC) and name == "description"):
            self.summaries.append(_text(child))
        elif (ns == _ITUNES or ns == _MEDIA) and name == "keywords":
            self.tags += [word.strip() for word in _text(child).split(",") if word.strip()]
        elif ns == _ITUNES and name == "author":
            self.authors.append(_text(child).strip())
        elif ns == _MEDIA and name == "group":
            for part in child:
                self.read(part, *_local(part.tag))
        else:
            return False
        return True


def _read_rss_item(item: Any, kind: str) -> dict[str, Any]:
    title = link = guid = summary = language = ""
    permalink_guid = ""
    published_raw = updated_raw = ""
    contents: list[str] = []
    authors: list[str] = []
    tags: list[str] = []
    extras = _Extras()
    for child in item:
        ns, name = _local(child.tag)
        if not name or extras.read(child, ns, name):
            continue
        core = ns in ("", _RSS1)
        if core and name == "title" and not title:
            title = _text(child)
        elif core and name == "link" and not link:
            link = (child.text or "").strip()
        elif ns == _ATOM and name == "link" and not link and child.get("rel", "alternate") == "alternate":
            link = child.get("href", "")
        elif core and name == "guid" and not guid:
            guid = (child.text or "").strip()
            if child.get("isPermaLink", "true").lower() != "false":
                permalink_guid = guid
        elif core and name == "description" and not summary:
            summary = _text(child)
        elif ns == _CONTENT and name == "encoded":
            contents.append(_text(child))
        elif ns == _ATOM and name == "content":
            contents.append(_atom_text(child))
        elif ns == _ATOM and name == "summary" and not summary:
            summary = _atom_text(child)
        elif (core and name == "author") or (ns == _DC and name == "creator"):
            author = _author_name(_text(child))
            if author:
                authors.append(author)
        elif (core and name == "category") or (ns == _DC and name == "subject"):
            term = _text(child).strip()
            if term:
                tags.append(term)
        elif core and name == "pubDate" and not published_raw:
            published_raw = child.text or ""
        elif ns == _DCTERMS and name in ("issued", "created") and not published_raw:
            published_raw = child.text or ""
        elif ((ns == _DC and name == "date") or (ns == _DCTERMS and name == "modified")) and not updated_raw:
            updated_raw = child.text or ""
        elif ns == _ATOM and name == "published" and not published_raw:
            published_raw = child.text or ""
        elif ns == _ATOM and name == "updated" and not updated_raw:
            updated_raw = child.text or ""
        elif (ns == _DC and name == "language") and not language:
            language = child.text or ""
    if kind == "rss10" and not guid:
        guid = item.get(_RDF + "about", "")
    if not link and permalink_guid.lower().startswith(("http://", "https://")):
        link = permalink_guid  # RSS 2.0: a permalink guid is the item's link when it has none
    published, updated = entry_date(published_raw), entry_date(updated_raw)
    if kind == "rss10" and published is None:
        # RSS 1.0 items have one date, dc:date: it is the publication date.
        published, updated = updated, None
    return dict(
        link=link,
        base=_base(item),
        guid=guid,
        title=title,
        text=_longest(contents) or _longest([summary, *extras.summaries]),
        authors=authors or [a for a in extras.authors if a],
        tags=tags + extras.tags,
        published=published,
        updated=updated,
        language=_language_code(language or item.get(_XML_LANG)),
    )


def _read_atom_entry(entry: Any, kind: str) -> dict[str, Any]:
    title = link = guid = summary = ""
    published_raw = updated_raw = ""
    contents: list[str] = []
    authors: list[str] = []
    tags: list[str] = []
    extras = _Extras()
    for child in entry:
        ns, name = _local(child.tag)
        if extras.read(child, ns, name):
            continue
        if ns == _ATOM:
            if name == "title" and not title:
                title = _atom_text(child)
            elif name == "link" and not link and child.get("rel", "alternate") == "alternate":
                link = child.get("href", "")
            elif name == "id" and not guid:
                guid = (child.text or "").strip()
            elif name == "content" and not child.get("src"):
                contents.append(_atom_text(child))
            elif name == "summary" and not summary:
                summary = _atom_text(child)
            elif name == "author":
                person = child.find(_ATOM + "name")
                if person is None:
                    person = child.find(_ATOM + "email")
                if person is not None and (author := _text(person).strip()):
                    authors.append(author)
            elif name == "category":
                term = child.get("term") or child.get("label")
                if term:
                    tags.append(term)
            elif name == "published" and not published_raw:
                published_raw = child.text or ""
            elif name == "updated" and not updated_raw:
                updated_raw = child.text or ""
        elif ns == _DC and name == "creator":
            if author := _author_name(_text(child)):
                authors.append(author)
        elif ns == _DC and name == "subject":
            if term := _text(child).strip():
                tags.append(term)
        elif ns == _DC and name == "date" and not updated_raw:
            updated_raw = child.text or ""
    if not link and guid.lower().startswith(("http://", "https://")):
        link = guid  # an entry without an alternate link is often identified by its URL
    return dict(
        link=link,
        base=_base(entry),
        guid=guid,
        title=title,
        text=_longest(contents) or _longest([summary, *extras.summaries]),
        authors=authors or [a for a in extras.authors if a],
        tags=tags + extras.tags,
        published=entry_date(published_raw),
        updated=entry_date(updated_raw),
        language=_language_code(entry.get(_XML_LANG)),
    )


def _longest(texts: list[str]) -> str:
    return max((t for t in texts if t and t.strip()), key=len, default="")


def _base(elem: Any) -> str:
    """The xml:base in force for the entry (lxml works it out from the ancestors), '' when none."""
    try:
        return elem.base or ""
    except Exception:  # noqa: BLE001 - an unreadable base is no base
        return ""


def _parse_with_feedparser(fetched: Any, data: bytes, entries: _Entries, skip: int = 0) -> Iterator:
    """Malformed or rarer documents. `skip`: entries the streaming reader already gave before it failed."""
    import feedparser  # imported here: it is slow to import and only workers need it

    entries.stats.parser = "feedparser"
    # `data` is UTF-8 now: say so, so feedparser does not decode it again by the original declaration.
    mime = (fetched.content_type or "application/xml").split(";", 1)[0].strip() or "application/xml"
    headers = {"content-type": f"{mime}; charset=utf-8", "content-location": fetched.url}
    doc = feedparser.parse(
        _XML_DECLARED_ENCODING.sub(rb"\1utf-8\2", data, count=1), response_headers=headers, sanitize_html=False
    )
    if not doc.get("version") and not doc.entries and not skip:
        message = str(doc.get("bozo_exception") or "no feed element found")
        entries.stats.problem = _feed_problem(fetched, "not_a_feed", message)
        return
    entries.feed_language = _language_code(doc.feed.get("language"))
    entries.stats.ttl_seconds = _ttl_seconds(doc.feed.get("ttl"))
    # RSS 0.90/1.0 items have one date, dc:date, which feedparser files as `updated`; it is the publication date.
    single_date = doc.get("version", "") in ("rss090", "rss10")
    if skip or (doc.get("bozo") and not isinstance(doc.get("bozo_exception"), _benign_bozo())):
        entries.stats.problem = _feed_problem(
            fetched,
            "malformed_feed",
            f"kept {max(skip, len(doc.entries))} salvaged entries; {doc.get('bozo_exception')}",
        )
    for index, entry in enumerate(doc.entries):
        if index < skip:
            continue
        yield entries.read(
            index,
            lambda entry=entry: _feedparser_fields(entry, single_date),
            lambda entry=entry: json.dumps(_jsonable(entry))[:8192],
        )


_XML_DECLARED_ENCODING = re.compile(rb"""^(\s*<\?xml[^>]*?encoding\s*=\s*["'])[A-Za-z0-9._:-]+(["'])""")


def _benign_bozo() -> tuple[type, ...]:
    # A feed served as text/plain or octet-stream, or whose declared charset had to be overridden, is read fine:
    # those flags are about the server's headers, not a broken document.
    import feedparser

    return (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride)


def _feedparser_fields(entry: Any, single_date: bool) -> dict[str, Any]:
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
    return dict(
        link=entry.get("link", ""),
        guid=entry.get("id", ""),
        title=entry.get("title", ""),
        text=text,
        authors=authors,
        tags=[t for t in tags if t],
        published=published,
        updated=updated,
        language=_language_code(entry.get("language")),
    )


# JSON Feed


def _parse_json_feed(fetched: Any, decoding: Decoding, entries: _Entries) -> Iterator:
    try:
        doc = json.loads(decoding.decode(fetched.body))
    except ValueError as err:
        entries.stats.problem = _feed_problem(fetched, "not_a_feed", f"invalid JSON: {err}")
        return
    if not isinstance(doc, dict) or not _JSON_FEED_VERSION.match(str(doc.get("version", ""))):
        entries.stats.problem = _feed_problem(fetched, "not_a_feed", "JSON without a JSON Feed version")
        return
    items = doc.get("items")
    if not isinstance(items, list):
        entries.stats.problem = _feed_problem(fetched, "not_a_feed", "JSON Feed without an items list")
        return
    entries.feed_language = _language_code(doc.get("language"))
    for index, item in enumerate(items):
        yield entries.read(index, lambda item=item: _json_fields(item), lambda item=item: json.dumps(item, default=str))


def _json_fields(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        item = {"_invalid": item}
    authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else [])
    return dict(
        link=str(item.get("url") or item.get("external_url") or ""),
        guid=str(item.get("id") or ""),
        title=str(item.get("title") or ""),
        text=str(item.get("content_html") or item.get("content_text") or item.get("summary") or ""),
        authors=[str(a.get("name")) for a in authors if isinstance(a, dict) and a.get("name")],
        tags=[str(t) for t in item.get("tags") or [] if t],
        published=parse_date(str(item.get("date_published") or "")),
        updated=parse_date(str(item.get("date_modified") or "")),
        language=_language_code(item.get("language")),
    )


# Helpers


def _language_code(value: Any) -> str:
    """'en-US' -> 'en'; '' for nothing."""
    if not value or not isinstance(value, str):
        return ""
    return value.strip().replace("_", "-").split("-")[0].lower()


def _ttl_seconds(value: Any) -> float | None:
    """RSS <ttl> is in minutes."""
    try:
        minutes = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return minutes * 60 if 0 < minutes < float("inf") else None


def feed_report(fetched: Any, stats: FeedStats | ParsedFeed) -> FeedReport:
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


def _feed_problem(fetched: Any, reason: str, message: str) -> DeadLetter:
    return reject(STAGE, reason, feed_url=fetched.source.url, status=fetched.status, message=message, raw=fetched.body)


def _jsonable(value: Any) -> Any:
    """feedparser's entry as plain JSON, for the raw excerpt of a dead letter."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if not k.endswith("_parsed")}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# The stage


class _ParseFeedFn(beam.DoFn):
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

    def process(
        self, fetched: Any
    ) -> Iterator[Article | DeadLetterOutput | TaggedOutput[Literal[REPORT_TAG], FeedReport]]:
        stats = FeedStats()
        # One at a time, as they are read: a feed's articles are never all in memory together.
        for item in iter_feed(fetched, self._settings, stats):
            if isinstance(item, DeadLetter):
                {"empty_entry": self._rejects, "bad_entry": self._bad_entries}.get(item.reason, self._unread).inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, item)
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
            yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, stats.problem)
        if stats.problem is None or stats.problem.reason == "malformed_feed":
            self._feeds.inc()
        if fetched.not_modified:
            self._not_modified.inc()
        yield beam.pvalue.TaggedOutput(REPORT_TAG, feed_report(fetched, stats))


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
