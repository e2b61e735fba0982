"""Whatever the streaming XML reader cannot read, salvaged by feedparser: RSS 0.90, Atom 0.3, documents that are
not well-formed. A salvaged feed is flagged `malformed_feed` (a feed-level dead letter; its entries go on) unless
feedparser only objected to the server's headers; a document with no feed in it is `not_a_feed`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from transforms.article import Article
from transforms.dates import parse_date, struct_to_datetime
from transforms.dead_letter import DeadLetter
from transforms.feed import FetchedFeed
from transforms.readers.base import EntryReader, feed_problem, language_code, ttl_seconds


def read_salvaged(
    fetched: FetchedFeed, data: bytes, entries: EntryReader, skip: int = 0
) -> Iterator[Article | DeadLetter]:
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
        entries.stats.problem = feed_problem(fetched, "not_a_feed", message)
        return
    entries.feed_language = language_code(doc.feed.get("language"))
    entries.stats.ttl_seconds = ttl_seconds(doc.feed.get("ttl"))
    # RSS 0.90/1.0 items have one date, dc:date, which feedparser files as `updated`; it is the publication date.
    single_date = doc.get("version", "") in ("rss090", "rss10")
    if skip or (doc.get("bozo") and not isinstance(doc.get("bozo_exception"), _benign_bozo())):
        entries.stats.problem = feed_problem(
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
    published = struct_to_datetime(dict.get(entry, "published_parsed")) or parse_date(dict.get(entry, "published"))
    updated = struct_to_datetime(dict.get(entry, "updated_parsed")) or parse_date(dict.get(entry, "updated"))
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
        language=language_code(entry.get("language")),
    )


def _jsonable(value: Any) -> Any:
    """feedparser's entry as plain JSON, for the raw excerpt of a dead letter."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if not k.endswith("_parsed")}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
