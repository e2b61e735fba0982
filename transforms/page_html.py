"""A page's HTML: its text decoded, parsed once, its metadata read and its article body taken.

- `extract_page(html, url, content_type)`: an `ExtractedPage` with the body text (transforms/page_text.py, on the
  tree parsed here), the canonical URL (`<link rel=canonical>`, else `og:url`), the published date, the authors and
  a language hint, read from meta tags and JSON-LD, and the charset the bytes were read with
  (transforms/charsets.py `decode_html`). `python benchmarks/extract.py` scores it on real pages.
- `parse_html(text)`: the document tree of a page's text, as trafilatura parses it.

transforms/extract.py fetches the pages and calls `extract_page` on each.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from urllib.parse import urljoin

import lxml.etree
import lxml.html

from transforms.charsets import decode_html
from transforms.dates import parse_date
from transforms.page_text import extract_body, prune


@dataclasses.dataclass(frozen=True)
class ExtractedPage:
    """What a page gave: the body text ('' when none was found) and the metadata it declared."""

    text: str
    canonical_url: str = ""
    published_at: dt.datetime | None = None
    authors: tuple[str, ...] = ()
    language: str = ""
    charset: str = ""


# trafilatura's own parser settings (comments and processing instructions dropped while parsing).
_PARSER = lxml.html.HTMLParser(
    collect_ids=False, default_doctype=False, encoding="utf-8", remove_comments=True, remove_pis=True
)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)

_DATE_META = (
    "article:published_time",
    "og:article:published_time",
    "datepublished",
    "pubdate",
    "publishdate",
    "publish-date",
    "publish_date",
    "date",
    "dc.date.issued",
    "dc.date",
    "dcterms.created",
    "sailthru.date",
    "parsely-pub-date",
    "article.published",
    "published_time",
)
_AUTHOR_META = ("author", "article:author", "dc.creator", "byl", "parsely-author", "sailthru.author")
_LANG = re.compile(r"^([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]+)*$")


def parse_html(text: str) -> lxml.html.HtmlElement | None:
    """The document tree of a page's text, None when there is no document in it."""
    text = _XML_DECLARATION.sub("", text, count=1)
    if not text.strip():
        return None
    try:
        root = lxml.html.fromstring(text.encode("utf-8", "surrogatepass"), parser=_PARSER)
    except (lxml.etree.ParserError, ValueError):
        return None
    return root if root is not None and isinstance(root, lxml.html.HtmlElement) else None


def _meta(tree: lxml.html.HtmlElement) -> dict[str, str]:
    """First content of each <meta name|property|itemprop>, keys lower-cased."""
    found: dict[str, str] = {}
    for meta in tree.iter("meta"):
        key = meta.get("property") or meta.get("name") or meta.get("itemprop") or ""
        content = meta.get("content")
        if key and content:
            found.setdefault(key.strip().lower(), content.strip())
    return found


def _json_ld(tree: lxml.html.HtmlElement) -> list[dict]:
    """The JSON-LD objects of the page (graphs flattened), those that parse."""
    objects: list[dict] = []
    for script in tree.iter("script"):
        if (script.get("type") or "").strip().lower() != "application/ld+json" or not script.text:
            continue
        try:
            data = json.loads(script.text)
        except ValueError:
            continue
        stack = data if isinstance(data, list) else [data]
        while stack:
            item = stack.pop(0)
            if isinstance(item, dict):
                objects.append(item)
                graph = item.get("@graph")
                if isinstance(graph, list):
                    stack.extend(graph)
    return objects


def _names(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return _names(value.get("name"))
    if isinstance(value, list):
        return [name for item in value for name in _names(item)]
    return []


def _metadata(tree: lxml.html.HtmlElement, url: str) -> dict:
    meta = _meta(tree)
    ld = [o for o in _json_ld(tree) if "datePublished" in o or "author" in o]

    canonical = ""
    for link in tree.iter("link"):
        if "canonical" in (link.get("rel") or "").lower().split() and (link.get("href") or "").strip():
            canonical = link.get("href").strip()
            break
    canonical = canonical or meta.get("og:url", "")
    if canonical:
        canonical = urljoin(url, canonical) if url else canonical
        if not canonical.startswith(("http://", "https://")):
            canonical = ""

    published = None
    for obj in ld:
        published = parse_date(str(obj.get("datePublished", "")))
        if published:
            break
    for key in _DATE_META:
        if published:
            break
        published = parse_date(meta.get(key, ""))
    if published is None:
        for element in tree.iter("time"):
            published = parse_date(element.get("datetime", ""))
            if published:
                break

    authors: list[str] = []
    for obj in ld:
        authors = _names(obj.get("author"))
        if authors:
            break
    if not authors:
        for key in _AUTHOR_META:
            value = meta.get(key, "")
            if value and not value.startswith(("http://", "https://")):
                authors = [value]
                break
    authors = list(dict.fromkeys(" ".join(a.split()) for a in authors if a and a.strip()))

    language = ""
    for candidate in (
        tree.get("lang"),
        tree.get("{http://www.w3.org/XML/1998/namespace}lang"),
        meta.get("og:locale"),
        meta.get("content-language"),
        meta.get("language"),
    ):
        match = _LANG.match((candidate or "").strip())
        if match:
            language = match.group(1).lower()
            break
    return {"canonical_url": canonical, "published_at": published, "authors": tuple(authors[:20]), "language": language}


def extract_page(html: bytes, url: str = "", content_type: str = "") -> ExtractedPage:
    """The body and metadata of one HTML page (bytes as received; `content_type` as sent, for its charset)."""
    text, charset = decode_html(html, content_type)
    tree = parse_html(text)
    if tree is None:
        return ExtractedPage(text="", charset=charset)
    metadata = _metadata(tree, url)
    prune(tree)
    return ExtractedPage(text=extract_body(tree, url), charset=charset, **metadata)
