"""RSS 2.0 (and 0.91/0.92), RSS 1.0 (RDF) and Atom 1.0, read incrementally with lxml's iterparse.

Entities are not expanded, nothing is fetched, no huge trees; each entry is cleared once read, so memory is bounded
by the largest entry (plus the document's bytes when they are in memory; a big document is read from its spool
file, transforms/spool.py), not by the number of entries. A document this reader does not
handle (RSS 0.90, Atom 0.3, one that is not well-formed) goes to feedparser (salvage.py), from the entry where
this reader stopped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

from transforms import spool
from transforms.article import Article
from transforms.dates import parse_date
from transforms.dead_letter import DeadLetter
from transforms.feed import FetchedFeed
from transforms.readers.base import EntryReader, language_code, ttl_seconds
from transforms.readers.salvage import read_salvaged
from transforms.spool import Body

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


def read_xml(fetched: FetchedFeed, data: Body, entries: EntryReader) -> Iterator[Article | DeadLetter]:
    """The entries of an XML document (UTF-8 `data`, in memory or spooled): streamed when it can be, else salvaged
    by feedparser (which reads the whole document into memory, spooled or not)."""
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
    yield from read_salvaged(fetched, spool.whole(data), entries, skip=done)


def _root_kind(data: Body) -> tuple[str, str]:
    from lxml import etree

    for _, root in etree.iterparse(spool.reader(data), events=("start",), **_LXML_OPTIONS):
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


def _stream_xml(data: Body, entries: EntryReader) -> Iterator[Article | DeadLetter]:
    from lxml import etree

    kind, language = _root_kind(data)
    entries.feed_language = language_code(language)
    entry_tag = _ENTRY_TAGS[kind]
    read = _read_atom_entry if kind == "atom" else _read_rss_item
    index = 0
    for _, elem in etree.iterparse(spool.reader(data), events=("end",), tag=[entry_tag, *_FEED_TAGS], **_LXML_OPTIONS):
        if elem.tag != entry_tag:
            parent = elem.getparent()
            if parent is not None and parent.tag in ("channel", _RSS1 + "channel"):
                if elem.tag == "ttl":
                    entries.stats.ttl_seconds = ttl_seconds(elem.text)
                elif not entries.feed_language:
                    entries.feed_language = language_code(elem.text)
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
    published, updated = parse_date(published_raw), parse_date(updated_raw)
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
        language=language_code(language or item.get(_XML_LANG)),
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
        published=parse_date(published_raw),
        updated=parse_date(updated_raw),
        language=language_code(entry.get(_XML_LANG)),
    )


def _longest(texts: list[str]) -> str:
    return max((t for t in texts if t and t.strip()), key=len, default="")


def _base(elem: Any) -> str:
    """The xml:base in force for the entry (lxml works it out from the ancestors), '' when none."""
    try:
        return elem.base or ""
    except Exception:  # noqa: BLE001 - an unreadable base is no base
        return ""
