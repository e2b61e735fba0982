"""DeduplicateNearCopies: syndicated copies, edited copies and revisions of one story collapse into one cluster.

Runs after DeduplicateArticles (exact copies) and before windowing:

    articles | "NearDuplicates" >> DeduplicateNearCopies(NearDedupSettings(), prior_signatures=None)

Each article with words gets a MinHash signature of the word shingles of its normalised title and text (one
permutation hashing with optimal densification, vectorised in numpy: see `minhash_signatures`). Then, as Beam
steps:

1. LSH banding: each signature is cut into `bands` bands; an article is emitted once per band under a key made of
   the band's values, the band's index and the article's language (so languages never meet).
2. GroupByKey on the band key gives buckets; each bucket gives candidate pairs. A bucket larger than
   `max_bucket_size` (shared furniture, boilerplate, a story syndicated hundreds of times) is capped: its members,
   sorted by id, are paired only with their next `bucket_window` neighbours, so a bucket costs O(n), never O(n^2).
3. Candidate pairs are joined with both signatures and verified (`is_near_copy`), the later article (canonical
   order, see 4) as the possible copy of the earlier: same language, and either an estimated Jaccard similarity at
   or above `threshold` (higher for short texts and for two articles of one outlet) or, for a later text no longer
   than the earlier, an estimated containment (the share of the later's shingles that the earlier has) at or above
   `containment`: a wire story cut to its first paragraphs with a local paragraph added. Unless the two are alike
   as a whole, the later must keep the top of the earlier (`leads_agree`: a quarter of the earlier's first
   `lead_words` words' shingles among the later's first words), which two stories that share only a quotation or a
   boilerplate paragraph do not. And the facts must agree (`facts_agree`): where both texts give a figure after the
   same word, mostly the same figure (two reports from one template share text, not figures); a share of the names
   (capitalised words inside sentences), in proportion to the text shared. Two stories on the same event share
   names and figures, not text.
4. Verified pairs form star clusters (`star_clusters`, one combine): in canonical order (a prior, already written
   article first, else the earliest published, then the longer text, then the smaller id) each article joins the
   canonical article it copies best (highest score), or a copy it mostly equals (`follow_copies`), so clusters do
   not chain through a paragraph that two stories share. The clusters depend only on the set of pairs, never on
   the bundle order.

`mode="drop"` writes only the canonical article, with `cluster_id` and `cluster_size`; every dropped copy counts
once in `dedup/duplicates` (the run summary reconciles entries read = written + duplicates + dead letters).
`mode="mark"` writes every article; the copies carry `duplicate_of`. A copy from the same outlet as its canonical
(the URL or GUID changed, the text did not) counts as a revision.

Across runs, `prior_signatures` (a PCollection of `SignatureRecord`, e.g. read back from the run state) take part in
banding and verification but are never written: a copy that arrives tomorrow joins today's cluster and, in drop mode,
is dropped. The stage returns the signatures of this run's articles (`NearDedupResult.signatures`) for the run state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple
from urllib.parse import urlsplit

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from transforms.article import UTC, Article, stable_id
from transforms.dedup import CachedSideInput

MODES = ("drop", "mark")


@dataclasses.dataclass(frozen=True)
class NearDedupSettings:
    """Tunables of near-duplicate detection. `num_perm` must be a power of two that `bands` divides."""

    enabled: bool = True
    # drop: only the canonical article of a cluster is written; mark: all are, the copies with `duplicate_of`.
    mode: str = "drop"
    # Words per shingle. 3 keeps copies with scattered word edits similar; larger sizes forgive fewer edits.
    shingle_size: int = 3
    num_perm: int = 128
    # 64 bands of 2 rows: a pair at Jaccard 0.25 becomes a candidate with probability 0.984, at 0.05 with 0.15.
    bands: int = 64
    # Estimated Jaccard similarity of the shingle sets at or above which two articles are copies.
    threshold: float = 0.25
    # Or: the share of the later article's shingles that the earlier one has (estimated from the Jaccard estimate and
    # the two word counts) at or above which the later is a copy: a wire story cut to a third still qualifies.
    # 1 turns containment off.
    containment: float = 0.3
    # Articles with fewer words than this (title only, a one-line brief) need `short_threshold` instead.
    min_words: int = 30
    short_threshold: float = 0.7
    # Two articles of one outlet share its furniture (newsletter prompts, copyright lines), which inflates their
    # similarity; a true same-outlet copy is a revision, nearly identical. So they need this much.
    same_outlet_threshold: float = 0.6
    # Facts are the numbers and the capitalised words inside sentences (names) of a text. When both texts state at
    # least `fact_min` names, this share of the shorter list of names, times the estimated containment, must appear
    # in the other. When at least `number_min` words are followed by a number in both texts, `number_overlap` of the
    # figures after those words (of the shorter list) must be the same: template stories (weather, market closes,
    # results) differ in their figures only. 0 turns a check off.
    fact_overlap: float = 0.2
    number_overlap: float = 0.5
    fact_min: int = 3
    number_min: int = 1
    # The lead is the first `lead_words` words of the text (the title aside). Unless two texts are alike as a whole
    # (Jaccard at least 0.5), at least `lead_overlap` of the earlier's lead shingles must be in the later's first
    # LEAD_REACH * lead_words words (room for a local paragraph put on top): a copy, however cut, keeps the top of
    # its story; a story that only shares a quotation or a boilerplate paragraph with another does not. 0 turns the
    # check off.
    lead_words: int = 40
    lead_overlap: float = 0.25
    # Clusters are stars around a canonical article: a copy joins the cluster of another copy only when it holds
    # this much of it, never through a paragraph two stories share. Lower chains more: a story syndicated so widely
    # that its buckets are capped pairs most copies with other copies only (0.7 lost 3 points of recall on such a
    # synthetic corpus, 0.5 none; on the real-text set 0 cost 0.7 points of precision, 0.5 0.07).
    follow_copies: float = 0.5
    # Buckets with more members are capped: each member is paired only with its next `bucket_window` neighbours.
    # Buckets grow with the number of articles that share furniture; at 100,000 synthetic articles a cap of 16
    # instead of 64 cuts the candidate pairs by 37% and loses no copy.
    max_bucket_size: int = 16
    bucket_window: int = 4
    # Only the first `max_chars` characters of title + text are shingled.
    max_chars: int = 50_000
    seed: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.num_perm < 2 or self.num_perm & (self.num_perm - 1) or self.num_perm > 1024:
            raise ValueError("num_perm must be a power of two between 2 and 1024")
        if self.bands < 1 or self.num_perm % self.bands:
            raise ValueError("bands must divide num_perm")
        if self.shingle_size < 1:
            raise ValueError("shingle_size must be at least 1")
        for name in (
            "threshold",
            "containment",
            "short_threshold",
            "same_outlet_threshold",
            "fact_overlap",
            "number_overlap",
            "follow_copies",
            "lead_overlap",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.max_bucket_size < 2 or self.bucket_window < 1:
            raise ValueError("max_bucket_size must be at least 2 and bucket_window at least 1")

    @property
    def rows(self) -> int:
        """Signature values per band."""
        return self.num_perm // self.bands

    @property
    def scheme(self) -> str:
        """What makes two signatures comparable: records of another scheme (say, from a run state written with
        other settings) are never compared."""
        return f"minhash-oph2-p{self.num_perm}-w{self.shingle_size}-c{self.max_chars}-l{self.lead_words}-s{self.seed}"


# ---------------------------------------------------------------------------------------------------------------
# Tokens and shingles.
#
# Text is normalised like the exact content hash (NFKC, case folded), then split into tokens on every character that
# is not a letter, digit or mark. Characters of scripts written without spaces (Han, kana, Thai) are one token each,
# so those texts get character shingles instead of one giant "word". All of it runs on arrays of code points: a
# Python loop over words costs more than the whole signature.

_SEPARATOR, _WORD, _SOLO = 0, 1, 2
_SOLO_RANGES = ((0x0E00, 0x0EFF), (0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))


def _char_classes() -> np.ndarray:
    classes = np.zeros(0x10000, dtype=np.uint8)
    for cp in range(0x10000):
        if unicodedata.category(chr(cp))[0] in "LNM":
            classes[cp] = _WORD
    for low, high in _SOLO_RANGES:
        block = classes[low : high + 1]
        block[block == _WORD] = _SOLO
    return classes


_CLASSES = _char_classes()
_UPPER = np.array([chr(cp).isupper() or chr(cp).istitle() for cp in range(0x10000)], dtype=bool)
# For text whose characters all fit in one byte (ASCII, Latin-1): bytes.translate is the fastest lookup there is.
_WORD_BYTES = bytes(_CLASSES[:256] != _SEPARATOR)

_M64 = (1 << 64) - 1
_BASE = 0x100000001B3  # odd, so it has an inverse modulo 2^64
_BASE_INVERSE = pow(_BASE, -1, 1 << 64)
# One tuple, swapped whole, so that a thread never sees new powers with old inverse powers.
_tables = (np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64))
# A batch longer than this (in characters) is signed in parts: the power tables stay small.
_MAX_BATCH_CHARS = 1 << 21
# A later text's lead is its first LEAD_REACH * lead_words words: room for a local paragraph put on top of a wire
# story. A reach of 3 missed regional copies whose added paragraph ran past 120 words; 5 let a shared quotation in.
LEAD_REACH = 4


def _power_tables(length: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE^i and BASE^-i modulo 2^64 for i < length, grown by doubling and kept for the process."""
    global _tables
    tables = _tables
    if len(tables[0]) < length:
        size = max(length, 2 * len(tables[0]))
        tables = _tables = (_geometric(_BASE, size), _geometric(_BASE_INVERSE, size))
    return tables


def _geometric(ratio: int, size: int) -> np.ndarray:
    out = np.empty(size, dtype=np.uint64)
    out[0] = 1
    block = 1
    factor = np.uint64(ratio)
    with np.errstate(over="ignore"):
        while block < size:
            # out[block:2*block] = out[:block] * ratio^block: O(log size) numpy steps, wrapping modulo 2^64.
            step = min(block, size - block)
            out[block : block + step] = out[:step] * factor
            factor = np.uint64((int(factor) ** 2) & _M64)
            block += step
    return out


def _mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser over uint64 arrays: every input bit flips about half the output bits."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _mix_int(x: int) -> int:
    return int(_mix(np.array([x & _M64], dtype=np.uint64))[0])


def _nfkc(title: str, text: str, max_chars: int) -> str:
    joined = f"{title}\n{text}"[:max_chars]
    return joined if joined.isascii() else unicodedata.normalize("NFKC", joined)


def normalise_text(title: str, text: str, max_chars: int = NearDedupSettings.max_chars) -> str:
    """Title and text as one string, NFKC-normalised and case-folded, cut to `max_chars` characters."""
    return _nfkc(title, text, max_chars).casefold()


def words(title: str, text: str, max_chars: int = NearDedupSettings.max_chars) -> list[str]:
    """The tokens that shingles are made of: runs of letters, digits and marks (one character each for scripts
    written without spaces)."""
    norm = normalise_text(title, text, max_chars)
    _, _, starts, ends = _tokens(f"\n{norm}\n")
    return [norm[s - 1 : e - 1] for s, e in zip(starts.tolist(), ends.tolist())]


def shingles(title: str, text: str, size: int = NearDedupSettings.shingle_size) -> set[tuple[str, ...]]:
    """The set of `size`-word shingles of title + text (one shorter shingle when there are fewer words)."""
    tokens = words(title, text)
    if not tokens:
        return set()
    if len(tokens) < size:
        return {tuple(tokens)}
    return {tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def _tokens(padded: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(code points, is_word, starts, ends) of the tokens of a text that starts and ends with a separator.

    Code points come in the narrowest array that holds them: less memory to stream through in every later pass.
    """
    try:
        data = padded.encode("latin-1")  # every character below 256: one byte each, equal to its code point
    except UnicodeEncodeError:
        data = None
    if data is not None:
        cps = np.frombuffer(data, dtype=np.uint8)
        is_word = np.frombuffer(data.translate(_WORD_BYTES), dtype=bool)
        solo = None
    else:
        wide = padded.encode("utf-16-le", "surrogatepass")
        if len(wide) == 2 * len(padded):  # nothing beyond the Basic Multilingual Plane
            cps = np.frombuffer(wide, dtype=np.uint16)
            classes = _CLASSES[cps]
        else:
            cps = np.frombuffer(padded.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
            # Beyond the BMP: CJK extensions are solo characters, the rest (emoji, ...) separators.
            beyond = np.where((cps >= 0x20000) & (cps < 0x40000), _SOLO, _SEPARATOR).astype(np.uint8)
            classes = np.where(cps < 0x10000, _CLASSES[np.minimum(cps, 0xFFFF)], beyond)
        is_word = classes != _SEPARATOR
        solo = classes == _SOLO
        if not solo.any():
            solo = None
    if solo is None:
        # Tokens are the runs of word characters: their edges are where is_word flips.
        edges = np.flatnonzero(is_word[1:] ^ is_word[:-1]) + 1
        return cps, is_word, edges[::2], edges[1::2]
    # A token starts at a word character after a separator or next to a solo character, and ends likewise.
    before = np.ones(len(cps), dtype=bool)
    after = np.ones(len(cps), dtype=bool)
    before[1:] = ~is_word[:-1] | solo[:-1]
    after[:-1] = ~is_word[1:] | solo[1:]
    starts = np.flatnonzero(is_word & (before | solo))
    ends = np.flatnonzero(is_word & (after | solo)) + 1
    return cps, is_word, starts, ends


class ShingleBatch(NamedTuple):
    """Shingle hashes of a batch of documents: `hashes[i]` belongs to document `doc[i]`."""

    hashes: np.ndarray  # uint64
    doc: np.ndarray  # int64
    word_counts: np.ndarray  # int64, per document
    # The distinct 32-bit hashes of each document's facts: document i's are facts[fact_bounds[i]:fact_bounds[i + 1]].
    facts: np.ndarray  # uint32
    fact_bounds: np.ndarray  # int64, n_docs + 1
    # The 16-bit hashes of the shingles of each document's lead (its text's first LEAD_REACH * lead_words words):
    # document i's are lead[lead_bounds[i]:lead_bounds[i + 1]].
    lead: np.ndarray  # uint16
    lead_bounds: np.ndarray  # int64, n_docs + 1

    def facts_of(self, i: int) -> np.ndarray:
        """The sorted distinct fact hashes of document i."""
        return self.facts[self.fact_bounds[i] : self.fact_bounds[i + 1]]

    def lead_of(self, i: int) -> np.ndarray:
        """The lead shingle hashes of document i, in text order."""
        return self.lead[self.lead_bounds[i] : self.lead_bounds[i + 1]]


def shingle_hashes(
    docs: Sequence[tuple[str, str]],
    size: int,
    max_chars: int = NearDedupSettings.max_chars,
    lead_words: int = NearDedupSettings.lead_words,
) -> ShingleBatch:
    """64-bit hashes of the word shingles of each (title, text), for a whole batch in a few numpy passes.

    A word's hash is a polynomial over its code points (prefix sums, so every word of the batch costs the same few
    vector operations), mixed; a shingle's hash mixes the hashes of its words by position. The hashes depend only on
    the text, never on the process (unlike Python's `hash`), so signatures from different workers and runs agree.
    """
    originals = [_nfkc(title, text, max_chars) for title, text in docs]
    if len(originals) > 1 and sum(map(len, originals)) > _MAX_BATCH_CHARS:
        half = len(docs) // 2
        return _concatenate(
            shingle_hashes(docs[:half], size, max_chars, lead_words),
            shingle_hashes(docs[half:], size, max_chars, lead_words),
        )
    if not originals:
        empty, bounds = np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
        return ShingleBatch(
            np.zeros(0, dtype=np.uint64),
            empty,
            empty,
            np.zeros(0, dtype=np.uint32),
            bounds,
            np.zeros(0, dtype=np.uint16),
            bounds,
        )
    texts = [original.casefold() for original in originals]
    cps, _, starts, ends = _tokens("\n" + "\n".join(texts) + "\n")
    # Capitals are read from the text before case folding, where folding kept every character in place.
    cased = "\n" + "\n".join(o if len(o) == len(t) else t for o, t in zip(originals, texts)) + "\n"
    capital = _is_upper(cased, starts)
    doc_starts = np.cumsum([1] + [len(t) + 1 for t in texts[:-1]], dtype=np.int64)
    first_token = np.searchsorted(starts, doc_starts)
    word_counts = np.diff(first_token, append=len(starts)).astype(np.int64)
    token_doc = np.repeat(np.arange(len(texts), dtype=np.int64), word_counts)

    n = len(cps)
    powers, inverse = _power_tables(n + 1)
    with np.errstate(over="ignore"):
        prefix = np.empty(n + 1, dtype=np.uint64)
        prefix[0] = 0
        np.cumsum(np.multiply(cps, powers[:n], dtype=np.uint64), out=prefix[1:])
        word_hash = _mix((prefix[ends] - prefix[starts]) * inverse[starts])

    facts, bounds = _fact_hashes(cps, starts, ends, capital, word_hash, token_doc, len(texts))
    hashes, doc = _shingles_of(word_hash, token_doc, word_counts, size)
    # The text starts after the newline that follows the title.
    text_starts = doc_starts + np.array([t.find("\n") + 1 for t in texts], dtype=np.int64)
    text_first = np.searchsorted(starts, text_starts)
    lead, lead_bounds = _lead_hashes(word_hash, text_first, first_token + word_counts, size, LEAD_REACH * lead_words)
    return ShingleBatch(hashes, doc, word_counts, facts, bounds, lead, lead_bounds)


def _lead_hashes(word_hash, first, end, size: int, words: int) -> tuple[np.ndarray, np.ndarray]:
    """The top 16 bits of the shingle hashes of the first `words` words from token `first` (up to `end`) of each
    document, concatenated, with each document's bounds. The same hashes as `_shingles_of` gives those shingles."""
    counts = np.clip(np.minimum(end - first, words) - size + 1, 0, None)
    bounds = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    at = np.repeat(first - bounds[:-1], counts) + np.arange(bounds[-1], dtype=np.int64)
    with np.errstate(over="ignore"):
        acc = np.zeros(len(at), dtype=np.uint64)
        for t in range(size):
            acc = acc + word_hash[at + t] * _POSITION[t]
        return (_mix(acc) >> np.uint64(48)).astype(np.uint16), bounds


def _concatenate(first: ShingleBatch, second: ShingleBatch) -> ShingleBatch:
    n = len(first.word_counts)
    return ShingleBatch(
        np.concatenate([first.hashes, second.hashes]),
        np.concatenate([first.doc, second.doc + n]),
        np.concatenate([first.word_counts, second.word_counts]),
        np.concatenate([first.facts, second.facts]),
        np.concatenate([first.fact_bounds, second.fact_bounds[1:] + first.fact_bounds[-1]]),
        np.concatenate([first.lead, second.lead]),
        np.concatenate([first.lead_bounds, second.lead_bounds[1:] + first.lead_bounds[-1]]),
    )


def _is_upper(text: str, positions: np.ndarray) -> np.ndarray:
    """Whether the characters of `text` at `positions` are upper case (or title case) letters."""
    try:
        cps = np.frombuffer(text.encode("latin-1"), dtype=np.uint8)
    except UnicodeEncodeError:
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    chars = cps[positions]
    return _UPPER[chars if cps.dtype == np.uint8 else np.minimum(chars, 0xFFFF)]


_DIGIT = np.array([unicodedata.decimal(chr(cp), None) is not None for cp in range(0x10000)], dtype=bool)
_SENTENCE_END = np.zeros(0x10000, dtype=bool)
_SENTENCE_END[[ord(c) for c in ".!?:;\n\"'\u201c\u2018\u00ab"]] = True


def _fact_hashes(cps, starts, ends, capital, word_hash, token_doc, n_docs) -> tuple[np.ndarray, np.ndarray]:
    """The distinct hashes (32 bits) of each document's facts, concatenated, with each document's bounds.

    Facts are the tokens that start with a digit and the capitalised tokens that do not open a sentence (names,
    places, organisations: in German every noun, which does no harm). A fact's hash is odd for a number, even for a
    name.
    """
    first = cps[starts]
    # A token that starts with a digit of any script is a figure: "30", "۳۰", "2km" (a changed figure changes it).
    number = _DIGIT[first if cps.dtype == np.uint8 else np.minimum(first, 0xFFFF)]
    # A token opens a sentence when the last non-space character before it ends one (or it opens a line).
    before = cps[starts - 1].astype(np.int64)
    two_before = cps[np.maximum(starts - 2, 0)].astype(np.int64)
    before[before > 0xFFFF] = 0
    two_before[two_before > 0xFFFF] = 0
    opens = _SENTENCE_END[before] | ((before == 32) & _SENTENCE_END[two_before])
    is_fact = (capital & ~opens) | number
    picked = np.flatnonzero(is_fact)
    # The lowest bit of a fact's hash tells a number (1) from a name (0). A number keeps the word before it in its
    # top 16 bits: "rose 3" and "rose 5" are one context with two figures, which is how templates differ.
    value = (word_hash[picked] >> np.uint64(32)) & np.uint64(0xFFFFFFFE)
    numbers = np.flatnonzero(number[picked])
    if len(numbers):
        at = picked[numbers]
        before = np.where(at > 0, at - 1, 0)
        context = np.where(
            (at > 0) & (token_doc[before] == token_doc[at]), word_hash[before] >> np.uint64(48), np.uint64(0)
        )
        value[numbers] = (context << np.uint64(16)) | ((word_hash[at] >> np.uint64(48)) & np.uint64(0xFFFE)) | 1
    keys = np.sort((token_doc[picked].astype(np.uint64) << np.uint64(32)) | value)
    if len(keys):  # distinct (np.unique costs four times the sort)
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    bounds = np.searchsorted(keys >> np.uint64(32), np.arange(n_docs + 1, dtype=np.uint64))
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32), bounds.astype(np.int64)


# Odd multipliers that make a shingle's hash depend on the order of its words.
_POSITION = [np.uint64(_mix_int(0x9E3779B97F4A7C15 + i) | 1) for i in range(64)]


def _shingles_of(word_hash: np.ndarray, token_doc: np.ndarray, word_counts: np.ndarray, size: int):
    n = len(word_hash)
    with np.errstate(over="ignore"):
        if n >= size:
            span = n - size + 1
            acc = word_hash[:span] * _POSITION[0]
            for t in range(1, size):
                acc = acc + word_hash[t : t + span] * _POSITION[t]
            keep = token_doc[:span] == token_doc[size - 1 : size - 1 + span]
            hashes, doc = _mix(acc[keep]), token_doc[:span][keep]
        else:
            hashes, doc = np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
        short = np.flatnonzero((word_counts > 0) & (word_counts < size))
        if len(short):
            # Fewer words than a shingle: the whole text is one shorter shingle.
            first = np.searchsorted(token_doc, short)
            extra = np.empty(len(short), dtype=np.uint64)
            for j, (start, count) in enumerate(zip(first.tolist(), word_counts[short].tolist())):
                acc = np.uint64(0)
                for t in range(count):
                    acc = acc + word_hash[start + t] * _POSITION[t]
                extra[j] = acc
            hashes = np.concatenate([hashes, _mix(extra)])
            doc = np.concatenate([doc, short])
    return hashes, doc


# ---------------------------------------------------------------------------------------------------------------
# MinHash signatures: one permutation hashing (Li, Owen, Zhang 2012) with optimal densification (Shrivastava 2017).
#
# Each shingle hash is mixed once more with the seed; its top log2(num_perm) bits pick a bin, the next 32 bits are
# its value, and a bin keeps the smallest value. That is one pass over the shingles instead of num_perm passes, and
# estimates Jaccard similarity as well as num_perm independent permutations do. A bin that no shingle fell into
# borrows the value of the first non-empty bin in its own fixed pseudo-random sequence of bins, the same sequence
# for every document, so two similar documents fill their empty bins alike.

_EMPTY = np.uint32(0xFFFFFFFF)
_densify_tables: dict[tuple[int, int], np.ndarray] = {}


def _densify_table(num_perm: int, seed: int) -> np.ndarray:
    key = (num_perm, seed)
    if key not in _densify_tables:
        rng = np.random.default_rng([seed, num_perm, 0xD3])
        _densify_tables[key] = rng.integers(0, num_perm, size=(num_perm, 1024), dtype=np.int64)
    return _densify_tables[key]


def _seed_mask(seed: int) -> np.uint64:
    return np.uint64(_mix_int(0x5851F42D4C957F2D ^ seed))


def minhash_from_shingles(batch: ShingleBatch, num_perm: int, seed: int) -> np.ndarray:
    """Signatures (one row of `num_perm` uint32 per document) from a batch of shingle hashes. A document without
    shingles gets a row of 0xFFFFFFFF (`has_signature` is False for it)."""
    n_docs = len(batch.word_counts)
    bits = num_perm.bit_length() - 1
    with np.errstate(over="ignore"):
        x = _mix(batch.hashes ^ _seed_mask(seed))
    bins = (x >> np.uint64(64 - bits)).astype(np.int64) if bits else np.zeros(len(x), dtype=np.int64)
    values = ((x >> np.uint64(32 - bits)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    cell = batch.doc * num_perm + bins
    sig = np.full(n_docs * num_perm, _EMPTY, dtype=np.uint32)
    np.minimum.at(sig, cell, values)
    filled = np.zeros(n_docs * num_perm, dtype=bool)
    filled[cell] = True
    sig = sig.reshape(n_docs, num_perm)
    filled = filled.reshape(n_docs, num_perm)
    _densify(sig, filled, _densify_table(num_perm, seed))
    return sig


def _densify(sig: np.ndarray, filled: np.ndarray, table: np.ndarray) -> None:
    any_filled = filled.any(axis=1)
    rows, cols = np.nonzero(~filled & any_filled[:, None])
    for width in (16, table.shape[1]):
        if not len(rows):
            return
        candidates = table[cols, :width]
        ok = filled[rows[:, None], candidates]
        first = ok.argmax(axis=1)
        found = ok[np.arange(len(rows)), first]
        source = candidates[np.arange(len(rows)), first]
        sig[rows[found], cols[found]] = sig[rows[found], source[found]]
        rows, cols = rows[~found], cols[~found]
    # Left after 1024 draws only in a document with one or two shingles: take the next filled bin to the right.
    for row, col in zip(rows.tolist(), cols.tolist()):
        order = np.roll(np.arange(sig.shape[1]), -col)
        sig[row, col] = sig[row, order[filled[row, order]][0]]


def minhash_signatures(
    docs: Sequence[tuple[str, str]], settings: NearDedupSettings = NearDedupSettings()
) -> np.ndarray:
    """The (n, num_perm) uint32 signatures of a batch of (title, text)."""
    batch = shingle_hashes(docs, settings.shingle_size, settings.max_chars)
    return minhash_from_shingles(batch, settings.num_perm, settings.seed)


def minhash_signature(title: str, text: str, settings: NearDedupSettings = NearDedupSettings()) -> np.ndarray:
    """The MinHash signature (num_perm uint32) of one title + text."""
    return minhash_signatures([(title, text)], settings)[0]


def has_signature(signature: np.ndarray) -> bool:
    """False for the signature of a text without words."""
    return not bool(np.all(signature == _EMPTY))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two signatures: the share of equal values."""
    return float(np.count_nonzero(a == b)) / len(a)


# ---------------------------------------------------------------------------------------------------------------
# Banding.


def language_salt(language: str) -> int:
    """A stable 64-bit number for a language code, mixed into every band key."""
    return int.from_bytes(hashlib.blake2b(language.encode("utf-8"), digest_size=8).digest(), "little")


_BAND_SALT = np.array([_mix_int(0xB5AD4ECEDA1CE2A9 + i) for i in range(1024)], dtype=np.uint64)


def band_key_matrix(signatures: np.ndarray, salts: np.ndarray, bands: int, only: int | None = None) -> np.ndarray:
    """(n, bands) uint64 band keys for an (n, num_perm) signature array and one language salt per row; with
    `only`, the (n,) keys of that band alone."""
    n, num_perm = signatures.shape
    rows = num_perm // bands
    chosen = range(bands) if only is None else [only]
    values = signatures.reshape(n, bands, rows)[:, chosen, :].astype(np.uint64)
    with np.errstate(over="ignore"):
        acc = np.broadcast_to(_BAND_SALT[list(chosen)], (n, len(chosen))) ^ salts.astype(np.uint64)[:, None]
        for r in range(rows):
            acc = _mix(acc ^ values[:, :, r])
    return acc if only is None else acc[:, 0]


def band_keys(signature: np.ndarray, language: str, bands: int) -> list[int]:
    """The band keys of one signature: equal keys mean equal values in that band, in the same language. Signed
    64-bit, so that Beam encodes them as plain varints."""
    salt = np.array([language_salt(language)], dtype=np.uint64)
    return band_key_matrix(signature[None, :], salt, bands)[0].view(np.int64).tolist()


def bucket_pairs(
    members: Iterable[tuple[str, bool]], max_bucket_size: int, window: int
) -> tuple[list[tuple[str, str]], bool]:
    """Candidate pairs (smaller id first) of one bucket's (article_id, prior) members, and whether it was capped.

    Two prior members are never a pair: their clusters were settled in their own run. Up to `max_bucket_size`
    members every other pair is a candidate. A larger bucket is shared furniture or a very widely syndicated story:
    its members, sorted by id, are paired with their next `window` neighbours only. True copies still chain into one
    cluster (through these pairs and their other bands), boilerplate does not, and the bucket costs O(n) pairs.
    """
    prior_of: dict[str, bool] = {}
    for article_id, prior in members:
        prior_of[article_id] = prior_of.get(article_id, True) and prior  # the same id current and prior: current
    ids = sorted(prior_of)
    capped = len(ids) > max_bucket_size
    reach = window if capped else len(ids)
    pairs = [
        (a, ids[j])
        for i, a in enumerate(ids)
        for j in range(i + 1, min(i + 1 + reach, len(ids)))
        if not (prior_of[a] and prior_of[ids[j]])
    ]
    return pairs, capped


class BandBatch(NamedTuple):
    """One band's keys of a batch of records: `keys[i]` is the band key of the record `ids[i]`."""

    keys: np.ndarray  # int64
    ids: list[str]
    prior: np.ndarray  # bool


def band_batches(records: Sequence[SignatureRecord], bands: int) -> list[BandBatch]:
    """The BandBatch of each band (in band order) for `records`."""
    signatures = np.stack([r.values() for r in records])
    salts = np.array([language_salt(r.language) for r in records], dtype=np.uint64)
    keys = band_key_matrix(signatures, salts, bands).view(np.int64)
    ids = [r.article_id for r in records]
    prior = np.array([r.prior for r in records], dtype=bool)
    return [BandBatch(np.ascontiguousarray(keys[:, band]), ids, prior) for band in range(bands)]


def shared_buckets(batches: Iterable[BandBatch]) -> Iterator[list[tuple[str, bool]]]:
    """The (article_id, prior) members of every bucket of one band that holds more than one record."""
    batches = list(batches)
    if not batches:
        return
    keys = np.concatenate([b.keys for b in batches])
    prior = np.concatenate([b.prior for b in batches])
    ids = [article_id for b in batches for article_id in b.ids]
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    ends = np.r_[starts[1:], len(sorted_keys)]
    for start, end in zip(starts.tolist(), ends.tolist()):
        if end - start > 1:
            yield [(ids[i], bool(prior[i])) for i in order[start:end].tolist()]


# ---------------------------------------------------------------------------------------------------------------
# Signature records: what banding and verification need of an article, and what the run state keeps.


@dataclasses.dataclass(frozen=True)
class SignatureRecord:
    """An article's signature and what verification and the canonical choice need of it.

    `prior` records come from earlier runs: they are matched but never written. `canonical_id` is the article a
    record's cluster kept (its own id when it was kept itself); a copy matched to a prior record points there.
    """

    article_id: str
    language: str
    signature: bytes  # num_perm little-endian uint32
    published_at: dt.datetime | None = None
    text_length: int = 0
    word_count: int = 0
    facts: bytes = b""  # sorted distinct uint32 hashes of the names (even) and numbers in context (odd) of the text
    outlet: str = ""
    prior: bool = False
    canonical_id: str = ""
    scheme: str = NearDedupSettings().scheme
    lead: bytes = b""  # little-endian uint16 hashes of the shingles of the text's first words, in order

    def values(self) -> np.ndarray:
        """The signature as a uint32 array."""
        return np.frombuffer(self.signature, dtype="<u4")


SIGNATURE_SCHEMA = pa.schema(
    [
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("language", pa.string()),
        pa.field("signature", pa.binary(), nullable=False),
        pa.field("published_at", pa.timestamp("us", tz="UTC")),
        pa.field("text_length", pa.int64()),
        pa.field("word_count", pa.int64()),
        pa.field("facts", pa.binary()),
        pa.field("outlet", pa.string()),
        pa.field("canonical_id", pa.string()),
        pa.field("scheme", pa.string()),
        pa.field("lead", pa.binary()),
    ]
)


def signature_row(record: SignatureRecord) -> dict:
    """The run-state row of a signature record (columns of SIGNATURE_SCHEMA)."""
    return {name: getattr(record, name) for name in SIGNATURE_SCHEMA.names}


def signature_from_row(row: dict) -> SignatureRecord:
    """A prior signature record from a run-state row (as `signature_row` wrote it)."""
    fields = {name: row.get(name) for name in SIGNATURE_SCHEMA.names}
    published = fields["published_at"]
    if published is not None and published.tzinfo is None:
        published = published.replace(tzinfo=UTC)
    return SignatureRecord(
        article_id=fields["article_id"],
        language=fields["language"] or "und",
        signature=bytes(fields["signature"]),
        published_at=published,
        text_length=int(fields["text_length"] or 0),
        word_count=int(fields["word_count"] or 0),
        facts=bytes(fields["facts"] or b""),
        outlet=fields["outlet"] or "",
        prior=True,
        canonical_id=fields["canonical_id"] or fields["article_id"],
        scheme=fields["scheme"] or "",
        lead=bytes(fields["lead"] or b""),  # absent from states written before it existed
    )


# scheme://host[:port] followed by the path, query, fragment or the end, with a plain ASCII host: what nearly every
# article URL is, read without urlsplit (which cost a twentieth of the signing). Anything else goes to urlsplit.
_PLAIN_HOST = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([-A-Za-z0-9._~]*)(?::[0-9]*)?(?:[/?#]|\Z)")


def _host(url: str) -> str:
    url = url.strip()
    plain = _PLAIN_HOST.match(url)
    if plain:
        return plain.group(1).lower()
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def outlet_of(article: Article) -> str:
    """The host that published an article (its URL's, else its feed's, without `www.`) and the feed it came through.

    Revisions share both. The host alone is not enough: a wire story and its copy in another outlet's feed often
    link to the same host (the wire's, with tracking parameters), and feeds served from one host (an aggregator, a
    loopback test server) give every link that host; counted as one outlet, every such copy needed the stricter
    `same_outlet_threshold` and lost containment, which took near-copy recall of the whole pipeline from 0.98 to
    0.27 (benchmarks/neardup_pipeline.py --one-host).
    """
    for url in (article.url, article.feed_url):
        host = _host(url).rstrip(".")
        if host:
            host = host[4:] if host.startswith("www.") else host
            return f"{host} {article.feed_url.strip()}".rstrip()
    return ""


def signature_records(
    articles: Sequence[Article], settings: NearDedupSettings = NearDedupSettings()
) -> list[SignatureRecord | None]:
    """One record per article (None for an article without words), signed as one vectorised batch."""
    batch = shingle_hashes(
        [(a.title, a.text) for a in articles], settings.shingle_size, settings.max_chars, settings.lead_words
    )
    # Converted once per batch, then cut per record: a conversion per record cost a sixth of the signing.
    sigs = minhash_from_shingles(batch, settings.num_perm, settings.seed).astype("<u4", copy=False)
    facts, fact_bounds = batch.facts.astype("<u4", copy=False), batch.fact_bounds.tolist()
    lead, lead_bounds = batch.lead.astype("<u2", copy=False), batch.lead_bounds.tolist()
    out: list[SignatureRecord | None] = []
    for i, (article, count) in enumerate(zip(articles, batch.word_counts.tolist())):
        if count == 0:
            out.append(None)
            continue
        out.append(
            SignatureRecord(
                article_id=article.article_id,
                language=article.language or "und",
                signature=sigs[i].tobytes(),
                published_at=article.published_at,
                text_length=len(article.title) + len(article.text),
                word_count=count,
                facts=facts[fact_bounds[i] : fact_bounds[i + 1]].tobytes(),
                outlet=outlet_of(article),
                scheme=settings.scheme,
                lead=lead[lead_bounds[i] : lead_bounds[i + 1]].tobytes(),
            )
        )
    return out


# ---------------------------------------------------------------------------------------------------------------
# Verification.


def _share_agrees(na: set[int], nb: set[int], overlap: float, minimum: int) -> bool:
    if overlap <= 0 or len(na) < minimum or len(nb) < minimum:
        return True
    return len(na & nb) >= overlap * min(len(na), len(nb))


def facts_agree(
    a: bytes, b: bytes, overlap: float, minimum: int, number_overlap: float = 0.0, number_minimum: int = 1
) -> bool:
    """False when the facts of two texts disagree: both state at least `minimum` names and fewer than `overlap` of
    the shorter list of names appear in the other, or at least `number_minimum` of the words that precede a number
    in one text precede one in the other too, and fewer than `number_overlap` of the figures after those words (of
    the shorter list) are the same in the other (a template story: "rose 3" against "rose 5"). Figures in words
    only one text has say nothing either way."""
    # Python sets: these lists are short, and numpy's set functions cost more than they save on them.
    fa, fb = np.frombuffer(a, dtype="<u4").tolist(), np.frombuffer(b, dtype="<u4").tolist()
    if not _share_agrees({x for x in fa if not x & 1}, {x for x in fb if not x & 1}, overlap, minimum):
        return False
    if number_overlap <= 0:
        return True
    figures_a, figures_b = {x for x in fa if x & 1}, {x for x in fb if x & 1}
    contexts = {x >> 16 for x in figures_a} & {x >> 16 for x in figures_b}
    if len(contexts) < number_minimum:
        return True
    # Counted per figure, not per word: a template that says "aged 35 ... aged 40 ... aged 23" against "aged 19 ...
    # aged 81 ... aged 23" agrees once by chance in three, not in the one word they share.
    in_a = {x for x in figures_a if x >> 16 in contexts}
    in_b = {x for x in figures_b if x >> 16 in contexts}
    return len(in_a & in_b) >= number_overlap * min(len(in_a), len(in_b))


# Two texts at least this alike (Jaccard) are copies whatever their leads.
_WHOLE = 0.5


def leads_agree(earlier: bytes, later: bytes, settings: NearDedupSettings = NearDedupSettings()) -> bool:
    """Whether at least `lead_overlap` of the earlier text's lead shingles (its first `lead_words` words) are among
    the later's first LEAD_REACH * lead_words words (room for a paragraph put on top). True when either lead is too
    short to say (fewer than 10 shingles) or the check is off."""
    first = np.frombuffer(earlier, dtype="<u2")[: max(1, settings.lead_words - settings.shingle_size + 1)].tolist()
    second = np.frombuffer(later, dtype="<u2").tolist()
    if settings.lead_overlap <= 0 or len(first) < 10 or len(second) < 10:
        return True
    found = set(second)
    return sum(x in found for x in first) >= settings.lead_overlap * len(first)


def _shingle_count(record: SignatureRecord, size: int) -> int:
    # Distinct shingles, nearly: news text seldom repeats a run of words.
    return max(1, record.word_count - size + 1)


def containment(earlier: SignatureRecord, later: SignatureRecord, jaccard: float, size: int) -> float:
    """The estimated share of `later`'s shingles that `earlier` has: |A and B| = J (|A| + |B|) / (1 + J)."""
    na, nb = _shingle_count(earlier, size), _shingle_count(later, size)
    return min(1.0, jaccard * (na + nb) / (1.0 + jaccard) / nb)


def is_near_copy(
    earlier: SignatureRecord, later: SignatureRecord, settings: NearDedupSettings = NearDedupSettings()
) -> tuple[bool, float]:
    """Whether `later` is a copy of `earlier`, and how much of it `earlier` holds (the estimated containment, at
    least the estimated Jaccard similarity): the score a copy picks its canonical by.

    A copy either resembles the earlier text as a whole (Jaccard at or above `threshold`: edited, re-headlined,
    with furniture) or is mostly made of it (containment at or above `containment`: cut to its first paragraphs,
    with a local paragraph added); unless alike as a whole, it keeps the top of the earlier (`leads_agree`). Never
    across languages (nor signature schemes); stricter for short texts, whose few shingles make the estimate coarse
    and a shared headline formula common, and for two articles of one outlet; never when the facts they state
    disagree.
    """
    if earlier.language != later.language or earlier.scheme != later.scheme:
        return False, 0.0
    jaccard = similarity(earlier.values(), later.values())
    score = max(jaccard, containment(earlier, later, jaccard, settings.shingle_size))
    needed = settings.threshold
    if min(earlier.word_count, later.word_count) < settings.min_words:
        needed = max(needed, settings.short_threshold)
    if earlier.outlet and earlier.outlet == later.outlet:
        needed = max(needed, settings.same_outlet_threshold)
    # Containment counts for a later text no longer than the earlier one (a cut copy), never for a short text or
    # two articles of one outlet: otherwise a short story whose paragraph a regional copy carries would become a
    # copy of that copy.
    contained = (
        score >= settings.containment and needed == settings.threshold and later.word_count <= earlier.word_count
    )
    if jaccard < needed and not contained:
        return False, score
    if jaccard < _WHOLE and not leads_agree(earlier.lead, later.lead, settings):
        return False, score
    # Names must agree about as much as the words do: a copy cut to its lead plus a local paragraph shares the
    # names of the lead, not all of its own. Figures are compared where both texts give one after the same word.
    agree = facts_agree(
        earlier.facts,
        later.facts,
        settings.fact_overlap * min(1.0, score),
        settings.fact_min,
        settings.number_overlap,
        settings.number_min,
    )
    return agree, score


# ---------------------------------------------------------------------------------------------------------------
# Clusters.


class Member(NamedTuple):
    """What the canonical choice needs of a cluster member."""

    article_id: str
    prior: bool
    published_at: dt.datetime | None
    text_length: int
    outlet: str
    canonical_id: str  # for a prior member: the article its own cluster kept


def member_of(record: SignatureRecord) -> Member:
    """The Member of a signature record."""
    return Member(
        record.article_id,
        record.prior,
        record.published_at,
        record.text_length,
        record.outlet,
        record.canonical_id or record.article_id,
    )


_FAR_FUTURE = dt.datetime.max.replace(tzinfo=UTC)


def canonical_order(member: Member) -> tuple:
    """Sort key of the member a cluster keeps: a prior (already written) one first, then earliest published, then
    the longer text, then the smaller id."""
    return (not member.prior, member.published_at or _FAR_FUTURE, -member.text_length, member.article_id)


class Verdict(NamedTuple):
    """What clustering decided for one article of this run that has at least one near copy."""

    cluster_id: str
    cluster_size: int
    canonical_id: str  # the article the cluster keeps (a prior one's own canonical, when the cluster has one)
    is_canonical: bool
    revision: bool  # a copy from the same outlet as the canonical: the same story under a new URL or GUID
    matched_prior: bool  # a copy of an article written in an earlier run


def orient(a: SignatureRecord, b: SignatureRecord) -> tuple[SignatureRecord, SignatureRecord]:
    """(earlier, later) of a candidate pair: the later one is the possible copy, the earlier its canonical (a prior
    record first, then the earliest published, then the longer text, then the smaller id)."""
    return (a, b) if canonical_order(member_of(a)) <= canonical_order(member_of(b)) else (b, a)


class Link(NamedTuple):
    """A verified pair: `copy` is a near copy of `canonical`, which holds `score` of it."""

    canonical: Member
    copy: Member
    score: float


def _link_rank(link: Link) -> tuple:
    return (-link.score, canonical_order(link.canonical))


def star_clusters(links: Iterable[Link], follow_copies: float = 1.0) -> list[list[Member]]:
    """Clusters of verified links, each sorted by id, sorted by their first id: stars around a canonical article.

    Articles are taken in canonical order; each joins the cluster of the article it copies best among the canonical
    ones (not copies themselves) and the copies it holds at least `follow_copies` of, else starts its own. So a
    regional copy that carries a paragraph of another story is no bridge: that story's original, published after
    it, is not made a copy of a copy and merged with the copy's story, as connected components did. A near-identical
    copy of a copy still joins (a story syndicated so widely that its buckets were capped is paired with a few
    neighbours only). A prior (earlier run) copy counts as a copy, and one that is joined leads to the article its
    run kept (its `canonical_id`); a prior canonical article counts as canonical.
    """
    by_copy: dict[str, list[Link]] = {}
    members: dict[str, Member] = {}
    for link in links:
        by_copy.setdefault(link.copy.article_id, []).append(link)
        members.setdefault(link.canonical.article_id, link.canonical)
        members.setdefault(link.copy.article_id, link.copy)
    root_of: dict[str, str] = {}
    canonical: set[str] = set()  # the articles a copy may join at any score: not copies themselves
    for m in sorted(members.values(), key=canonical_order):
        if m.prior:  # settled in its own run: heads its cluster here (its canonical_id names what that run kept)
            root_of[m.article_id] = m.article_id
            if m.canonical_id == m.article_id:
                canonical.add(m.article_id)
            continue
        eligible = [
            link
            for link in by_copy.get(m.article_id, ())
            if link.canonical.article_id in root_of
            and (link.canonical.article_id in canonical or link.score >= follow_copies)
        ]
        best = min(eligible, key=_link_rank, default=None)
        if best is None:
            root_of[m.article_id] = m.article_id
            canonical.add(m.article_id)
        else:
            root_of[m.article_id] = root_of[best.canonical.article_id]
    groups: dict[str, list[Member]] = {}
    for x, root in root_of.items():
        groups.setdefault(root, []).append(members[x])
    return sorted(
        (sorted(g, key=lambda m: m.article_id) for g in groups.values() if len(g) > 1), key=lambda g: g[0].article_id
    )


def cluster_verdicts(members: Sequence[Member]) -> dict[str, Verdict]:
    """Verdicts for the current (non-prior) members of one cluster."""
    canonical = min(members, key=canonical_order)
    root = canonical.canonical_id if canonical.prior else canonical.article_id
    cluster_id = stable_id("neardup", root)
    out = {}
    for m in members:
        if m.prior:
            continue
        is_canonical = m.article_id == canonical.article_id
        out[m.article_id] = Verdict(
            cluster_id=cluster_id,
            cluster_size=len(members),
            canonical_id=root,
            is_canonical=is_canonical,
            revision=not is_canonical and bool(m.outlet) and m.outlet == canonical.outlet,
            matched_prior=canonical.prior,
        )
    return out


def find_near_copies(
    records: Sequence[SignatureRecord],
    prior: Sequence[SignatureRecord] = (),
    settings: NearDedupSettings = NearDedupSettings(),
    stats: dict | None = None,
) -> dict[str, Verdict]:
    """The whole stage on in-memory records: verdicts for this run's articles that have near copies.

    The same steps as the Beam composite (band keys, buckets, capped pairs, verification, star clusters, canonical
    choice) with numpy in place of the shuffle; `prior` records are matched, never given a verdict. The benchmark
    measures this, the tests check the composite against it. `stats`, when given, receives the counts.
    """
    current_ids = {r.article_id for r in records}
    everything = list(records) + [dataclasses.replace(p, prior=True) for p in prior if p.article_id not in current_ids]
    counts = {"candidate_pairs": 0, "pairs_verified": 0, "buckets_capped": 0}
    if not everything:
        if stats is not None:
            stats.update(counts)
        return {}
    sigs = np.stack([r.values() for r in everything])
    salts = np.array([language_salt(r.language) for r in everything], dtype=np.uint64)
    pairs = set()
    for band in range(settings.bands):
        for bucket in group_buckets(band_key_matrix(sigs, salts, settings.bands, only=band)):
            members = [(everything[i].article_id, everything[i].prior) for i in bucket.tolist()]
            found, capped = bucket_pairs(members, settings.max_bucket_size, settings.bucket_window)
            counts["buckets_capped"] += capped
            pairs.update(found)
    by_id = {r.article_id: r for r in everything}
    links = []
    for a, b in sorted(pairs):
        counts["candidate_pairs"] += 1
        earlier, later = orient(by_id[a], by_id[b])
        verified, score = is_near_copy(earlier, later, settings)
        if verified:
            links.append(Link(member_of(earlier), member_of(later), score))
    counts["pairs_verified"] = len(links)
    verdicts: dict[str, Verdict] = {}
    for cluster in star_clusters(links, settings.follow_copies):
        verdicts.update(cluster_verdicts(cluster))
    if stats is not None:
        stats.update(counts)
    return verdicts


def bucket_bounds(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, starts, sizes) of the buckets with two or more members among the (n,) keys of one band: bucket i
    holds rows order[starts[i]:starts[i] + sizes[i]]. A sort standing in for the GroupByKey of the composite."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    boundary = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    starts = np.concatenate(([0], boundary))
    sizes = np.diff(np.concatenate((starts, [len(keys)])))
    multi = sizes > 1
    return order, starts[multi], sizes[multi]


def group_buckets(keys: np.ndarray) -> Iterator[np.ndarray]:
    """Row indices of each bucket with two or more members, from the (n,) keys of one band."""
    order, starts, sizes = bucket_bounds(keys)
    for start, size in zip(starts.tolist(), sizes.tolist()):
        yield order[start : start + size]


def apply_verdict(article: Article, verdict: Verdict | None, mode: str) -> Article | None:
    """The article to write (None to drop it) under `mode`, given its verdict (None: it has no near copy)."""
    if verdict is None:
        return article
    if verdict.is_canonical:
        return dataclasses.replace(article, cluster_id=verdict.cluster_id, cluster_size=verdict.cluster_size)
    if mode == "drop":
        return None
    return dataclasses.replace(
        article, cluster_id=verdict.cluster_id, cluster_size=verdict.cluster_size, duplicate_of=verdict.canonical_id
    )


# ---------------------------------------------------------------------------------------------------------------
# The Beam composite.


class NearDedupResult(NamedTuple):
    """What DeduplicateNearCopies returns: the articles to go on, and this run's signature records (with the
    `canonical_id` their cluster kept) for the run state."""

    articles: beam.PCollection
    signatures: beam.PCollection


class _SignFn(beam.DoFn):
    """A batch of articles -> the signature record of each article that has words."""

    def __init__(self, settings: NearDedupSettings):
        self._settings = settings
        self._signed = Metrics.counter("neardup", "signed")
        self._unsigned = Metrics.counter("neardup", "unsigned")

    def process(self, batch: list[Article]) -> Iterable[SignatureRecord]:
        for record in signature_records(batch, self._settings):
            if record is None:
                self._unsigned.inc()
            else:
                self._signed.inc()
                yield record


class _BandBatchFn(beam.DoFn):
    """Records -> (band, BandBatch) per band for each bundle's records (at most `flush_every` at a time).

    One element per record and band (32 per article) made banding most of the run's Beam elements, each costing
    more to route and encode than to compute; a batch per band and bundle costs a few elements per bundle."""

    def __init__(self, bands: int, flush_every: int = 4096):
        self._bands = bands
        self._flush_every = flush_every
        self._records: list[SignatureRecord] = []

    def start_bundle(self):
        self._records = []

    def process(self, record: SignatureRecord) -> Iterable[tuple[int, BandBatch]]:
        self._records.append(record)
        if len(self._records) >= self._flush_every:
            yield from self._flush()

    def finish_bundle(self):
        for band_batch in self._flush():
            yield GlobalWindows.windowed_value_at_end_of_window(band_batch)

    def _flush(self) -> Iterator[tuple[int, BandBatch]]:
        records, self._records = self._records, []
        if records:
            yield from enumerate(band_batches(records, self._bands))


class _PairsFn(beam.DoFn):
    """(band, its BandBatches) -> the candidate pairs of the band's buckets."""

    def __init__(self, settings: NearDedupSettings):
        self._settings = settings
        self._capped = Metrics.counter("neardup", "buckets_capped")

    def process(self, band: tuple[int, Iterable[BandBatch]]) -> Iterable[tuple[str, str]]:
        for members in shared_buckets(band[1]):
            pairs, capped = bucket_pairs(members, self._settings.max_bucket_size, self._settings.bucket_window)
            if capped:
                self._capped.inc()
            yield from pairs


def _pick(records: Iterable[SignatureRecord]) -> SignatureRecord | None:
    """The record of an id: this run's when an earlier run's has the same id."""
    return min(records, key=lambda r: (r.prior, r.signature), default=None)


def _attach_first(joined: tuple[str, dict]) -> Iterator[tuple[str, SignatureRecord]]:
    record = _pick(joined[1]["record"])
    if record is not None:
        for other in joined[1]["other"]:
            yield other, record


class _VerifyFn(beam.DoFn):
    """(second id, {first records, second record}) -> the verified pairs, as Links from the earlier to the copy."""

    def __init__(self, settings: NearDedupSettings):
        self._settings = settings
        self._candidates = Metrics.counter("neardup", "candidate_pairs")
        self._verified = Metrics.counter("neardup", "pairs_verified")
        self._rejected = Metrics.counter("neardup", "pairs_rejected")

    def process(self, joined: tuple[str, dict]) -> Iterable[Link]:
        second = _pick(joined[1]["record"])
        if second is None:
            return
        for first in joined[1]["first"]:
            self._candidates.inc()
            earlier, later = orient(first, second)
            verified, score = is_near_copy(earlier, later, self._settings)
            if verified:
                self._verified.inc()
                yield Link(member_of(earlier), member_of(later), score)
            else:
                self._rejected.inc()


class _StarClustersFn(beam.CombineFn):
    """Verified links -> star clusters (`star_clusters`), each a list of Members sorted by id.

    The accumulator is the list of links; partial lists from any bundles concatenate, and the clusters depend only
    on the set of links. It holds only articles with at least one verified copy (about the copy share of a run,
    plus their prior matches), not every article: that is what has to fit one worker.
    """

    def __init__(self, follow_copies: float):
        self._follow_copies = follow_copies

    def create_accumulator(self) -> list[Link]:
        return []

    def add_input(self, accumulator: list[Link], link: Link) -> list[Link]:
        accumulator.append(link)
        return accumulator

    def merge_accumulators(self, accumulators) -> list[Link]:
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for other in accumulators:
            merged.extend(other)
        return merged

    def extract_output(self, accumulator: list[Link]) -> list[list[Member]]:
        return star_clusters(accumulator, self._follow_copies)


class _VerdictsFn(beam.DoFn):
    def __init__(self):
        self._clusters = Metrics.counter("neardup", "clusters")

    def process(self, component: list[Member]) -> Iterable[tuple[str, Verdict]]:
        self._clusters.inc()
        yield from cluster_verdicts(component).items()


class _ApplyFn(beam.DoFn):
    """An article and the verdicts -> the article to write (or nothing), counted."""

    def __init__(self, mode: str):
        self._mode = mode
        self._copies = Metrics.counter("neardup", "copies_dropped" if mode == "drop" else "copies_marked")
        self._duplicates = Metrics.counter("dedup", "duplicates")
        self._revisions = Metrics.counter("neardup", "revisions")
        self._matched_prior = Metrics.counter("neardup", "matched_prior")

    def process(self, article: Article, verdicts: dict[str, Verdict]) -> Iterable[Article]:
        verdict = verdicts.get(article.article_id)
        if verdict is not None and not verdict.is_canonical:
            self._copies.inc()
            if verdict.revision:
                self._revisions.inc()
            if verdict.matched_prior:
                self._matched_prior.inc()
            if self._mode == "drop":
                self._duplicates.inc()  # the run summary reconciles read = written + duplicates + dead letters
        out = apply_verdict(article, verdict, self._mode)
        if out is not None:
            yield out


def _with_canonical(record: SignatureRecord, verdicts: dict[str, Verdict]) -> SignatureRecord:
    verdict = verdicts.get(record.article_id)
    return dataclasses.replace(record, canonical_id=verdict.canonical_id if verdict else record.article_id)


class _PriorFn(beam.DoFn):
    """Records of earlier runs -> the ones comparable with this run's (same scheme), marked prior."""

    def __init__(self, scheme: str):
        self._scheme = scheme
        self._kept = Metrics.counter("neardup", "prior_signatures")
        self._other = Metrics.counter("neardup", "prior_signatures_other_scheme")

    def process(self, record: SignatureRecord) -> Iterable[SignatureRecord]:
        if record.scheme != self._scheme:
            self._other.inc()
            return
        self._kept.inc()
        yield record if record.prior else dataclasses.replace(record, prior=True)


def _all_band_keys(batches: Iterable[tuple[int, BandBatch]]) -> np.ndarray:
    batches = list(batches)
    return np.unique(np.concatenate([b.keys for _, b in batches])) if batches else np.zeros(0, np.int64)


class _SharesBandFn(beam.DoFn):
    """Prior records that share at least one band key with this run's records (given as their band batches)."""

    def __init__(self, bands: int):
        self._bands = bands
        self._run_keys = CachedSideInput(_all_band_keys)

    def process(self, record: SignatureRecord, run_bands: list[tuple[int, BandBatch]]) -> Iterable[SignatureRecord]:
        keys = self._run_keys.get(run_bands)
        if len(keys) and np.isin(band_keys(record.values(), record.language, self._bands), keys).any():
            yield record


class DeduplicateNearCopies(beam.PTransform):
    """Articles -> one article per near-duplicate cluster (drop), or all with the copies marked (mark).

    `prior_signatures`: an optional PCollection of SignatureRecords of articles from earlier runs (the run state),
    matched but never written. Returns NearDedupResult(articles, signatures). Meant for the global window (before
    windowing): the verdicts reach the articles as a side input.
    """

    def __init__(
        self, settings: NearDedupSettings = NearDedupSettings(), prior_signatures: beam.PCollection | None = None
    ):
        super().__init__()
        self._settings = settings
        self._prior = prior_signatures

    def expand(self, articles: beam.PCollection) -> NearDedupResult:
        settings = self._settings
        if not settings.enabled:
            return NearDedupResult(articles, articles.pipeline | "NoSignatures" >> beam.Create([]))
        signed = (
            articles
            | "Batch" >> beam.BatchElements(min_batch_size=16, max_batch_size=256)
            | "Sign" >> beam.ParDo(_SignFn(settings))
        )
        records = signed
        bands = signed | "BandBatches" >> beam.ParDo(_BandBatchFn(settings.bands))
        if self._prior is not None:
            # Only priors that share a band with this run can match: filtering them first keeps the shuffle as
            # small as the run, however long the history.
            prior = (
                self._prior
                | "MarkPrior" >> beam.ParDo(_PriorFn(settings.scheme))
                | "PriorsSharingABand" >> beam.ParDo(_SharesBandFn(settings.bands), beam.pvalue.AsList(bands))
            )
            records = (signed, prior) | "WithPrior" >> beam.Flatten()
            prior_bands = prior | "PriorBandBatches" >> beam.ParDo(_BandBatchFn(settings.bands))
            bands = (bands, prior_bands) | "AllBandBatches" >> beam.Flatten()
        keyed = records | "KeyById" >> beam.Map(lambda r: (r.article_id, r))
        pairs = (
            bands
            | "ByBand" >> beam.GroupByKey()
            | "CandidatePairs" >> beam.ParDo(_PairsFn(settings))
            | "UniquePairs" >> beam.Distinct()
        )
        halves = (
            {"other": pairs, "record": keyed}
            | "JoinFirst" >> beam.CoGroupByKey()
            | "AttachFirst" >> beam.FlatMap(_attach_first)
        )
        verdicts = (
            {"first": halves, "record": keyed}
            | "JoinSecond" >> beam.CoGroupByKey()
            | "Verify" >> beam.ParDo(_VerifyFn(settings))
            | "Components" >> beam.CombineGlobally(_StarClustersFn(settings.follow_copies))
            | "EachComponent" >> beam.FlatMap(lambda components: components)
            | "Verdicts" >> beam.ParDo(_VerdictsFn())
        )
        verdict_map = beam.pvalue.AsDict(verdicts)
        return NearDedupResult(
            articles | "Apply" >> beam.ParDo(_ApplyFn(settings.mode), verdicts=verdict_map),
            signed | "CanonicalOfSignature" >> beam.Map(_with_canonical, verdicts=verdict_map),
        )
