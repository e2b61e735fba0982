"""Tokens, shingle hashes, facts, leads and MinHash signatures of texts, for whole batches in numpy."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from transforms.neardup.settings import NearDedupSettings

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
# A batch longer than this (in characters) is signed in parts: the power tables and the per-character arrays stay
# small. 2**19 rather than 2**21: a chunk of 1,000 scale-corpus articles then peaked 40 MB above its floor instead of
# 160 MB, and signed 8% faster (the arrays stay in cache).
_MAX_BATCH_CHARS = 1 << 19
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

    Facts are the tokens with a digit in them and the capitalised tokens that do not open a sentence (names,
    places, organisations: in German every noun, which does no harm). A fact's hash is odd for a number, even for a
    name; a number's keeps the words either side of it in its top 16 bits (`_figure_context`).
    """
    # A token with a digit of any script in it is a figure: "30", "۳۰", "2km", "AD600" (a changed figure changes it).
    # Digits are few: find them, then their tokens (a digit is a word character, so always inside one).
    digits = np.flatnonzero(_DIGIT[cps if cps.dtype != np.uint32 else np.minimum(cps, 0xFFFF)])
    number = np.zeros(len(starts), dtype=bool)
    number[np.searchsorted(starts, digits, side="right") - 1] = True
    # A token opens a sentence when the last non-space character before it ends one (or it opens a line).
    before = cps[starts - 1].astype(np.int64)
    two_before = cps[np.maximum(starts - 2, 0)].astype(np.int64)
    before[before > 0xFFFF] = 0
    two_before[two_before > 0xFFFF] = 0
    opens = _SENTENCE_END[before] | ((before == 32) & _SENTENCE_END[two_before])
    is_fact = (capital & ~opens) | number
    picked = np.flatnonzero(is_fact)
    # The lowest bit of a fact's hash tells a number (1) from a name (0); a number keeps its context in the top 16.
    value = (word_hash[picked] >> np.uint64(32)) & np.uint64(0xFFFFFFFE)
    numbers = np.flatnonzero(number[picked])
    if len(numbers):
        value[numbers] = (
            (_figure_context(number, word_hash, token_doc, picked[numbers]) << np.uint64(16))
            | ((word_hash[picked[numbers]] >> np.uint64(48)) & np.uint64(0xFFFE))
            | np.uint64(1)
        )
    keys = np.sort((token_doc[picked].astype(np.uint64) << np.uint64(32)) | value)
    if len(keys):  # distinct (np.unique costs four times the sort)
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    bounds = np.searchsorted(keys >> np.uint64(32), np.arange(n_docs + 1, dtype=np.uint64))
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32), bounds.astype(np.int64)


def _figure_context(number, word_hash, token_doc, at) -> np.ndarray:
    """16 bits for the words either side of the figures at token positions `at` (of their own document; a figure
    beside it, "AD600" too, counts as one placeholder word, since a template changes it as well). "rose 3 percent"
    and "rose 5 percent" are one context with two figures, which is how template stories differ; a figure of a
    local paragraph that only shares the word before it with one of the story ("in 2020 the" against "in 2019 when")
    is another context, not a disagreement (with the word before alone, one such chance context cost cut copies
    their match: cut-copy recall 0.952, 0.956, 0.947 on seeds 13, 7, 21 before, 0.959, 0.963, 0.951 after)."""
    last = len(word_hash) - 1
    before, after = np.maximum(at - 1, 0), np.minimum(at + 1, last)
    zero = np.uint64(0)
    left = np.where(number[before], _FIGURE_WORD, word_hash[before])
    right = np.where(number[after], _FIGURE_WORD, word_hash[after])
    left = np.where((at > 0) & (token_doc[before] == token_doc[at]), left, zero)
    right = np.where((at < last) & (token_doc[after] == token_doc[at]), right, zero)
    with np.errstate(over="ignore"):
        return _mix(left * _POSITION[0] + right * _POSITION[1]) >> np.uint64(48)


# Odd multipliers that make a shingle's hash depend on the order of its words.
_POSITION = [np.uint64(_mix_int(0x9E3779B97F4A7C15 + i) | 1) for i in range(64)]
_FIGURE_WORD = np.uint64(_mix_int(0x2545F4914F6CDD1D))


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


# Empty bins looked at in one block of `_densify`, times their draws: a chunk of 2,000 short entries (a headline
# and a line each) leaves most of its 2,000 x 128 bins empty, and all their 1,024 draws at once took 500 MB.
_DENSIFY_CELLS = 1 << 22


def _densify(sig: np.ndarray, filled: np.ndarray, table: np.ndarray) -> None:
    any_filled = filled.any(axis=1)
    rows, cols = np.nonzero(~filled & any_filled[:, None])
    for width in (16, table.shape[1]):
        if not len(rows):
            return
        # Each empty bin takes the value of a filled bin, which no block changes: blocks give what one pass would.
        step = max(1, _DENSIFY_CELLS // width)
        left = [
            _densify_block(sig, filled, table, rows[i : i + step], cols[i : i + step], width)
            for i in range(0, len(rows), step)
        ]
        rows = np.concatenate([r for r, _ in left])
        cols = np.concatenate([c for _, c in left])
    # Left after 1024 draws only in a document with one or two shingles: take the next filled bin to the right.
    for row, col in zip(rows.tolist(), cols.tolist()):
        order = np.roll(np.arange(sig.shape[1]), -col)
        sig[row, col] = sig[row, order[filled[row, order]][0]]


def _densify_block(
    sig: np.ndarray, filled: np.ndarray, table: np.ndarray, rows: np.ndarray, cols: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fill the empty bins (rows, cols) from the first filled bin among their first `width` draws; the bins still
    empty."""
    candidates = table[cols, :width]
    ok = filled[rows[:, None], candidates]
    first = ok.argmax(axis=1)
    found = ok[np.arange(len(rows)), first]
    source = candidates[np.arange(len(rows)), first]
    sig[rows[found], cols[found]] = sig[rows[found], source[found]]
    return rows[~found], cols[~found]


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
