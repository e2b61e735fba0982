"""Page furniture: the lines a scraper or CMS wraps around an article, and the rules that find them.

`remove_furniture` drops breadcrumbs, the title repeated, "By ..." bylines, "Updated: ..." lines, "Also read: ..."
links, "Follow us on ..." prompts and a trailing "Further reading:" block, by rules held in `CleanSettings`. Rules
only ever match whole, short lines, so a body sentence that merely contains "by" or "follow" is never touched.
Not a stage: CleanArticles (transforms/clean.py) applies it.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import NamedTuple

from transforms.html_text import _ends_sentence, normalise_text

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

DEFAULT_BREADCRUMB_WORDS: tuple[str, ...] = (
    "home",
    "homepage",
    "home page",
    "news",
    "start",
    "startseite",
    "accueil",
    "inicio",
    "início",
    "portada",
)

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


_BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=")


@functools.lru_cache(maxsize=64)
def _full_matcher(patterns: tuple[str, ...], suffix: str) -> Callable[[str], bool]:
    """Whether a line matches one of `patterns` whole. One alternation costs one regex call per line instead of
    one per pattern (about 60 per article with the defaults); patterns that cannot share one (numbered
    backreferences, inline global flags) are tried one by one."""
    compiled = _compile(patterns, suffix)
    if not compiled:
        return lambda line: False
    if not any(_BACKREFERENCE.search(p) for p in patterns):
        try:
            combined = re.compile("|".join(p.pattern for p in compiled), re.IGNORECASE)
            return lambda line: combined.fullmatch(line) is not None
        except re.error:
            pass
    return lambda line: any(p.fullmatch(line) for p in compiled)


# Runs of characters that are not alphanumeric (re's \W is "not isalnum() and not _").
_NOT_ALNUM = re.compile(r"[\W_]+")


def _comparable(line: str) -> str:
    """A line reduced for title comparison: case, punctuation and quote styles ignored."""
    folded = unicodedata.normalize("NFKC", line).casefold()
    return " ".join(_NOT_ALNUM.sub(" ", folded).split())


class _Rules(NamedTuple):
    """What `_furniture_mask` derives from its settings, once per settings rather than once per article."""

    crumb_words: frozenset[str]  # breadcrumb words, case folded
    crumb_starts: tuple[str, ...]  # the same, for str.startswith
    crumb_chars: int  # the longest of them
    crumb_comparable: frozenset[str]  # the same, reduced as titles are (`_comparable`)
    is_line_furniture: Callable[[str], bool]
    is_tail_heading: Callable[[str], bool]


@functools.lru_cache(maxsize=64)
def _rules(settings: CleanSettings) -> _Rules:
    words = frozenset(w.casefold() for w in settings.breadcrumb_words)
    return _Rules(
        words,
        tuple(words),
        max(map(len, words), default=0),
        frozenset(_comparable(w) for w in settings.breadcrumb_words),
        _full_matcher(settings.drop_line_patterns + settings.extra_drop_line_patterns, ""),
        _full_matcher(settings.drop_tail_patterns + settings.extra_drop_tail_patterns, _TAIL_SUFFIX),
    )


def _breadcrumbs(lines: list[str], head: list[int], rules: _Rules) -> tuple[list[int], str]:
    """Indexes of a breadcrumb trail at the top, and its last item (often the page title)."""
    words = rules.crumb_words
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
        # Only a line that starts with a breadcrumb word can be a trail: case folding works character by character
        # and never shortens a string, so the first item of one lies within the first `crumb_chars` characters and
        # folds to a prefix of theirs. Testing that first spares splitting every paragraph of the head.
        starts_trail = line[: rules.crumb_chars].casefold().startswith(rules.crumb_starts)
        if starts_trail:
            parts = _CRUMB_SEPARATOR.split(line)
            if len(parts) > 1 and parts[0].casefold() in words and all(parts):
                return [i], parts[-1]
        if starts_trail and len(line) <= rules.crumb_chars and line.casefold() in words and pos + 1 < len(head):
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

    rules = _rules(settings)
    crumbs, crumb_title = _breadcrumbs(lines, head, rules)
    for i in crumbs:
        drop[i] = True

    if settings.drop_title_repeats:
        titles = [t for t in {_comparable(title), _comparable(crumb_title)} if t and t not in rules.crumb_comparable]
        if titles:
            # A paragraph far longer than every title cannot repeat one; reducing it (_comparable) is most of the
            # cost. A near match is at most 1/similarity times a title's length; four times that allows for what
            # folding can expand (casefold "ß" -> "ss", NFKC ligatures).
            longest = 4 * max(map(len, titles)) / settings.title_similarity + 16
            for i in head:
                if not drop[i] and len(lines[i]) <= longest and _is_title(lines[i], titles, settings.title_similarity):
                    drop[i] = True

    is_line_furniture = rules.is_line_furniture
    for i in nonblank:
        if not drop[i] and len(lines[i]) <= settings.max_furniture_chars:
            drop[i] = is_line_furniture(lines[i])

    # A tail heading can only be followed by tail_max_lines kept lines, so only the last few are candidates.
    is_tail_heading = rules.is_tail_heading
    kept = [i for i in nonblank if not drop[i]]
    first = kept[-settings.tail_max_lines - 1] if len(kept) > settings.tail_max_lines else 0
    for i in nonblank[bisect.bisect_left(nonblank, first) :]:
        if len(lines[i]) > settings.max_furniture_chars or not is_tail_heading(lines[i]):
            continue
        rest = kept[bisect.bisect_right(kept, i) :]
        if len(rest) <= settings.tail_max_lines and all(_link_like(lines[j], settings) for j in rest):
            for j in range(i, len(lines)):
                drop[j] = True
            break
    return drop


def _remove_furniture_counted(text: str, title: str, settings: CleanSettings) -> tuple[str, int]:
    normal = normalise_text(text)
    lines = normal.split("\n")
    drop = _furniture_mask(lines, title, settings)
    if not any(drop):
        return normal, 0  # what normalise_text gives, it gives back unchanged
    removed = sum(1 for line, dropped in zip(lines, drop) if dropped and line)
    kept = "\n".join(line for line, dropped in zip(lines, drop) if not dropped)
    return normalise_text(kept), removed


def remove_furniture(text: str, title: str = "", settings: CleanSettings = CleanSettings()) -> str:
    """`text` (plain, as from html_to_text) without the furniture lines that `settings` describe."""
    return _remove_furniture_counted(text, title, settings)[0]
