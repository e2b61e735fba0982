"""FetchArticlePages: fetch the page each new entry links to and extract its article body, politely and safely.

Pure functions, usable without Beam:

- `decode_html(body, content_type)`: the page as text, its charset taken from the Content-Type header, else a byte
  order mark, else a `<meta charset>` / `http-equiv` tag near the top, else UTF-8 if the bytes are valid UTF-8,
  else detection (charset_normalizer).
- `extract_page(html, url, content_type)`: an `ExtractedPage` with the body text (trafilatura in fast mode without
  comments, on a tree parsed once), the canonical URL (`<link rel=canonical>`, else `og:url`), the published date,
  the authors and a language hint, read from meta tags and JSON-LD. `python benchmarks/extract.py` scores it.

The stage itself (fetching, politeness, SSRF guard, dead letters) is further down, under "The stage".
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import json
import re
from urllib.parse import urljoin

import lxml.etree
import lxml.html

UTC = dt.timezone.utc

# ---------------------------------------------------------------------------------------------------------------
# Decoding

_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# The meta tag must come early (HTML5 says within the first 1024 bytes; pages with long heads put it later).
_META_SCAN_BYTES = 4096
# Browsers treat these labels as windows-1252, which is a superset: the extra characters decode instead of failing.
_LABEL_ALIASES = {"iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "us-ascii": "cp1252",
                  "ascii": "cp1252", "iso8859-1": "cp1252"}


def _codec(label: str) -> str:
    label = label.strip().lower()
    label = _LABEL_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return ""


def decode_html(body: bytes, content_type: str = "") -> tuple[str, str]:
    """The page as text and the charset used (see the module docstring for the order of the sources)."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom):].decode(name, "replace"), name
    header = _HEADER_CHARSET.search(content_type or "")
    name = _codec(header.group(1)) if header else ""
    if not name:
        meta = _META_CHARSET.search(body, 0, _META_SCAN_BYTES)
        name = _codec(meta.group(1).decode("ascii")) if meta else ""
        if name.startswith("utf-16"):  # a meta tag readable as ASCII cannot be in UTF-16: the tag is wrong
            name = ""
    if name:
        return body.decode(name, "replace"), name
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes  # only pages that are neither declared nor UTF-8 pay for it

    best = from_bytes(body[:65536]).best()
    name = _codec(best.encoding) if best is not None else ""
    name = name or "cp1252"
    return body.decode(name, "replace"), name


# ---------------------------------------------------------------------------------------------------------------
# Extraction


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
_PARSER = lxml.html.HTMLParser(collect_ids=False, default_doctype=False, encoding="utf-8", remove_comments=True,
                               remove_pis=True)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)

_DATE_META = (
    "article:published_time", "og:article:published_time", "datepublished", "pubdate", "publishdate",
    "publish-date", "publish_date", "date", "dc.date.issued", "dc.date", "dcterms.created", "sailthru.date",
    "parsely-pub-date", "article.published", "published_time",
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


def parse_datetime(value: str) -> dt.datetime | None:
    """An ISO 8601 date or date-time (as meta tags and JSON-LD write them) in UTC; None when it is not one."""
    value = (value or "").strip()
    if not value:
        return None
    value = re.sub(r"Z$", "+00:00", value)
    value = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", value)  # +0200 -> +02:00
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = dt.datetime.fromisoformat(value[:10])
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


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
        published = parse_datetime(str(obj.get("datePublished", "")))
        if published:
            break
    for key in _DATE_META:
        if published:
            break
        published = parse_datetime(meta.get(key, ""))
    if published is None:
        for time in tree.iter("time"):
            published = parse_datetime(time.get("datetime", ""))
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
    for candidate in (tree.get("lang"), tree.get("{http://www.w3.org/XML/1998/namespace}lang"),
                      meta.get("og:locale"), meta.get("content-language"), meta.get("language")):
        match = _LANG.match((candidate or "").strip())
        if match:
            language = match.group(1).lower()
            break
    return {"canonical_url": canonical, "published_at": published, "authors": tuple(authors[:20]),
            "language": language}


# Elements that never hold article text, removed before extraction (in C, with lxml) so that trafilatura's many
# XPath passes walk a smaller tree. JSON-LD scripts stay: trafilatura's baseline reads articleBody from them.
# The rest of the list are elements trafilatura's own cleaning deletes anyway (settings.MANUALLY_CLEANED).
_NEVER_TEXT = ("style", "noscript", "svg", "template", "link", "meta", "iframe", "canvas", "video", "audio", "picture",
               "source", "object", "embed", "select", "button", "input", "textarea", "aside", "footer", "menu", "nav",
               "applet", "map", "area", "blink", "datalist", "dialog", "frame", "frameset", "label", "marquee",
               "noindex", "optgroup", "option", "output", "param", "progress", "rp", "rt", "rtc", "track", "use")


def _prune(tree: lxml.html.HtmlElement) -> None:
    lxml.etree.strip_elements(tree, *_NEVER_TEXT, with_tail=False)
    for script in list(tree.iter("script")):
        if (script.get("type") or "").strip().lower() != "application/ld+json":
            script.drop_tree()


def extract_body(tree: lxml.html.HtmlElement, url: str = "") -> str:
    """The article body of a parsed page as plain text, paragraphs separated by blank lines ('' when none).

    trafilatura in fast mode with comments off: measured on the extraction benchmark it is ahead of trafilatura's
    default and precision settings in F1, and faster (`python benchmarks/extract.py`). It works on a copy.
    """
    import trafilatura  # imported here: loading it costs about a second, paid only by runs that extract

    text = trafilatura.extract(tree, url=url or None, fast=True, include_comments=False, output_format="txt")
    if not text:
        return ""
    # trafilatura puts one paragraph per line; our articles separate paragraphs with a blank line.
    return "\n\n".join(line.strip() for line in text.split("\n") if line.strip())


def extract_page(html: bytes, url: str = "", content_type: str = "") -> ExtractedPage:
    """The body and metadata of one HTML page (bytes as received; `content_type` as sent, for its charset)."""
    text, charset = decode_html(html, content_type)
    tree = parse_html(text)
    if tree is None:
        return ExtractedPage(text="", charset=charset)
    metadata = _metadata(tree, url)
    _prune(tree)
    return ExtractedPage(text=extract_body(tree, url), charset=charset, **metadata)
