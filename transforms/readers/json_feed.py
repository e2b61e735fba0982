"""JSON Feed 1.x (https://jsonfeed.org/version/1.1): a document is one JSON object whose `items` are the entries."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from transforms import spool
from transforms.article import Article
from transforms.charsets import Decoding
from transforms.dates import parse_date
from transforms.dead_letter import DeadLetter
from transforms.feed import FetchedFeed
from transforms.readers.base import EntryReader, feed_problem, language_code
from transforms.spool import Body

_JSON_FEED_VERSION = re.compile(r"^https?://jsonfeed\.org/version/1(\.\d+)?/?$")


def is_json_feed(body: Body, content_type: str) -> bool:
    """True when the document is (or claims to be) a JSON Feed rather than XML."""
    if "json" in content_type.lower():
        return True
    for part in spool.chunks(body):  # the first byte that is not white space
        part = part.lstrip()
        if part:
            return part[:1] == b"{"
    return False


def read_json_feed(fetched: FetchedFeed, decoding: Decoding, entries: EntryReader) -> Iterator[Article | DeadLetter]:
    try:
        doc = json.loads(decoding.decode(spool.whole(fetched.body)))
    except ValueError as err:
        entries.stats.problem = feed_problem(fetched, "not_a_feed", f"invalid JSON: {err}")
        return
    if not isinstance(doc, dict) or not _JSON_FEED_VERSION.match(str(doc.get("version", ""))):
        entries.stats.problem = feed_problem(fetched, "not_a_feed", "JSON without a JSON Feed version")
        return
    items = doc.get("items")
    if not isinstance(items, list):
        entries.stats.problem = feed_problem(fetched, "not_a_feed", "JSON Feed without an items list")
        return
    entries.feed_language = language_code(doc.get("language"))
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
        language=language_code(item.get("language")),
    )
