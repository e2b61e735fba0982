"""Writing systems: which scripts a text's letters are in, and which scripts each language is written in.

`script_profile(text)` counts a text's letters per script (CJK characters weighted); the language detector uses it
to settle a text whose script only one language uses and to keep only the languages its scripts allow.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping

# The scripts of the languages not written in Latin (only the scripts that matter for telling languages apart).
NON_LATIN_SCRIPTS: Mapping[str, tuple[str, ...]] = {
    "ar": ("Arabic",),
    "fa": ("Arabic",),
    "ur": ("Arabic",),
    "be": ("Cyrillic",),
    "bg": ("Cyrillic",),
    "kk": ("Cyrillic",),
    "mk": ("Cyrillic",),
    "mn": ("Cyrillic",),
    "ru": ("Cyrillic",),
    "uk": ("Cyrillic",),
    "sr": ("Cyrillic", "Latin"),
    "el": ("Greek",),
    "he": ("Hebrew",),
    "hy": ("Armenian",),
    "ka": ("Georgian",),
    "th": ("Thai",),
    "hi": ("Devanagari",),
    "mr": ("Devanagari",),
    "bn": ("Bengali",),
    "pa": ("Gurmukhi",),
    "gu": ("Gujarati",),
    "ta": ("Tamil",),
    "te": ("Telugu",),
    "ko": ("Hangul",),
    "ja": ("Kana", "Han"),
    "zh": ("Han",),
}

# Unicode blocks by script: (first, last, script). Letters outside every block are "Other".
_SCRIPT_BLOCKS = sorted(
    [
        (0x0041, 0x024F, "Latin"),
        (0x0250, 0x02AF, "Latin"),
        (0x1E00, 0x1EFF, "Latin"),
        (0x2C60, 0x2C7F, "Latin"),
        (0xA720, 0xA7FF, "Latin"),
        (0xFF21, 0xFF5A, "Latin"),
        (0x0370, 0x03FF, "Greek"),
        (0x1F00, 0x1FFF, "Greek"),
        (0x0400, 0x052F, "Cyrillic"),
        (0x1C80, 0x1C8F, "Cyrillic"),
        (0x2DE0, 0x2DFF, "Cyrillic"),
        (0xA640, 0xA69F, "Cyrillic"),
        (0x0530, 0x058F, "Armenian"),
        (0xFB13, 0xFB17, "Armenian"),
        (0x0590, 0x05FF, "Hebrew"),
        (0xFB1D, 0xFB4F, "Hebrew"),
        (0x0600, 0x06FF, "Arabic"),
        (0x0750, 0x077F, "Arabic"),
        (0x08A0, 0x08FF, "Arabic"),
        (0xFB50, 0xFDFF, "Arabic"),
        (0xFE70, 0xFEFF, "Arabic"),
        (0x0900, 0x097F, "Devanagari"),
        (0xA8E0, 0xA8FF, "Devanagari"),
        (0x0980, 0x09FF, "Bengali"),
        (0x0A00, 0x0A7F, "Gurmukhi"),
        (0x0A80, 0x0AFF, "Gujarati"),
        (0x0B00, 0x0B7F, "Oriya"),
        (0x0B80, 0x0BFF, "Tamil"),
        (0x0C00, 0x0C7F, "Telugu"),
        (0x0C80, 0x0CFF, "Kannada"),
        (0x0D00, 0x0D7F, "Malayalam"),
        (0x0D80, 0x0DFF, "Sinhala"),
        (0x0E00, 0x0E7F, "Thai"),
        (0x0E80, 0x0EFF, "Lao"),
        (0x0F00, 0x0FFF, "Tibetan"),
        (0x1000, 0x109F, "Myanmar"),
        (0x10A0, 0x10FF, "Georgian"),
        (0x1C90, 0x1CBF, "Georgian"),
        (0x2D00, 0x2D2F, "Georgian"),
        (0x1100, 0x11FF, "Hangul"),
        (0x3130, 0x318F, "Hangul"),
        (0xA960, 0xA97F, "Hangul"),
        (0xAC00, 0xD7FF, "Hangul"),
        (0x1200, 0x139F, "Ethiopic"),
        (0x2D80, 0x2DDF, "Ethiopic"),
        (0x13A0, 0x13FF, "Cherokee"),
        (0xAB70, 0xABBF, "Cherokee"),
        (0x1780, 0x17FF, "Khmer"),
        (0x1800, 0x18AF, "Mongolian"),
        (0x3040, 0x309F, "Kana"),
        (0x30A0, 0x30FF, "Kana"),
        (0x31F0, 0x31FF, "Kana"),
        (0xFF66, 0xFF9F, "Kana"),
        (0x3005, 0x3007, "Han"),
        (0x3400, 0x4DBF, "Han"),
        (0x4E00, 0x9FFF, "Han"),
        (0xF900, 0xFAFF, "Han"),
        (0x20000, 0x3FFFF, "Han"),
    ]
)
_BLOCK_STARTS = [block[0] for block in _SCRIPT_BLOCKS]
_ASCII_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# A CJK character carries about as much as a short word, so it counts as several letters towards `min_chars`.
_CJK_WEIGHT = 3
_CJK = frozenset({"Han", "Kana", "Hangul"})

# Each non-ASCII character's (script, weight) once looked up (weight 0 for what is not a letter): a text's
# characters are counted first, then each distinct one is looked up, so a script's letters cost little each.
# Bounded so that a long-running worker's memory stays flat: when full, the memo starts over.
_SCRIPT_OF_CHAR: dict[str, tuple[str, float]] = {}
_MEMO_SIZE = 50_000


def _char_script(ch: str) -> tuple[str, float]:
    o = ord(ch)
    # Vowel signs of Indic scripts are marks, not letters, but they are half the writing.
    if not ch.isalpha() and (o < 0x370 or not unicodedata.category(ch).startswith("M")):
        return "", 0.0
    if o < 0x250:
        return "Latin", 1.0
    i = bisect.bisect_right(_BLOCK_STARTS, o) - 1
    script = _SCRIPT_BLOCKS[i][2] if i >= 0 and o <= _SCRIPT_BLOCKS[i][1] else "Other"
    return script, float(_CJK_WEIGHT) if script in _CJK else 1.0


def script_profile(text: str) -> tuple[dict[str, float], float]:
    """Letters per script in `text` (CJK characters weighted), and the weighted total."""
    counts: dict[str, float] = {}
    # ASCII letters are counted on the UTF-8 bytes (where an ASCII letter is only ever itself) by deleting them; only
    # the other characters are looked up (for most news, a few accented letters).
    data = text.encode("utf-8", "surrogatepass")
    ascii_letters = len(data) - len(data.translate(None, _ASCII_LETTERS))
    if ascii_letters:
        counts["Latin"] = float(ascii_letters)
    memo = _SCRIPT_OF_CHAR
    for ch, n in Counter(_NON_ASCII.findall(text) if not text.isascii() else ()).items():
        found = memo.get(ch)
        if found is None:
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            found = memo[ch] = _char_script(ch)
        script, weight = found
        if weight:
            counts[script] = counts.get(script, 0.0) + n * weight
    # Japanese mixes kana with Han characters: any real share of kana makes the Han part Japanese too.
    kana, han = counts.get("Kana", 0.0), counts.get("Han", 0.0)
    if kana and kana >= 0.1 * (kana + han):
        counts["Kana"] = kana + han
        counts.pop("Han", None)
    return counts, sum(counts.values())
