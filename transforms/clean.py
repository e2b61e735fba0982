"""CleanArticles: turn each article's raw markup into plain text and strip the page furniture around the body.

Two pure steps, usable without Beam:

- `html_to_text` renders markup as a browser would show it in reader mode: block elements become line breaks
  (paragraphs separated by one blank line), scripts, styles, embeds and navigation are dropped, entities are
  decoded, whitespace is normalised and the result is Unicode NFC. Plain text (no tags) keeps its own lines.
- `remove_furniture` drops the lines a scraper or CMS wraps around an article (breadcrumbs, the title repeated,
  "By ..." bylines, "Updated: ..." lines, "Also read: ..." links, "Follow us on ..." prompts, a trailing
  "Further reading:" block) by rules held in `CleanSettings`. Rules only ever match whole, short lines, so a
  body sentence that merely contains "by" or "follow" is never touched.

`CleanArticles` applies both to every Article (title, text and the feed's `summary`); it keeps a title-only
article (a headline with a link is news) and makes one left with neither title nor text a dead letter with reason
`empty_after_cleaning`. Try it on one document:

    python -c "import sys; from transforms.clean import clean_text; print(clean_text(sys.stdin.read()))" < page.html
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import functools
import html
import re
import unicodedata
from collections.abc import Iterable, Iterator
from html.entities import html5 as html5_entities

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.article import DEAD_LETTER_TAG, Article, DeadLetter, Routed, excerpt, utcnow

STAGE = "clean"
EMPTY_AFTER_CLEANING = "empty_after_cleaning"

# ---------------------------------------------------------------------------------------------------------------
# HTML to text
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


@functools.lru_cache(maxsize=None)
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
    text = text.replace("\r\n", "\n").translate(_TRANSLATION)
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


def clean_title(html_title: str) -> str:
    """A title as one line of plain text."""
    return " ".join(html_to_text(html_title).split())


# ---------------------------------------------------------------------------------------------------------------
# Furniture removal

# Each is matched, case-insensitively, against a whole line (stripped, whitespace collapsed) of at most
# `max_furniture_chars` characters. The anchoring at the line start is what keeps body sentences safe.
DEFAULT_DROP_LINE_PATTERNS: tuple[str, ...] = (
    # Bylines: "By Ruchi Upadhyay", "By The Associated Press", "Written by J. Smith | Updated ...", "Por Matt
    # Spetalnick e Jason Szep". The name starts with a letter that is not lower case, which leaves "By contrast"
    # and "by the end" alone, and the line must not end like a sentence (so "By Monday, all had left." stays).
    r"(?:(?:(?:written|posted|story|words|text|reported|edited|compiled)\s+)?by|por|par):?\s+"
    r"(?-i:(?![a-zß-öø-ÿ]))[^\W\d_][\w'’.\-]*(?:\s+[\w'’.\-]+){0,5}"
    r"(?:(?:\s*[,|•·\-–—/&]\s*|\s+(?:and|e|y|et)\s+)[^.!?]{0,80})?",
    r"(?:authors?|written\s+by|reporter|correspondent)\s*:\s*\S.{0,80}",
    r"\(?\s*(?:additional\s+)?(?:reporting|writing|editing|research)\s+by\b.{0,200}",
    r"\(?\s*with\s+inputs?\s+from\s+.{1,80}",
    # Date lines: "Updated Date", "Updated: 26 Feb 2022, 10:41 IST", "Published 3 hours ago", "Last updated on ...".
    r"(?:last\s+)?(?:updated|published|posted|modified|first\s+published)(?:\s+(?:date|on|at|time))?"
    r"(?:\s*[:|\-–—]\s*.{0,80}|\s+(?=[^.!?]{1,60}$)(?=.*(?:\d|\bago\b|\btoday\b|\byesterday\b)).+)?",
    # Links to other stories: "Also Read :- ...", "Read more: ...", "READ ALSO", "See also: ...", "Related: ...".
    r"(?:also\s+read|read\s+also|also\s+see|see\s+also|read\s+more|read\s+next|must\s+read|don'?t\s+miss|"
    r"related(?:\s+(?:news|stories|story|articles?|posts?|content|coverage|reading|links?|videos?))?|"
    r"recommended(?:\s+(?:for\s+you|stories|articles|reading|videos?))?|more\s+(?:stories|news)|"
    r"you\s+(?:may|might)\s+(?:also\s+)?(?:like|enjoy|be\s+interested\s+in)|trending(?:\s+now)?|"
    r"watch\s+(?:video|now)|top\s+stories|latest\s+news)"
    r"(?:\s*(?:[:\-–—|>»›]+|\.{2,}|…)\s*.*)?",
    r"(?:continue|keep)\s+reading\b.{0,100}",
    # Social prompts: "For the latest news and reviews, follow us on Facebook and Twitter ...", "Follow us on X".
    r"(?:.{0,100}?[,:;\-–—]\s*)?(?:please\s+)?(?:follow|like|join|find|connect\s+with)\s+us\s+(?:on|at|via|in)\b"
    r".{0,160}",
    r"follow\s+(?:\S+\s+){0,3}on\s+(?:facebook|twitter|x|instagram|linkedin|youtube|telegram|whatsapp|threads|"
    r"tiktok|google\s+news|bluesky|mastodon)\b.{0,120}",
    r"(?:.{0,80}?[,:;\-–—]\s*)?(?:subscribe|sign\s+up)\s+(?:to|for)\s+(?:our|the|my)\s+(?:\S+\s+){0,3}"
    r"(?:newsletters?|channel|podcast|alerts|updates|feed)\b.{0,160}",
    r"(?:subscribe|sign\s+up|register)\s+(?:now|today|here|for\s+free)\b.{0,160}",
    r"(?:click|tap)\s+here\b.{0,200}",
    r"download\s+(?:the|our)\s+(?:\S+\s+){0,3}app\b.{0,160}",
    # Share prompts and button rows: "Share this article", "Share on Facebook", "Facebook Twitter WhatsApp Email".
    r"share(?:\s+this)?\s*[:\-–—]?",
    r"share\s+(?:this|the)\s+(?:article|story|post|page|video|gallery|link)\b.{0,60}",
    r"share\s+(?:on|via|to|with)\s+(?:facebook|twitter|x|whatsapp|linkedin|e-?mail|pinterest|reddit|telegram|"
    r"messenger|friends)\b.{0,40}",
    r"(?:facebook|twitter|x|whatsapp|linkedin|e-?mail|pinterest|reddit|telegram|print|copy\s+link|messenger|"
    r"flipboard|comments?)(?:(?:\s*[|•·,/]\s*|\s+)(?:share|facebook|twitter|x|whatsapp|linkedin|e-?mail|pinterest|"
    r"reddit|telegram|print|copy\s+link|messenger|flipboard|comments?)){1,11}",
    # Advertising and navigation leftovers.
    r"posted\s+in\s+.{1,80}",
    r"(?:advertisement|advertising|sponsored(?:\s+content)?|ad|ads|promoted|skip\s+(?:to\s+)?(?:main\s+)?content|"
    r"skip\s+navigation|scroll\s+to\s+continue\s+with\s+content)",
    r"(?:dismiss|close|back\s+to\s+top|show\s+(?:more|less)|load\s+more|loading\.*|toggle\s+caption|"
    r"enlarge\s+this\s+image|play\s+video|skip\s+ad)",
    r"(?:story|article)\s+continues\s+(?:below|after)(?:\s+(?:this|the))?\s+(?:advertisement|ad)",
    # Feed boilerplate: WordPress's "The post X appeared first on Y.", Reddit's "submitted by /u/x to r/y".
    r"the\s+post\s+.{1,250}\s+appeared\s+first\s+on\s+.{1,120}",
    r"submitted\s+by\s*\S+(?:\s+to\s+\S+)?",
    r"(?:\[(?:link|comments|\d+\s+comments?)\]\s*){1,2}",
    r"(?:tags?|topics?|filed\s+under)\s*:.{0,200}",
    r"(?:copyright\s*)?©.{0,150}|copyright\s*(?:\(c\)|\d{4}).{0,150}|all\s+rights\s+reserved\.?",
)

# A line matching one of these starts a trailing block that is dropped to the end of the text, but only when
# everything after it is short and link-like (see CleanSettings.tail_max_lines and tail_max_line_chars).
DEFAULT_DROP_TAIL_PATTERNS: tuple[str, ...] = (
    r"(?:further|recommended|suggested)\s+reading",
    r"(?:related|more\s+on\s+this|more\s+on\s+this\s+story|more\s+from\s+.{1,40}|see\s+also|also\s+read|read\s+more|"
    r"you\s+(?:may|might)\s+also\s+like|recommended(?:\s+for\s+you)?|trending(?:\s+now)?|"
    r"most\s+(?:read|popular|viewed)|latest\s+(?:news|stories)|top\s+stories|more\s+stories)"
    r"(?:\s+(?:stories|articles|news|links|content|coverage|topics))?",
    r"(?:tags|topics|comments?|share\s+this(?:\s+(?:article|story))?)",
)
_TAIL_SUFFIX = r"\s*[:\-–—]?"

DEFAULT_BREADCRUMB_WORDS: tuple[str, ...] = ("home", "homepage", "home page", "news", "start", "startseite",
                                             "accueil", "inicio", "início", "portada")

# Ends with a full stop (not an ellipsis, which ends teasers): a sentence, so not part of a list of links.
_SENTENCE_LIKE = re.compile(r"(?<!\.)\.['\"’”»)\]]?$")
_NUMBERED_ITEM = re.compile(r"(\d{1,2})[.)]\s*(\S.*)")
_INLINE_NUMBERED_SPLIT = re.compile(r"\s+\d{1,2}[.)]\s+")
_MAX_TITLE_CHARS = 1000
_CRUMB_SEPARATOR = re.compile(r"\s*(?:>|/|»|›|\||→|::|•|·)\s*")


@dataclasses.dataclass(frozen=True)
class CleanSettings:
    """Rules of CleanArticles. Patterns are Python regexes matched case-insensitively against a whole line.

    Add site-specific rules with the `extra_*` fields, which keep the defaults; set the main fields to replace them.
    `min_chars`: an article whose cleaned text is not empty but shorter is a dead letter ("empty_after_cleaning").
    An article with a title and no text at all is kept whatever `min_chars` says (a headline with a link is news);
    one with neither title nor text is always a dead letter. With the default 1 any text counts, because a
    one-sentence brief is still news and length filtering is a policy choice for the user.
    """

    drop_line_patterns: tuple[str, ...] = DEFAULT_DROP_LINE_PATTERNS
    extra_drop_line_patterns: tuple[str, ...] = ()
    drop_tail_patterns: tuple[str, ...] = DEFAULT_DROP_TAIL_PATTERNS
    extra_drop_tail_patterns: tuple[str, ...] = ()
    # First item of a breadcrumb trail ("1. Home 2. World", "Home > World", "Home / World").
    breadcrumb_words: tuple[str, ...] = DEFAULT_BREADCRUMB_WORDS
    # Drop lines near the top equal (or nearly: `title_similarity` of difflib's ratio) to the title.
    drop_title_repeats: bool = True
    title_similarity: float = 0.9
    # How many non-blank lines at the top are searched for breadcrumbs and title repeats.
    head_lines: int = 10
    # Longer lines are body text: line patterns never look at them.
    max_furniture_chars: int = 300
    # A tail block ("Further reading:" ...) is furniture only if at most this many lines follow, each no longer and
    # none ending in a full stop (headlines and links do not; body sentences do).
    tail_max_lines: int = 12
    tail_max_line_chars: int = 160
    min_chars: int = 1

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.endswith(("patterns", "words")):
                if isinstance(value, str) or not isinstance(value, Iterable):
                    raise TypeError(f"CleanSettings.{field.name} must be a list of strings, got {value!r}")
                object.__setattr__(self, field.name, tuple(value))
        for name in ("head_lines", "max_furniture_chars", "tail_max_lines", "tail_max_line_chars", "min_chars"):
            if getattr(self, name) < 0:
                raise ValueError(f"CleanSettings.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.title_similarity <= 1.0:
            raise ValueError(f"CleanSettings.title_similarity must be in (0, 1], got {self.title_similarity}")
        # Compile now so that a bad pattern in a config fails at start-up, naming the pattern.
        _compile(self.drop_line_patterns + self.extra_drop_line_patterns, "")
        _compile(self.drop_tail_patterns + self.extra_drop_tail_patterns, _TAIL_SUFFIX)


@functools.lru_cache(maxsize=64)
def _compile(patterns: tuple[str, ...], suffix: str) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(f"(?:{pattern}){suffix}", re.IGNORECASE))
        except re.error as err:
            raise ValueError(f"CleanSettings: bad pattern {pattern!r}: {err}") from None
    return tuple(compiled)


# Runs of characters that are not alphanumeric (re's \W is "not isalnum() and not _").
_NOT_ALNUM = re.compile(r"[\W_]+")


def _comparable(line: str) -> str:
    """A line reduced for title comparison: case, punctuation and quote styles ignored."""
    folded = unicodedata.normalize("NFKC", line).casefold()
    return " ".join(_NOT_ALNUM.sub(" ", folded).split())


def _breadcrumbs(lines: list[str], head: list[int], words: frozenset[str]) -> tuple[list[int], str]:
    """Indexes of a breadcrumb trail at the top, and its last item (often the page title)."""
    for pos, i in enumerate(head):
        line = lines[i]
        numbered = _NUMBERED_ITEM.fullmatch(line)
        if numbered and numbered.group(1) == "1":
            items = _INLINE_NUMBERED_SPLIT.split(numbered.group(2))
            if items[0].casefold() in words:
                if len(items) > 1:  # "1. Home 2. World 3. Title" on one line
                    return [i], items[-1]
                found, last, expected = [i], items[0], 2
                for j in head[pos + 1 :]:
                    item = _NUMBERED_ITEM.fullmatch(lines[j])
                    if not item or int(item.group(1)) != expected:
                        break
                    found.append(j)
                    last = item.group(2)
                    expected += 1
                return found, last
        parts = _CRUMB_SEPARATOR.split(line)
        if len(parts) > 1 and parts[0].casefold() in words and all(parts):
            return [i], parts[-1]
        if line.casefold() in words and pos + 1 < len(head):
            # An unnumbered trail rendered one item per line: "Home" / "World" / "Europe", up to a blank line.
            found = [i]
            for j in head[pos + 1 :]:
                if j != found[-1] + 1 or len(lines[j].split()) > 4 or _ends_sentence(lines[j]):
                    break
                found.append(j)
            if len(found) > 1:
                return found, lines[found[-1]]
    return [], ""


def _is_title(line: str, titles: list[str], similarity: float) -> bool:
    candidate = _comparable(line)
    if not candidate:
        return False
    for title in titles:
        if candidate == title:
            return True
        shorter, longer = sorted((len(candidate), len(title)))
        # SequenceMatcher is quadratic in the worst case: only title-sized lines get the near-match test.
        if longer <= _MAX_TITLE_CHARS and shorter / longer >= similarity:
            if difflib.SequenceMatcher(None, candidate, title, autojunk=False).ratio() >= similarity:
                return True
    return False


def _link_like(line: str, settings: CleanSettings) -> bool:
    """A short line that reads like a headline or a link, not like a sentence of the body."""
    return len(line) <= settings.tail_max_line_chars and not _SENTENCE_LIKE.search(line[-3:])


def _furniture_mask(lines: list[str], title: str, settings: CleanSettings) -> list[bool]:
    """For each line, True when it is furniture."""
    drop = [False] * len(lines)
    nonblank = [i for i, line in enumerate(lines) if line]
    head = nonblank[: settings.head_lines]

    crumbs, crumb_title = _breadcrumbs(lines, head, frozenset(w.casefold() for w in settings.breadcrumb_words))
    for i in crumbs:
        drop[i] = True

    if settings.drop_title_repeats:
        titles = [t for t in {_comparable(title), _comparable(crumb_title)} if t]
        titles = [t for t in titles if t not in {_comparable(w) for w in settings.breadcrumb_words}]
        if titles:
            for i in head:
                if not drop[i] and _is_title(lines[i], titles, settings.title_similarity):
                    drop[i] = True

    line_patterns = _compile(settings.drop_line_patterns + settings.extra_drop_line_patterns, "")
    for i in nonblank:
        if not drop[i] and len(lines[i]) <= settings.max_furniture_chars:
            drop[i] = any(p.fullmatch(lines[i]) for p in line_patterns)

    # A tail heading can only be followed by tail_max_lines kept lines, so only the last few are candidates.
    tail_patterns = _compile(settings.drop_tail_patterns + settings.extra_drop_tail_patterns, _TAIL_SUFFIX)
    kept = [i for i in nonblank if not drop[i]]
    first = kept[-settings.tail_max_lines - 1] if len(kept) > settings.tail_max_lines else 0
    for i in nonblank[bisect.bisect_left(nonblank, first) :]:
        if len(lines[i]) > settings.max_furniture_chars or not any(p.fullmatch(lines[i]) for p in tail_patterns):
            continue
        rest = kept[bisect.bisect_right(kept, i) :]
        if len(rest) <= settings.tail_max_lines and all(_link_like(lines[j], settings) for j in rest):
            for j in range(i, len(lines)):
                drop[j] = True
            break
    return drop


def _remove_furniture_counted(text: str, title: str, settings: CleanSettings) -> tuple[str, int]:
    lines = normalise_text(text).split("\n")
    drop = _furniture_mask(lines, title, settings)
    removed = sum(1 for line, dropped in zip(lines, drop) if dropped and line)
    kept = "\n".join(line for line, dropped in zip(lines, drop) if not dropped)
    return normalise_text(kept), removed


def remove_furniture(text: str, title: str = "", settings: CleanSettings = CleanSettings()) -> str:
    """`text` (plain, as from html_to_text) without the furniture lines that `settings` describe."""
    return _remove_furniture_counted(text, title, settings)[0]


def clean_text(html_text: str, title: str = "", settings: CleanSettings = CleanSettings()) -> str:
    """html_to_text, then remove_furniture: the article body as plain text."""
    return remove_furniture(html_to_text(html_text), clean_title(title), settings)


# ---------------------------------------------------------------------------------------------------------------
# The stage


class _CleanArticleFn(beam.DoFn):
    """Cleans one Article; routes it to the dead letters when no text is left."""

    def __init__(self, settings: CleanSettings, run_id: str) -> None:
        self._settings = settings
        self._run_id = run_id
        self._cleaned = Metrics.counter(STAGE, "articles_cleaned")
        self._empty = Metrics.counter(STAGE, "empty_after_cleaning")
        self._furniture = Metrics.counter(STAGE, "furniture_lines_removed")
        self._title_only = Metrics.counter(STAGE, "title_only")

    def process(self, article: Article) -> Iterator[Article | beam.pvalue.TaggedOutput]:
        title = clean_title(article.title)
        plain = html_to_text(article.text)
        text, removed = _remove_furniture_counted(plain, title, self._settings)
        if removed:
            self._furniture.inc(removed)
        title_only = bool(title) and not text
        if title_only:
            self._title_only.inc()
        elif len(text) < self._settings.min_chars or not (title or text):
            self._empty.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, self._dead_letter(article, plain, text, removed))
            return
        self._cleaned.inc()
        if article.text_source == "page":
            # The text came from the article's page (FetchArticlePages); the feed's own text is the summary.
            summary = remove_furniture(html_to_text(article.summary), title, self._settings)
        else:
            summary = text
        source = "page" if article.text_source == "page" and text else "feed" if text else "none"
        yield dataclasses.replace(article, title=title, text=text, summary=summary, text_source=source)

    def _dead_letter(self, article: Article, plain: str, text: str, removed: int) -> DeadLetter:
        if not (plain or clean_title(article.title)):
            why = "the entry has neither title nor text (markup only or empty)"
        elif not plain:
            why = "the entry has no text (markup only or empty)"
        elif not text:
            why = f"all {removed} line(s) of text were page furniture or repeated the title"
        else:
            why = f"{len(text)} character(s) left, fewer than min_chars={self._settings.min_chars}"
        return DeadLetter(
            stage=STAGE,
            reason=EMPTY_AFTER_CLEANING,
            feed_url=article.feed_url,
            entry_key=article.article_id or article.url,
            message=why,
            raw_excerpt=excerpt(article.text),
            time=utcnow(),
            run_id=self._run_id or article.run_id,
        )


class CleanArticles(beam.PTransform):
    """Articles with raw markup in, Articles with plain title, text and summary out, with `text_source` set.

    A title-only article (empty text, or text that only repeated its title) is kept with `text_source` "none";
    an article with neither title nor text, or with text shorter than `min_chars`, becomes a dead letter.
    """

    def __init__(self, settings: CleanSettings = CleanSettings(), run_id: str = "") -> None:
        super().__init__()
        self._settings = settings
        self._run_id = run_id

    def expand(self, articles: beam.PCollection) -> Routed:
        results = articles | "CleanText" >> beam.ParDo(_CleanArticleFn(self._settings, self._run_id)).with_outputs(
            DEAD_LETTER_TAG, main="articles"
        )
        return Routed(results.articles, results[DEAD_LETTER_TAG])
