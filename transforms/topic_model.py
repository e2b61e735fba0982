"""The learned topic classifier: training, a portable model file, and a RunInference model handler.

The model reads an article two ways and adds up what four linear classifiers make of it:

- its words: tf-idf of word 1-2-grams (sublinear tf, l2 norm);
- the character 2-5-grams of its words (each word padded with a space either side, so prefixes and
  suffixes are n-grams of their own): tf-idf of raw counts, l1 norm. This lets a word never seen in
  training (a new name, an unseen inflection) count through the parts it shares with words that were, and
  lets "stock" lend evidence to "stocks".

Each view feeds a Complement Naive Bayes and a linear SVM (one-vs-rest). Each of the four classifiers' scores
is divided by its own softmax temperature, fitted on cross-validated predictions, so each becomes a calibrated
log-probability up to a constant; the sum (a product of experts, which needs no extra parameter) is scaled by a
last temperature, again fitted on cross-validated scores, so that `topic_score` is a calibrated probability.

scikit-learn fits it (`train_from_csv`); the fitted vectorisers and classifiers are then exported to a file of
plain arrays (`save_model`) and applied by numpy/scipy code here (`TopicModel.predict_proba`) that reproduces
the scikit-learn models' probabilities to float32 precision (the precision topic_score is stored at).
So a shipped model never depends on the scikit-learn version, loading it runs no pickled code, and the
pipeline's workers need only numpy and scipy. Since both classifiers of a view are linear in its features,
they export as one weight matrix; since the character view's features are raw counts with an l1 norm, its
score is a sum over words of per-word vectors divided by a sum of per-word weights, precomputed at load for
every known word, so it costs little more than a table lookup per word.

The model file is a zip archive (so `numpy.load` can read its arrays too) written byte for byte the same
by the same training run: `meta.json` (format, version, labels, languages, temperature, training facts and a
sha256 of the arrays) and `.npy` arrays: `unigrams` (the words, newline-joined UTF-8), `bigrams` (pairs of
unigram ids, sorted), `idf`, `coef` (classes x features) and `intercept`; version 2 adds `char_ngrams`
(newline-joined UTF-8), `char_idf` and `char_coef` (classes x n-grams). Version 1 files (words only) still load.

The default model, trained on AG News (World, Sports, Business, Sci/Tech; English), ships as
`DEFAULT_MODEL_PATH`; train another with

    newsbeam train-topics --data labelled.csv --out model.npz

where the CSV's rows are label,title,text (AG News' own train.csv included).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import re
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "agnews-topics.npz"

FORMAT_NAME = "newsbeam-topic-model"
FORMAT_VERSION = 2  # what a model with a character view is written as; version 1 files (words only) still load
FEATURES_V1 = "tfidf-word-1-2gram-sublinear-l2"
FEATURES = "tfidf-word-1-2gram-sublinear-l2+tfidf-char-2-5gram-l1"
FEATURES_OF_VERSION = {1: FEATURES_V1, 2: FEATURES}

# scikit-learn's default token pattern: runs of two or more word characters, lowercased first.
TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")

# Character n-grams of a word padded with one space either side.
CHAR_NGRAMS = (2, 5)

# Only the start of a long article is read: a news text states its subject early, and this bounds the cost
# of a huge body. AG News rows (title + description) are far shorter, so training never cuts.
MAX_CHARS = 2000

# Chosen from {0.1, 0.3, 1.0} by 5-fold CV on AG News for the word-only model (0.885, 0.888, 0.885) and kept
# for both views rather than tuned again; see benchmarks/topics.py.
DEFAULT_ALPHA = 0.3

# The SVMs' regularisation: scikit-learn's default, not tuned (features are l2-normalised or scaled to a mean
# l2 norm of 1, which is what C=1 suits).
SVM_C = 1.0

# The four classifiers, in the order their temperatures are listed.
COMPONENTS = ("word_nb", "word_svm", "char_nb", "char_svm")

# Predictions for a text that contains none of the model's words: no evidence, so no label.
NO_LABEL = ""

_ARRAYS_OF_VERSION = {
    1: ("unigrams", "bigrams", "idf", "coef", "intercept"),
    2: ("unigrams", "bigrams", "idf", "coef", "intercept", "char_ngrams", "char_idf", "char_coef"),
}
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)

# Character-view vectors of unseen words are memoised per model; news repeats its new names. Bounded so that
# a long-running worker's memory stays flat: when full, the memo starts over.
_OOV_MEMO_SIZE = 100_000


class TopicModelError(ValueError):
    """A topic model file, or the data to train one, is unusable; the message is one line naming the file."""


def topic_text(title: str, text: str) -> str:
    """The text the model reads for an article: its title, then its body."""
    return f"{title}\n{text}" if title and text else title or text


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
class TopicModel:
    """A trained topic classifier. Thread-safe: one instance serves every thread of a worker.

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

    def __post_init__(self):
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
                raise TopicModelError("character n-grams must be distinct, sorted, non-empty strings")
            # One row per n-gram: its weighted votes for each class, then its weight in the l1 norm.
            char_idf = self.char_idf.astype(np.float64)
            table = np.column_stack([self.char_coef.T.astype(np.float64) * char_idf[:, None], char_idf])
            char_vocabulary = {ngram: i for i, ngram in enumerate(self.char_ngrams)}
            object.__setattr__(self, "_char_vocabulary", char_vocabulary)
            object.__setattr__(self, "_char_table", table)
            object.__setattr__(self, "_word_char", self._vocabulary_char_rows(known))
            object.__setattr__(self, "_oov_memo", {})

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


# ---------------------------------------------------------------------------------------------- training


def read_training_csv(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Labels and texts (title + text) of a label,title,text CSV.

    Numeric labels are mapped through a `classes.txt` beside the CSV (line N names label N, as in AG News)
    when one exists; otherwise labels are the strings themselves. A first row `label,title,text` is a header.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise TopicModelError(f"training data not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise TopicModelError(f"cannot read training data {path}: {_one_line(err)}") from None

    if rows and [cell.strip().lower() for cell in rows[0]] == ["label", "title", "text"]:
        rows = rows[1:]
        first_line = 2
    else:
        first_line = 1
    labels, texts = [], []
    for line, row in enumerate(rows, start=first_line):
        if not row:
            continue
        if len(row) != 3:
            raise TopicModelError(f"{path}:{line}: expected 3 columns label,title,text, found {len(row)}")
        label, title, text = (cell.strip() for cell in row)
        if not label:
            raise TopicModelError(f"{path}:{line}: empty label")
        labels.append(label)
        # AG News marks line breaks with a backslash; TOKEN_RE splits on it like on any non-word character.
        texts.append(topic_text(title, text))
    if not labels:
        raise TopicModelError(f"training data {path} has no rows")

    classes_file = path.with_name("classes.txt")
    if classes_file.is_file() and all(label.isdigit() for label in labels):
        names = [name.strip() for name in classes_file.read_text(encoding="utf-8").splitlines() if name.strip()]
        numbers = sorted({int(label) for label in labels})
        if numbers[0] < 1 or numbers[-1] > len(names):
            raise TopicModelError(
                f"{path}: labels run {numbers[0]}..{numbers[-1]} but {classes_file} names classes 1..{len(names)}"
            )
        labels = [names[int(label) - 1] for label in labels]
    return labels, texts


def analyse(text: str, max_chars: int = MAX_CHARS) -> tuple[list[str], list[str]]:
    """The word 1-2-grams and the character n-grams the model reads from `text` (what scikit-learn is fed).

    The words are those scikit-learn's TfidfVectorizer(ngram_range=(1, 2)) would take with our TOKEN_RE.
    """
    tokens = TOKEN_RE.findall(text[:max_chars].lower())
    words = tokens + [f"{first} {second}" for first, second in zip(tokens, tokens[1:])]
    return words, [ngram for token in tokens for ngram in char_ngrams(token)]


def _already_analysed(terms: list[str]) -> list[str]:
    return terms


@dataclasses.dataclass(frozen=True)
class FittedParts:
    """The scikit-learn side of one training run: both views' vectorisers and the four classifiers."""

    words: Any  # TfidfVectorizer over analyse()'s word terms: sublinear tf, l2 norm
    chars: Any  # TfidfVectorizer over analyse()'s character n-grams: raw counts, l1 norm
    char_scale: float  # the character features are the vectoriser's times this
    classifiers: dict  # COMPONENTS -> fitted ComplementNB or LinearSVC

    @property
    def classes(self) -> list[str]:
        """The labels, in the order of the classifiers' score columns."""
        return [str(label) for label in self.classifiers[COMPONENTS[0]].classes_]

    def scores(self, word_docs: Sequence[list[str]], char_docs: Sequence[list[str]]) -> dict[str, np.ndarray]:
        """Each classifier's raw class scores for analysed texts, computed by scikit-learn."""
        views = {"word": self.words.transform(word_docs), "char": self.chars.transform(char_docs) * self.char_scale}
        result = {}
        for name, classifier in self.classifiers.items():
            weights, intercept = _class_weights(classifier)
            result[name] = np.asarray(views[name.split("_")[0]] @ weights.T) + intercept
        return result


def _class_weights(classifier) -> tuple[np.ndarray, np.ndarray]:
    """(classes x features) weights and (classes,) intercept whose product with a text's features gives its scores."""
    if hasattr(classifier, "feature_log_prob_"):
        # ComplementNB scores a text by X @ feature_log_prob_.T; its class prior only counts with a single class,
        # which training rejects.
        return classifier.feature_log_prob_, np.zeros(len(classifier.classes_))
    coef, intercept = classifier.coef_, classifier.intercept_
    if len(classifier.classes_) == 2:
        # A two-class SVM is one decision function s, for the second class; s and -s are the two classes'
        # one-vs-rest scores.
        return np.vstack([-coef[0], coef[0]]), np.array([-intercept[0], intercept[0]])
    return coef, intercept


def fit_parts(
    word_docs: Sequence[list[str]],
    char_docs: Sequence[list[str]],
    labels: Sequence[str],
    *,
    alpha: float = DEFAULT_ALPHA,
) -> FittedParts:
    """Fit both views' vectorisers and the four classifiers with scikit-learn on analysed texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.naive_bayes import ComplementNB
    from sklearn.svm import LinearSVC

    labels = list(labels)
    words = TfidfVectorizer(analyzer=_already_analysed, sublinear_tf=True, norm="l2", dtype=np.float64)
    chars = TfidfVectorizer(analyzer=_already_analysed, sublinear_tf=False, norm="l1", dtype=np.float64)
    try:
        x_words = words.fit_transform(word_docs)
        x_chars = chars.fit_transform(char_docs)
    except ValueError as err:  # scikit-learn's "empty vocabulary"
        raise TopicModelError(f"training texts have no words: {_one_line(err)}") from None
    # An l1-normalised row of a few hundred n-grams has a tiny l2 norm; scaled to a mean l2 norm of 1 it suits
    # the SVM's C=1 as the word view's l2-normalised rows do (the naive Bayes is indifferent to the scale).
    norms = np.sqrt(np.asarray(x_chars.multiply(x_chars).sum(axis=1)).ravel())
    char_scale = float(1.0 / norms.mean()) if norms.mean() > 0 else 1.0
    x_chars = x_chars * char_scale
    views = {"word": x_words, "char": x_chars}
    classifiers = {}
    for name in COMPONENTS:
        view, kind = name.split("_")
        # random_state fixes liblinear's coordinate-descent order, so training is deterministic.
        classifier = ComplementNB(alpha=alpha) if kind == "nb" else LinearSVC(C=SVM_C, dual=True, random_state=0)
        classifiers[name] = classifier.fit(views[view], labels)
    return FittedParts(words=words, chars=chars, char_scale=char_scale, classifiers=classifiers)


def fit(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    alpha: float = DEFAULT_ALPHA,
    languages: Sequence[str] = ("en",),
    temperature: float = 1.0,
    part_temperatures: Mapping[str, float] | None = None,
    info: dict | None = None,
) -> TopicModel:
    """Fit the model with scikit-learn on all of `texts` and export it as a TopicModel.

    `part_temperatures` (COMPONENTS -> temperature, all 1.0 if omitted) weigh the four classifiers' scores.
    """
    word_docs, char_docs = zip(*(analyse(text) for text in texts)) if texts else ((), ())
    parts = fit_parts(word_docs, char_docs, labels, alpha=alpha)
    return export(parts, part_temperatures=part_temperatures, languages=languages, temperature=temperature, info=info)


def export(
    parts: FittedParts,
    *,
    part_temperatures: Mapping[str, float] | None = None,
    languages: Sequence[str] = ("en",),
    temperature: float = 1.0,
    info: dict | None = None,
) -> TopicModel:
    """A TopicModel whose scores are the sum of each of `parts`' classifiers' scores over its temperature."""
    part_temperatures = dict.fromkeys(COMPONENTS, 1.0) | dict(part_temperatures or {})
    classes = parts.classes
    n_classes = len(classes)

    vocabulary = parts.words.vocabulary_
    unigrams = sorted(term for term in vocabulary if " " not in term)
    word_id = {word: i for i, word in enumerate(unigrams)}
    pairs = sorted(
        (word_id[first], word_id[second]) for first, second in (term.split(" ") for term in vocabulary if " " in term)
    )
    word_columns = [vocabulary[word] for word in unigrams]
    word_columns += [vocabulary[f"{unigrams[a]} {unigrams[b]}"] for a, b in pairs]
    ngrams = sorted(parts.chars.vocabulary_)
    char_columns = [parts.chars.vocabulary_[ngram] for ngram in ngrams]

    coef = np.zeros((n_classes, len(word_columns)))
    char_coef = np.zeros((n_classes, len(char_columns)))
    intercept = np.zeros(n_classes)
    for name, classifier in parts.classifiers.items():
        if [str(label) for label in classifier.classes_] != classes:
            raise TopicModelError(f"classifier {name} has labels {list(classifier.classes_)}, expected {classes}")
        weights, bias = _class_weights(classifier)
        scale = 1.0 / part_temperatures[name]
        if name.startswith("word"):
            coef += scale * weights[:, word_columns]
        else:
            char_coef += scale * weights[:, char_columns]
        intercept += scale * bias
    # A per-feature shift common to all classes (and a shift of all intercepts) leaves the softmax unchanged;
    # removing it keeps the float32 weights small, hence precise.
    coef -= coef.mean(axis=0, keepdims=True)
    char_coef -= char_coef.mean(axis=0, keepdims=True)
    intercept -= intercept.mean()
    return TopicModel(
        labels=tuple(classes),
        languages=tuple(language.lower() for language in languages),
        unigrams=tuple(unigrams),
        bigrams=np.asarray(pairs, dtype=np.int32).reshape(-1, 2),
        idf=parts.words.idf_[word_columns].astype(np.float32),
        coef=coef.astype(np.float32),
        intercept=intercept,
        temperature=float(temperature),
        info=dict(info or {}),
        char_ngrams=tuple(ngrams),
        char_idf=parts.chars.idf_[char_columns].astype(np.float32),
        char_coef=(char_coef * parts.char_scale).astype(np.float32),
    )


@dataclasses.dataclass(frozen=True)
class CrossValidation:
    """What k-fold cross-validation says about a training set."""

    accuracy: float  # of the exported model, the one that ships
    temperature: float  # the final softmax temperature that fits its out-of-fold scores best
    part_temperatures: dict  # COMPONENTS -> the temperature that calibrates that classifier alone
    part_accuracy: dict  # COMPONENTS -> that classifier's own accuracy


def cross_validate(
    texts: Sequence[str], labels: Sequence[str], *, seed: int = 0, folds: int = 5, alpha: float = DEFAULT_ALPHA
) -> CrossValidation:
    """Stratified k-fold accuracy of the exported model, and the temperatures that calibrate it.

    First each fold's classifiers are fitted and their out-of-fold scores give each one's temperature; then
    each fold's classifiers are exported with those temperatures and applied exactly as a shipped model would
    be, so the accuracy is that of what ships; the final temperature minimises the log loss of those scores.
    """
    from sklearn.model_selection import StratifiedKFold

    texts, labels = list(texts), np.asarray(labels)
    classes = np.unique(labels)
    counts = {label: int((labels == label).sum()) for label in classes}
    if len(classes) < 2:
        raise TopicModelError(f"training data needs at least 2 labels, found {len(classes)}")
    if folds < 2 or min(counts.values()) < folds:
        raise TopicModelError(
            f"{folds}-fold cross-validation needs folds >= 2 and at least {folds} rows per "
            f"label; smallest label has {min(counts.values())}"
        )
    word_docs, char_docs = zip(*(analyse(text) for text in texts))
    truth = np.searchsorted(classes, labels)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)

    part_scores = {name: np.zeros((len(texts), len(classes))) for name in COMPONENTS}
    fitted = []
    for train, test in splitter.split(np.zeros(len(labels)), labels):
        parts = fit_parts([word_docs[i] for i in train], [char_docs[i] for i in train], labels[train], alpha=alpha)
        order = [parts.classes.index(label) for label in classes]
        for name, scores in parts.scores([word_docs[i] for i in test], [char_docs[i] for i in test]).items():
            part_scores[name][test] = scores[:, order]
        fitted.append((parts, test))
    part_temperatures = {name: fit_temperature(part_scores[name], truth) for name in COMPONENTS}
    part_accuracy = {name: round(float(np.mean(part_scores[name].argmax(axis=1) == truth)), 6) for name in COMPONENTS}

    scores = np.zeros((len(texts), len(classes)))
    evidence = np.zeros(len(texts), dtype=bool)
    for parts, test in fitted:
        model = export(parts, part_temperatures=part_temperatures)
        order = [model.labels.index(label) for label in classes]
        fold_scores, fold_evidence = model.scores([texts[i] for i in test])
        scores[test] = fold_scores[:, order]
        evidence[test] = fold_evidence
    accuracy = float(np.mean((scores.argmax(axis=1) == truth) & evidence))
    return CrossValidation(
        accuracy=accuracy,
        temperature=fit_temperature(scores[evidence], truth[evidence]),
        part_temperatures=part_temperatures,
        part_accuracy=part_accuracy,
    )


def fit_temperature(scores: np.ndarray, truth: np.ndarray) -> float:
    """The softmax temperature that minimises the log loss of `scores` (texts x classes) for class ids `truth`."""
    from scipy.optimize import minimize_scalar

    if not len(truth):
        return 1.0

    def log_loss(log_t: float) -> float:
        scaled = scores / math.exp(log_t)
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled).sum(axis=1))
        return float(np.mean(log_norm - scaled[np.arange(len(truth)), truth]))

    best = minimize_scalar(log_loss, bounds=(-7.0, 7.0), method="bounded", options={"xatol": 1e-6})
    return round(math.exp(best.x), 6)


def train_from_csv(
    path: str | os.PathLike,
    seed: int = 0,
    folds: int = 5,
    *,
    languages: Sequence[str] = ("en",),
    alpha: float = DEFAULT_ALPHA,
) -> tuple[TopicModel, float]:
    """Train a model on a label,title,text CSV; returns it and its `folds`-fold cross-validated accuracy.

    Deterministic: the same CSV, seed and library versions give the same model file, byte for byte.
    """
    labels, texts = read_training_csv(path)
    return train(texts, labels, seed=seed, folds=folds, languages=languages, alpha=alpha, source=Path(path).name)


def train(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    seed: int = 0,
    folds: int = 5,
    languages: Sequence[str] = ("en",),
    alpha: float = DEFAULT_ALPHA,
    source: str = "",
) -> tuple[TopicModel, float]:
    """Cross-validate, then fit on all of `texts`; returns the model (its `info` saying how it was trained) and its
    `folds`-fold cross-validated accuracy. Deterministic for the same data, seed and library versions."""
    import sklearn

    labels = list(labels)
    validation = cross_validate(texts, labels, seed=seed, folds=folds, alpha=alpha)
    info = {
        "source": source,
        "rows": len(labels),
        "rows_per_label": {label: labels.count(label) for label in sorted(set(labels))},
        "classifier": (
            f"ComplementNB(alpha={alpha}) + LinearSVC(C={SVM_C}) on word 1-2-gram tf-idf and on "
            f"char {CHAR_NGRAMS[0]}-{CHAR_NGRAMS[1]}-gram tf-idf; scores summed over per-classifier "
            f"temperatures, softmax with a final temperature"
        ),
        "part_temperatures": validation.part_temperatures,
        "part_cv_accuracy": validation.part_accuracy,
        "cv_accuracy": round(validation.accuracy, 6),
        "cv_folds": folds,
        "seed": seed,
        "sklearn_version": sklearn.__version__,
    }
    model = fit(
        texts,
        labels,
        alpha=alpha,
        languages=languages,
        temperature=validation.temperature,
        part_temperatures=validation.part_temperatures,
        info=info,
    )
    return model, validation.accuracy


# ---------------------------------------------------------------------------------------------- the file


# The meta fields that change predictions; the checksum covers them and the arrays.
_CHECKED_META = ("version", "features", "max_chars", "labels", "languages", "temperature")


def _digest(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([meta.get(key) for key in _CHECKED_META]).encode())
    for name in _ARRAYS_OF_VERSION[meta["version"]]:
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _strings(strings: Sequence[str]) -> np.ndarray:
    return np.frombuffer("\n".join(strings).encode("utf-8"), dtype=np.uint8)


def _model_arrays(model: TopicModel) -> dict[str, np.ndarray]:
    arrays = {
        "unigrams": _strings(model.unigrams),
        "bigrams": np.ascontiguousarray(model.bigrams, dtype=np.int32),
        "idf": np.ascontiguousarray(model.idf, dtype=np.float32),
        "coef": np.ascontiguousarray(model.coef, dtype=np.float32),
        "intercept": np.ascontiguousarray(model.intercept, dtype=np.float64),
    }
    if model.char_ngrams:
        arrays["char_ngrams"] = _strings(model.char_ngrams)
        arrays["char_idf"] = np.ascontiguousarray(model.char_idf, dtype=np.float32)
        arrays["char_coef"] = np.ascontiguousarray(model.char_coef, dtype=np.float32)
    return arrays


def save_model(model: TopicModel, path: str | os.PathLike) -> Path:
    """Write `model` to `path` (atomically: a reader never sees half a file); returns the path.

    A model with a character view is written as format version 2, a words-only one as version 1.
    """
    path = Path(path)
    arrays = _model_arrays(model)
    version = 2 if model.char_ngrams else 1
    meta = {
        "format": FORMAT_NAME,
        "version": version,
        "features": FEATURES_OF_VERSION[version],
        "max_chars": model.max_chars,
        "labels": list(model.labels),
        "languages": list(model.languages),
        "temperature": model.temperature,
        "training": model.info,
    }
    meta["sha256"] = _digest(meta, arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp_name, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            # Fixed timestamps make the file a pure function of the model.
            archive.writestr(
                zipfile.ZipInfo("meta.json", _ZIP_DATE),
                json.dumps(meta, indent=1, sort_keys=True),
                zipfile.ZIP_DEFLATED,
            )
            for name in _ARRAYS_OF_VERSION[version]:
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, arrays[name], allow_pickle=False)
                archive.writestr(zipfile.ZipInfo(f"{name}.npy", _ZIP_DATE), buffer.getvalue(), zipfile.ZIP_DEFLATED)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


_LOADED: dict[tuple[str, int, int], TopicModel] = {}


def load_model(path: str | os.PathLike = DEFAULT_MODEL_PATH, kind: str = "topic model") -> TopicModel:
    """Read and validate a model file; raises TopicModelError (one line, naming the `kind` of model and the file)
    if unusable. The language detector's pair models are files of this format too."""
    path = Path(path)
    if not path.exists():
        raise TopicModelError(f"{kind} file not found: {path}")
    if not path.is_file():
        raise TopicModelError(f"{kind} {path} is not a file")
    # One read per file and process: the CLI's start-up check, the transform, RunInference and each language
    # detector all ask for the same files (a read with its checks costs about 0.3 s). A changed file is read again.
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    cached = _LOADED.get(key)
    if cached is not None:
        return cached
    try:
        model = _LOADED[key] = _read(path)
        return model
    except TopicModelError as err:
        raise TopicModelError(f"{kind} {path} is unusable: {err}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise TopicModelError(f"{kind} {path} is unusable: damaged archive ({_one_line(err)})") from None
    except (OSError, ValueError, KeyError) as err:
        raise TopicModelError(f"{kind} {path} is unusable: {_one_line(err)}") from None


def _read(path: Path) -> TopicModel:
    if not zipfile.is_zipfile(path):
        raise TopicModelError("not a zip archive (truncated, damaged, or not a newsbeam topic model)")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if "meta.json" not in names:
            raise TopicModelError("not a newsbeam topic model (missing meta.json)")
        meta = json.loads(archive.read("meta.json").decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise TopicModelError(
                f"not a newsbeam topic model (format {meta.get('format')!r})"
                if isinstance(meta, dict)
                else "meta.json is not an object"
            )
        version = meta.get("version")
        known = type(version) is int and version in FEATURES_OF_VERSION
        if not known or meta.get("features") != FEATURES_OF_VERSION[version]:
            raise TopicModelError(
                f"unsupported model version {version!r} / features {meta.get('features')!r}; "
                f"this newsbeam reads versions {', '.join(map(str, FEATURES_OF_VERSION))}"
            )
        missing = [f"{name}.npy" for name in _ARRAYS_OF_VERSION[version] if f"{name}.npy" not in names]
        if missing:
            raise TopicModelError(f"not a newsbeam topic model (missing {', '.join(missing)})")
        arrays = {}
        for name in _ARRAYS_OF_VERSION[version]:
            with archive.open(f"{name}.npy") as member:
                arrays[name] = np.lib.format.read_array(io.BytesIO(member.read()), allow_pickle=False)
    if _digest(meta, arrays) != meta.get("sha256"):
        raise TopicModelError("checksum mismatch (the file is damaged or was edited)")

    labels, languages = meta.get("labels"), meta.get("languages")
    if not (
        isinstance(labels, list)
        and len(labels) >= 2
        and all(isinstance(x, str) and x for x in labels)
        and len(set(labels)) == len(labels)
    ):
        raise TopicModelError("labels must be at least 2 distinct non-empty strings")
    if not (isinstance(languages, list) and all(isinstance(x, str) for x in languages)):
        raise TopicModelError("languages must be a list of strings")
    temperature, max_chars = meta.get("temperature"), meta.get("max_chars")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise TopicModelError(f"bad temperature {temperature!r}")
    if not (isinstance(max_chars, int) and max_chars > 0):
        raise TopicModelError(f"bad max_chars {max_chars!r}")

    unigrams = _decode_strings(arrays["unigrams"])
    bigrams, idf, coef, intercept = arrays["bigrams"], arrays["idf"], arrays["coef"], arrays["intercept"]
    n_features = len(unigrams) + len(bigrams)
    ngrams = _decode_strings(arrays["char_ngrams"]) if version >= 2 else ()
    char_idf, char_coef = arrays.get("char_idf"), arrays.get("char_coef")
    expected = {
        "bigrams": (bigrams.dtype == np.int32 and bigrams.ndim == 2 and bigrams.shape[1] == 2),
        "idf": idf.dtype == np.float32 and idf.shape == (n_features,),
        "coef": coef.dtype == np.float32 and coef.shape == (len(labels), n_features),
        "intercept": intercept.dtype == np.float64 and intercept.shape == (len(labels),),
    }
    if version >= 2:
        expected["char_idf"] = char_idf.dtype == np.float32 and char_idf.shape == (len(ngrams),)
        expected["char_coef"] = char_coef.dtype == np.float32 and char_coef.shape == (len(labels), len(ngrams))
    bad = [name for name, ok in expected.items() if not ok]
    if bad:
        raise TopicModelError(f"arrays of the wrong type or shape: {', '.join(bad)}")
    if len(bigrams) and (bigrams.min() < 0 or bigrams.max() >= len(unigrams)):
        raise TopicModelError("bigrams refer to words outside the vocabulary")
    keys = bigrams[:, 0].astype(np.int64) * len(unigrams) + bigrams[:, 1]
    if len(keys) > 1 and not np.all(keys[1:] > keys[:-1]):
        raise TopicModelError("bigrams are not sorted")
    if version >= 2 and not ngrams:
        raise TopicModelError("no character n-grams")
    weights = [idf, coef, intercept] + ([char_idf, char_coef] if version >= 2 else [])
    if not all(np.isfinite(array).all() for array in weights):
        raise TopicModelError("non-finite weights")
    return TopicModel(
        labels=tuple(labels),
        languages=tuple(languages),
        unigrams=unigrams,
        bigrams=bigrams,
        idf=idf,
        coef=coef,
        intercept=intercept,
        temperature=float(temperature),
        max_chars=max_chars,
        info=meta.get("training") or {},
        char_ngrams=ngrams,
        char_idf=char_idf,
        char_coef=char_coef,
    )


def _decode_strings(array: np.ndarray) -> tuple[str, ...]:
    return tuple(array.tobytes().decode("utf-8").split("\n")) if array.size else ()


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


# ---------------------------------------------------------------------------------------------- RunInference


class TopicModelHandler(ModelHandler[str, PredictionResult, TopicModel]):
    """RunInference handler: texts in, PredictionResult(text, (label, probability)) out.

    Wrap it in `KeyedModelHandler` to carry a key (e.g. the article id) through: (key, text) in,
    (key, PredictionResult) out. RunInference loads the model once per worker process and shares it between
    the process's threads (its `shared.Shared` handle); the model is small, so processes each load their own.
    Batches are large because a batch costs little more than one text: the model is vectorised.
    """

    def __init__(
        self,
        model_path: str | os.PathLike = DEFAULT_MODEL_PATH,
        *,
        min_batch_size: int = 64,
        max_batch_size: int = 2048,
        max_batch_duration_secs: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(
            min_batch_size=min_batch_size,
            max_batch_size=max_batch_size,
            max_batch_duration_secs=max_batch_duration_secs,
            **kwargs,
        )
        self._model_path = str(model_path)

    def load_model(self) -> TopicModel:
        """Load and validate the model file (TopicModelError if it is missing or corrupt)."""
        return load_model(self._model_path)

    def run_inference(
        self, batch: Sequence[str], model: TopicModel, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        """Classify a batch of texts in one vectorised call."""
        labels, probs = model.predict_proba(batch)
        return [
            PredictionResult(text, (label, prob), self._model_path)
            for text, label, prob in zip(batch, labels, probs.tolist())
        ]

    def get_num_bytes(self, batch: Sequence[str]) -> int:
        """Approximate size of a batch (the default pickles the whole batch just to measure it)."""
        return sum(len(text) for text in batch)

    def get_metrics_namespace(self) -> str:
        """Namespace of RunInference's own metrics (inference counts, batch latency)."""
        return "topic_model"

    def update_model_path(self, model_path: str | None = None):
        """Point at a new model file (RunInference's model-update side input)."""
        self._model_path = model_path or self._model_path
