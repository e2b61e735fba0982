"""A text classifier read from plain arrays: the model behind the topic model and the language pair models.

The model reads a text two ways and adds up what four linear classifiers make of it:

- its words: tf-idf of word 1-2-grams (sublinear tf, l2 norm);
- the character 2-5-grams of its words (each word padded with a space either side, so prefixes and
  suffixes are n-grams of their own): tf-idf of raw counts, l1 norm. This lets a word never seen in
  training (a new name, an unseen inflection) count through the parts it shares with words that were, and
  lets "stock" lend evidence to "stocks".

Each view feeds a Complement Naive Bayes and a linear SVM (one-vs-rest). Each of the four classifiers' scores
is divided by its own softmax temperature, fitted on cross-validated predictions, so each becomes a calibrated
log-probability up to a constant; the sum (a product of experts, which needs no extra parameter) is scaled by a
last temperature, again fitted on cross-validated scores, so that its probability is calibrated.

scikit-learn fits it (`pipeline/training.py`); the fitted vectorisers and classifiers are exported to plain arrays
(`transforms/classifier_file.py` writes and reads them) and applied by the numpy/scipy code here
(`TextClassifier.predict_proba`), which reproduces the scikit-learn models' probabilities to float32 precision.
So a shipped model never depends on the scikit-learn version, loading it runs no pickled code, and the
pipeline's workers need only numpy and scipy. Since both classifiers of a view are linear in its features,
they export as one weight matrix; since the character view's features are raw counts with an l1 norm, its
score is a sum over words of per-word vectors divided by a sum of per-word weights, precomputed at load for
every known word, so it costs little more than a table lookup per word.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

# scikit-learn's default token pattern: runs of two or more word characters, lowercased first.
TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")

# Character n-grams of a word padded with one space either side.
CHAR_NGRAMS = (2, 5)

# Only the start of a long text is read: a news text states its subject early, and this bounds the cost
# of a huge body. AG News rows (title + description) are far shorter, so training never cuts.
MAX_CHARS = 2000

# Predictions for a text that contains none of the model's words: no evidence, so no label.
NO_LABEL = ""

# Character-view vectors of unseen words are memoised per model; news repeats its new names. Bounded so that
# a long-running worker's memory stays flat: when full, the memo starts over.
_OOV_MEMO_SIZE = 100_000


class ClassifierError(ValueError):
    """A classifier file, or the data to train one, is unusable; the message is one line naming the file."""


def one_line(err: BaseException) -> str:
    """An exception as one line for a ClassifierError's message: its type and its text, whitespace collapsed."""
    return " ".join(f"{type(err).__name__}: {err}".split())


class _Vocabulary(dict):
    """Word -> feature id, -1 for an unknown word (lets a C-level map() look words up)."""

    def __missing__(self, word: str) -> int:
        return -1


def char_ngrams(word: str) -> list[str]:
    """The character n-grams the model reads from one (lowercased) word: 2- to 5-grams of " word "."""
    padded = f" {word} "
    low, high = CHAR_NGRAMS
    return [padded[i : i + n] for n in range(low, high + 1) for i in range(len(padded) - n + 1)]


@dataclasses.dataclass(frozen=True, eq=False)
class TextClassifier:
    """A trained text classifier. Thread-safe: one instance serves every thread of a worker.

    Its fields never change; the only state it keeps is a bounded memo of unseen words' character vectors.
    """

    labels: tuple[str, ...]
    languages: tuple[str, ...]
    unigrams: tuple[str, ...]
    bigrams: np.ndarray  # (n_bigrams, 2) int32 unigram ids, sorted by (first, second)
    idf: np.ndarray  # (n_features,) float32: unigrams first, then bigrams in the order above
    coef: np.ndarray  # (n_classes, n_features) float32
    intercept: np.ndarray  # (n_classes,) float64
    temperature: float = 1.0
    max_chars: int = MAX_CHARS
    info: dict = dataclasses.field(default_factory=dict)  # how it was trained; informational only
    # The character view (format version 2); empty for a words-only model.
    char_ngrams: tuple[str, ...] = ()
    char_idf: np.ndarray | None = None  # (n_char,) float32
    char_coef: np.ndarray | None = None  # (n_classes, n_char) float32, scaled as the training features were
    # The character view's row of every known word (`word_char_rows()`), when a cache already holds it: deriving it
    # is most of the cost of loading a model. None, or a table of another shape or type, derives it.
    word_char: dataclasses.InitVar[np.ndarray | None] = None

    def __post_init__(self, word_char: np.ndarray | None):
        vocabulary = _Vocabulary((word, i) for i, word in enumerate(self.unigrams))
        n_words = len(self.unigrams)
        bigram_keys = self.bigrams[:, 0].astype(np.int64) * n_words + self.bigrams[:, 1]
        # Derived lookup tables; computed once here so predict_proba is only array work.
        object.__setattr__(self, "_vocabulary", vocabulary)
        object.__setattr__(self, "_bigram_keys", bigram_keys)
        object.__setattr__(self, "_idf64", self.idf.astype(np.float64))
        object.__setattr__(self, "_coef_t", np.ascontiguousarray(self.coef.T, dtype=np.float64))
        if self.char_ngrams:
            known = np.array(self.char_ngrams)
            # Sorted (hence distinct), as the vectorised lookup in _vocabulary_char_rows needs; numpy orders str
            # as Python does, except that it drops trailing NULs, which no n-gram may hold.
            if "" in self.char_ngrams or "\0" in "".join(self.char_ngrams) or not np.all(known[1:] > known[:-1]):
                raise ClassifierError("character n-grams must be distinct, sorted, non-empty strings")
            # One row per n-gram: its weighted votes for each class, then its weight in the l1 norm.
            char_idf = self.char_idf.astype(np.float64)
            table = np.column_stack([self.char_coef.T.astype(np.float64) * char_idf[:, None], char_idf])
            char_vocabulary = {ngram: i for i, ngram in enumerate(self.char_ngrams)}
            object.__setattr__(self, "_char_vocabulary", char_vocabulary)
            object.__setattr__(self, "_char_table", table)
            if (
                word_char is None
                or word_char.shape != (len(self.unigrams), table.shape[1])
                or word_char.dtype != table.dtype
            ):
                word_char = self._vocabulary_char_rows(known)
            object.__setattr__(self, "_word_char", word_char)
            object.__setattr__(self, "_oov_memo", {})

    def word_char_rows(self) -> np.ndarray | None:
        """The character view's row of each known word (`_char_rows(self.unigrams)`, float64, one column per class
        and one for the l1 weight), derived at load; None for a words-only model."""
        return getattr(self, "_word_char", None)

    @property
    def n_features(self) -> int:
        """Number of features (unigrams + bigrams + character n-grams)."""
        return len(self.unigrams) + len(self.bigrams) + len(self.char_ngrams)

    def applies_to(self, language: str) -> bool:
        """Whether the model was trained on `language` (an ISO 639-1 code such as "en"; "en-GB" counts as "en")."""
        return language.split("-")[0].lower() in self.languages

    def _char_rows(self, words: Sequence[str]) -> np.ndarray:
        """Each word's character-view row: the sum of its n-grams' rows of `_char_table` (unknown n-grams count 0)."""
        lookup = self._char_vocabulary.get
        indptr, indices = [0], []
        for word in words:
            indices.extend(i for i in map(lookup, char_ngrams(word)) if i is not None)
            indptr.append(len(indices))
        counts = sp.csr_matrix(
            (np.ones(len(indices)), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
            shape=(len(words), len(self.char_ngrams)),
        )
        return np.asarray(counts @ self._char_table)

    def _vocabulary_char_rows(self, known: np.ndarray) -> np.ndarray:
        """`_char_rows(self.unigrams)`, vectorised (it runs at every load): for each n and offset, the n-grams of
        all the words long enough are cut from one array and looked up at once in `known`, the n-grams sorted."""
        if not self.unigrams:
            return np.zeros((0, self._char_table.shape[1]))
        padded = np.array([f" {word} " for word in self.unigrams])
        width = padded.dtype.itemsize // 4
        chars = padded.view("U1").reshape(len(padded), width)
        lengths = np.fromiter((len(word) + 2 for word in self.unigrams), dtype=np.int64, count=len(self.unigrams))
        rows, cols = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        for n in range(CHAR_NGRAMS[0], CHAR_NGRAMS[1] + 1):
            for start in range(width - n + 1):
                words = np.flatnonzero(lengths >= start + n)
                grams = np.ascontiguousarray(chars[words, start : start + n]).view(f"U{n}").ravel()
                pos = np.minimum(np.searchsorted(known, grams), len(known) - 1)
                hit = known[pos] == grams
                rows.append(words[hit])
                cols.append(pos[hit])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        counts = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(padded), len(known)))
        return np.asarray(counts @ self._char_table)

    def _tokens(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """All texts' words in order, the number of words of each text, and each word's unigram id (-1: unknown)."""
        tokens = [TOKEN_RE.findall(text[: self.max_chars].lower()) for text in texts]
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(texts))
        words = list(itertools.chain.from_iterable(tokens))
        ids = np.fromiter(map(self._vocabulary.__getitem__, words), dtype=np.int64, count=len(words))
        return words, lengths, ids

    def features(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The word view's tf-idf matrix of `texts`, as scikit-learn's TfidfVectorizer would give (columns in our
        order: unigrams, then bigrams)."""
        _, lengths, ids = self._tokens(texts)
        return self._word_features(lengths, ids)

    def _word_features(self, lengths: np.ndarray, ids: np.ndarray) -> sp.csr_matrix:
        n_docs = len(lengths)
        n_words = len(self.unigrams)
        n_features = n_words + len(self.bigrams)
        doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)

        known = ids >= 0
        rows = [doc_of[known]]
        cols = [ids[known]]
        if len(ids) > 1 and len(self._bigram_keys):
            # A pair counts when both words are known and in the same text: unknown words cannot start or
            # end a pair the model has seen, since every training pair's words are in the vocabulary.
            pair = (doc_of[:-1] == doc_of[1:]) & known[:-1] & known[1:]
            keys = ids[:-1][pair] * n_words + ids[1:][pair]
            pos = np.minimum(np.searchsorted(self._bigram_keys, keys), len(self._bigram_keys) - 1)
            hit = self._bigram_keys[pos] == keys
            rows.append(doc_of[:-1][pair][hit])
            cols.append(n_words + pos[hit])

        cells = np.concatenate(rows) * n_features + np.concatenate(cols)
        cells.sort()
        if len(cells):
            starts = np.flatnonzero(np.concatenate(([True], cells[1:] != cells[:-1])))
            counts = np.diff(np.append(starts, len(cells)))
            cells = cells[starts]
        else:
            counts = np.zeros(0, dtype=np.int64)
        row = cells // n_features
        col = cells % n_features
        values = (np.log(counts) + 1.0) * self._idf64[col]
        norms = np.sqrt(np.bincount(row, weights=values * values, minlength=n_docs))
        values /= norms[row]
        indptr = np.searchsorted(row, np.arange(n_docs + 1))
        return sp.csr_matrix((values, col, indptr), shape=(n_docs, n_features))

    def _char_scores(self, words: list[str], lengths: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """The character view's class scores: per text, the sum of its words' vote rows over the sum of their
        l1 weights (an l1-normalised tf-idf vector times the weights, computed per word instead of per n-gram)."""
        n_classes = len(self.labels)
        rows = np.empty((len(ids), n_classes + 1))
        known = ids >= 0
        rows[known] = self._word_char[ids[known]]
        unknown = np.flatnonzero(~known)
        if len(unknown):
            unknown_words = [words[i] for i in unknown]
            memo = self._oov_memo
            # Each memo entry is read once (another thread may clear the memo at any time).
            needed = {word: memo.get(word) for word in unknown_words}
            missing = [word for word, row in needed.items() if row is None]
            if missing:
                computed = self._char_rows(missing)
                needed.update(zip(missing, computed))
                if len(memo) + len(missing) > _OOV_MEMO_SIZE:
                    memo.clear()
                memo.update(zip(missing, computed))
            order = {word: k for k, word in enumerate(needed)}
            rows[unknown] = np.array(list(needed.values()))[[order[word] for word in unknown_words]]
        sums = np.zeros((len(lengths), n_classes + 1))
        nonempty = lengths > 0
        if nonempty.any():
            starts = np.cumsum(lengths) - lengths
            sums[nonempty] = np.add.reduceat(rows, starts[nonempty], axis=0)
        weight = sums[:, n_classes:]
        # A text none of whose n-grams the model knows has an all-zero vector, as in scikit-learn.
        return np.divide(sums[:, :n_classes], weight, out=np.zeros((len(lengths), n_classes)), where=weight > 0)

    def scores(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Raw class scores (before temperature and softmax) and whether each text had any known word feature."""
        words, lengths, ids = self._tokens(texts)
        matrix = self._word_features(lengths, ids)
        raw = matrix @ self._coef_t + self.intercept
        if self.char_ngrams:
            raw += self._char_scores(words, lengths, ids)
        return raw, np.diff(matrix.indptr) > 0

    def predict_proba(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The most probable label of each text and its probability (float64 array).

        A text that shares no word with the training data gets NO_LABEL ("") and probability 0.0.
        """
        texts = list(texts)
        if not texts:
            return [], np.zeros(0)
        raw, evidence = self.scores(texts)
        probs = _softmax(raw / self.temperature)
        best = probs.argmax(axis=1)
        top = probs[np.arange(len(texts)), best]
        labels = [self.labels[i] if seen else NO_LABEL for i, seen in zip(best.tolist(), evidence.tolist())]
        return labels, np.where(evidence, top, 0.0)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """The full (texts x labels) probability matrix, columns in `labels` order."""
        raw, _ = self.scores(list(texts))
        return _softmax(raw / self.temperature)


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
