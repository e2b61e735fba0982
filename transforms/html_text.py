"""HTML to plain text: a linear-time tokenizer that renders markup as reader mode shows it.

`html_to_text` turns block elements into line breaks (paragraphs separated by one blank line), drops scripts,
styles, embeds and navigation, decodes entities, normalises whitespace and returns Unicode NFC. Plain text (no
tags) keeps its own lines. `normalise_text` is the whitespace and invisible-character normalisation on its own.
Not a stage: CleanArticles (transforms/clean.py) and the furniture rules use it.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from html.entities import html5 as html5_entities

#
# The standard library's html.parser.HTMLParser was the first choice, but on Python 3.11 it is quadratic on broken
# markup that feeds do contain (measured: "<a " repeated 500, 1,000, 2,000 times takes 0.02, 0.08, 0.31 s, so a
# 60 KB run takes about 30 s; runs of "<!--" or "</" are quadratic too) and it raises AssertionError on "<![ x".
# The tokenizer below needs only tag names, so it is short: every step is a str.find or an anchored regex match
# that moves forward, which keeps it linear on any input. It follows the HTML5 rules that matter for text
# (quoted ">" inside attributes, raw-text elements, comments) and is lenient where a browser would hide the rest of
# the document: an unterminated tag, a stray "<", an unclosed <iframe> stay visible instead.

# Paragraph-level elements: a blank line before and after.
_PARAGRAPH_TAGS = frozenset(
    "address article aside blockquote body caption center details dialog div dl fieldset figcaption figure footer "
    "form h1 h2 h3 h4 h5 h6 header hgroup hr html main menu ol p pre section summary table ul".split()
)
# Line-level elements: a line break.
_LINE_TAGS = frozenset("br dd dt legend li option tbody tfoot thead tr".split())
# Table cells sit side by side on their row's line.
_CELL_TAGS = frozenset(("td", "th"))
# Elements whose content is raw text up to their end tag (HTML5 "raw text" and "RCDATA" elements), all dropped:
# code, styling, embeds, fallbacks, and the document <title> (the article title comes from the feed).
_RAW_DROP_TAGS = frozenset("script style iframe noembed noframes noscript title textarea xmp".split())
# Without their end tag, script and style hide the rest of the document (as in a browser); the others only
# hide themselves, because a CMS that forgets </iframe> did not mean to hide the article.
_RAW_DROP_TO_END = frozenset(("script", "style"))
# Elements with ordinary markup inside that is not article text: navigation, controls, media fallbacks,
# graphics, inert templates, the document head.
_NESTED_DROP_TAGS = frozenset("audio button canvas head math nav object select svg template video".split())

_TAG_OPEN = re.compile(r"<(/?)([A-Za-z][^\t\n\f\r />]*)")
_ATTR_QUOTE = re.compile(r"=[\t\n\f\r ]*([\"'])")
_MARKUP_WS = re.compile(r"[\t\n\f\r ]+")
# Entity references as HTML text has them, where a few legacy names may lack the ";" ("&copy 2020", "&nbsp").
# Unlike html.unescape, a name followed by a letter, digit or "=" is left alone: "?a=1&region=us" in a pasted URL
# stays as written instead of becoming "?a=1®ion=us" (the rule HTML5 applies inside attribute values).
_HTML_ENTITY = re.compile(
    r"&(?:#[0-9]{1,8};?|#[xX][0-9a-fA-F]{1,7};?|[A-Za-z][A-Za-z0-9]{1,31};|[A-Za-z]{2,8}(?![A-Za-z0-9=]))"
)
# A complete entity reference: the second decoding pass (double-escaped feeds, plain text) only trusts these, so
# "AT&T" or "&notation" in running text stay as written.
_STRICT_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")

# The end of a sentence or of a lead-in to a list, possibly inside a closing quote or bracket.
_SENTENCE_END = re.compile(r"[.!?:;…]['\"’”»)\]]?$")

# Invisible characters removed outright. ZWNJ/ZWJ (U+200C/U+200D) are kept: they change the spelling of Persian
# and Indic words and join emoji sequences. C0/C1 controls other than tab and newline are debris from bad decoding.
_DELETE_CHARS = dict.fromkeys(
    [0x00AD, 0x180E, 0x200B, 0x2060, 0xFEFF]
    + [c for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)]
    + list(range(0x7F, 0xA0))
)
_LINE_BREAKS = {0x0D: "\n", 0x2028: "\n", 0x2029: "\n\n"}
_TRANSLATION = {**_DELETE_CHARS, **_LINE_BREAKS}
# str.translate with a dict looks every character up (about 200 us on an article of non-Latin text); a character
# class finds the few there are, usually none, in one regex pass.
_TRANSLATED = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_TRANSLATION)) + "]")
# What `normalise_text` changes, besides runs of spaces and blank lines (found with `in`) and non-NFC text: a character
# it translates, and whitespace other than a space or a line break. One character class: a single fast scan. Python's
# whitespace (str.split, re's \s) is Unicode's White_Space, none of it above U+3000 (tests check every code point).
_ODD_CHARS = re.compile(
    "["
    + "".join(
        re.escape(chr(c))
        for c in sorted({*_TRANSLATION, *(c for c in range(0x3001) if chr(c).isspace())})
        if c not in (0x20, 0x0A)
    )
    + "]"
)


def _translate_match(match: re.Match[str]) -> str:
    return _TRANSLATION[ord(match.group())] or ""


def _has_markup_ws_to_fold(text: str) -> bool:
    """Whether folding markup whitespace runs to one space changes `text`: only a run of two or a character other
    than a space does. Five substring scans cost less than a substitution per single space between words."""
    return "  " in text or "\n" in text or "\t" in text or "\r" in text or "\f" in text


class _TextBuilder:
    """Collects text while the tokenizer walks the markup, turning block boundaries into line breaks."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pre_depth = 0
        # Line breaks owed by block boundaries since the last text: adjacent boundaries ("</li><li>", "</p></div>")
        # merge into the strongest, where each <br> adds its own.
        self.pending = 0
        # Open nested-drop elements as (tag, index into parts where their content starts, pending then).
        self.dropping: list[tuple[str, int, int]] = []
        self.saw_markup = False

    def text(self, raw: str) -> None:
        if "]]>" in raw:  # the end of a CDATA section whose start was skipped
            raw = raw.replace("]]>", "")
        if not raw:
            return
        decoded = _HTML_ENTITY.sub(_unescape_match, raw) if "&" in raw else raw
        if not self.pre_depth:
            if _has_markup_ws_to_fold(decoded):
                decoded = _MARKUP_WS.sub(" ", decoded)
            if decoded == " " and (self.pending or not self.parts or self.parts[-1][-1] in " \n"):
                return  # indentation between tags
        self._flush()
        self.parts.append(decoded)

    def start(self, tag: str, self_closing: bool) -> None:
        if tag in _NESTED_DROP_TAGS:
            if not self_closing:
                self.dropping.append((tag, len(self.parts), self.pending))
            return
        if tag == "body":
            self._close_dropped("head")
        self._boundary(tag)
        if tag == "pre" and not self_closing:
            self.pre_depth += 1

    def end(self, tag: str) -> None:
        if tag in _NESTED_DROP_TAGS:
            self._close_dropped(tag)
            return
        if tag == "br":  # "</br>" is a <br> in HTML5
            self._boundary(tag)
            return
        if tag in _PARAGRAPH_TAGS or tag in _LINE_TAGS:
            self._boundary(tag)
        if tag == "pre" and self.pre_depth:
            self.pre_depth -= 1

    def _boundary(self, tag: str) -> None:
        if tag == "br":
            self._flush()
            self.parts.append("\n")
        elif tag in _PARAGRAPH_TAGS:
            self.pending = 2
        elif tag in _LINE_TAGS:
            self.pending = max(self.pending, 1)
        elif tag in _CELL_TAGS and self.parts and not self.pending and self.parts[-1][-1] not in " \n":
            self.parts.append(" ")

    def _flush(self) -> None:
        if self.pending and self.parts:
            self.parts.append("\n" * self.pending)
        self.pending = 0

    def _close_dropped(self, tag: str) -> None:
        for k in range(len(self.dropping) - 1, -1, -1):
            if self.dropping[k][0] == tag:
                del self.parts[self.dropping[k][1] :]
                self.pending = self.dropping[k][2]
                del self.dropping[k:]
                return

    def result(self) -> str:
        # A nested-drop element never closed keeps its text: losing a whole article to a missing </svg> is worse
        # than showing a few stray words.
        return "".join(self.parts)


def _tag_end(markup: str, pos: int) -> int:
    """Index of the ">" closing a tag whose attributes start at `pos`, honouring quoted values; -1 if none."""
    gt = -1
    while True:
        if gt < pos:
            gt = markup.find(">", pos)
            if gt < 0:
                return -1
        quote = _ATTR_QUOTE.search(markup, pos, gt)
        if quote is None:
            return gt
        closing = markup.find(quote.group(1), quote.end())
        if closing < 0:
            return gt  # an unclosed quote: end at the first ">" rather than swallow the document
        pos = closing + 1


@functools.cache
def _end_tag_pattern(tag: str) -> re.Pattern[str]:
    return re.compile(r"</" + re.escape(tag) + r"[\t\n\f\r />]", re.IGNORECASE)


def _walk_markup(markup: str, out: _TextBuilder) -> None:
    """Feed `markup` to `out` as text, start tags and end tags, in one forward pass."""
    n = len(markup)
    last_gt = markup.rfind(">")
    # Raw-text elements whose end tag was searched for and not found after this position: searching again from
    # further on cannot succeed, and would make "<iframe>" repeated quadratic.
    no_end_tag_after: dict[str, int] = {}
    pos = 0
    while pos < n:
        lt = markup.find("<", pos)
        if lt < 0:
            out.text(markup[pos:])
            return
        if lt > pos:
            out.text(markup[pos:lt])
        if lt > last_gt:
            out.text(markup[lt:])  # no ">" left, so no tag can follow
            return
        if markup.startswith("<!--", lt):
            out.saw_markup = True
            if markup.startswith("<!-->", lt) or markup.startswith("<!--->", lt):
                pos = markup.index(">", lt) + 1
                continue
            close = markup.find("-->", lt + 4)
            if close < 0:
                return  # HTML5: an unclosed comment runs to the end of the document
            pos = close + 3
            continue
        if markup.startswith("<![CDATA[", lt):
            # XHTML feeds wrap text (sometimes markup) in CDATA: read through it; text() drops the "]]>".
            out.saw_markup = True
            pos = lt + 9
            continue
        tag = _TAG_OPEN.match(markup, lt)
        if tag is None:
            if markup.startswith(("<!", "<?", "</"), lt):  # doctype, processing instruction, bogus comment
                out.saw_markup = True
                pos = markup.find(">", lt) + 1  # last_gt > lt, so there is one
            else:
                out.text("<")  # "a < b", "<3": a literal less-than sign
                pos = lt + 1
            continue
        close = _tag_end(markup, tag.end())
        if close < 0:
            out.text(markup[lt:])
            return
        out.saw_markup = True
        name = tag.group(2).lower()
        pos = close + 1
        if tag.group(1):
            out.end(name)
            continue
        self_closing = markup[close - 1] == "/" and close - 1 >= tag.end()
        if name in _RAW_DROP_TAGS and not self_closing:
            found = None if pos >= no_end_tag_after.get(name, n + 1) else _end_tag_pattern(name).search(markup, pos)
            if found is not None:
                end = markup.find(">", found.end() - 1)
                pos = n if end < 0 else end + 1
                continue
            no_end_tag_after[name] = min(pos, no_end_tag_after.get(name, n + 1))
            if name in _RAW_DROP_TO_END:
                return
            continue
        out.start(name, self_closing)
        if self_closing and name not in _NESTED_DROP_TAGS:
            out.end(name)


def _unescape_match(match: re.Match[str]) -> str:
    ref = match.group(0)
    if ref[1] == "#":
        return html.unescape(ref)
    # Only a name HTML knows, whole: html.unescape would turn "&notanentity;" into "¬anentity;".
    return html5_entities.get(ref[1:], ref)


def _decode_strict(text: str) -> str:
    """Decode complete entity references only (used on text that has already been decoded once)."""
    if "&" not in text:
        return text
    return _STRICT_ENTITY.sub(_unescape_match, text)


def normalise_text(text: str) -> str:
    """Whitespace within lines collapsed, invisible characters removed, NFC, at most one blank line, stripped."""
    if _is_normal(text):
        return text  # already normal: _normalise would give it back unchanged
    return _normalise(text)


def _is_normal(text: str) -> bool:
    """Whether `text` is what `normalise_text` returns: no character it removes or translates, no whitespace but
    single spaces between words and line breaks, at most one blank line in a row and none at either end, NFC. Most
    text reaches normalise_text normal already (html_to_text's result is normalised again by remove_furniture), and
    these scans cost far less than splitting every line."""
    if "  " in text or " \n" in text or "\n " in text or "\n\n\n" in text:
        return False
    if text[:1] in (" ", "\n") or text[-1:] in (" ", "\n") or _ODD_CHARS.search(text):
        return False
    return unicodedata.is_normalized("NFC", text)


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n")
    if _TRANSLATED.search(text):
        text = _TRANSLATED.sub(_translate_match, text)
    text = unicodedata.normalize("NFC", text)
    out: list[str] = []
    blank = False
    for line in text.split("\n"):
        words = line.split()
        if not words:
            blank = bool(out)
            continue
        if blank:
            out.append("")
            blank = False
        out.append(" ".join(words))
    return "\n".join(out)


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment or document (see the module docstring); plain text passes through normalised.

    Entities are decoded as HTML text does, then once more for complete references only, because feeds often escape
    twice ("Caf&amp;eacute;" means "Café"). The cost is that a text about HTML that writes "&amp;eacute;" to show
    the reference itself loses that; news text practically never does.
    """
    if not markup:
        return ""
    builder = _TextBuilder()
    if "<" in markup:
        _walk_markup(markup, builder)
    if builder.saw_markup:
        return normalise_text(_decode_strict(builder.result()))
    # No markup at all: the line breaks are the author's, so they are kept (HTML would fold them), except where
    # they only wrap a sentence.
    return _unwrap(normalise_text(_decode_strict(_decode_strict(markup))))


def _unwrap(text: str) -> str:
    """Join lines that continue a sentence: hard-wrapped plain text ("...on your\ncalendar!") is common in feeds.

    A line is joined to the one before when it starts in lower case and the one before does not end a sentence;
    lists, headings and paragraphs start with a capital, a digit or a symbol, or follow a colon, and stay apart.
    """
    out: list[list[str]] = []
    for line in text.split("\n"):
        if out and out[-1][-1] and line[:1].islower() and not _ends_sentence(out[-1][-1]):
            out[-1].append(line)
        else:
            out.append([line])
    return "\n".join(" ".join(group) for group in out)


def _ends_sentence(line: str) -> bool:
    return _SENTENCE_END.search(line[-2:]) is not None  # the pattern spans two characters at most
