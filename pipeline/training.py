"""Training the text classifiers with scikit-learn, and the commands that do it: `newsbeam train-topics` (a topic
model) and `newsbeam train-language-pair` (a model that tells two close languages apart).

Only the driver trains; workers load the exported files (`transforms/classifier_file.py`) and need no
scikit-learn, which is the `train` extra. See `transforms/text_classifier.py` for the model itself.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transforms.classifier_file import save_model
from transforms.language import DEFAULT_LANGUAGES
from transforms.language_backends import normalize_code
from transforms.text_classifier import (
    CHAR_NGRAMS,
    MAX_CHARS,
    TOKEN_RE,
    ClassifierError,
    TextClassifier,
    char_ngrams,
    one_line,
)
from transforms.topic_model import topic_text

# Chosen from {0.1, 0.3, 1.0} by 5-fold CV on AG News for the word-only model (0.885, 0.888, 0.885) and kept
# for both views rather than tuned again; see benchmarks/topics.py.
DEFAULT_ALPHA = 0.3

# The SVMs' regularisation: scikit-learn's default, not tuned (features are l2-normalised or scaled to a mean
# l2 norm of 1, which is what C=1 suits).
SVM_C = 1.0

# The four classifiers, in the order their temperatures are listed.
COMPONENTS = ("word_nb", "word_svm", "char_nb", "char_svm")


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
        raise ClassifierError(f"training data not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ClassifierError(f"cannot read training data {path}: {one_line(err)}") from None

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
            raise ClassifierError(f"{path}:{line}: expected 3 columns label,title,text, found {len(row)}")
        label, title, text = (cell.strip() for cell in row)
        if not label:
            raise ClassifierError(f"{path}:{line}: empty label")
        labels.append(label)
        # AG News marks line breaks with a backslash; TOKEN_RE splits on it like on any non-word character.
        texts.append(topic_text(title, text))
    if not labels:
        raise ClassifierError(f"training data {path} has no rows")

    classes_file = path.with_name("classes.txt")
    if classes_file.is_file() and all(label.isdigit() for label in labels):
        names = [name.strip() for name in classes_file.read_text(encoding="utf-8").splitlines() if name.strip()]
        numbers = sorted({int(label) for label in labels})
        if numbers[0] < 1 or numbers[-1] > len(names):
            raise ClassifierError(
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
        raise ClassifierError(f"training texts have no words: {one_line(err)}") from None
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
) -> TextClassifier:
    """Fit the model with scikit-learn on all of `texts` and export it as a TextClassifier.

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
) -> TextClassifier:
    """A TextClassifier whose scores are the sum of each of `parts`' classifiers' scores over its temperature."""
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
            raise ClassifierError(f"classifier {name} has labels {list(classifier.classes_)}, expected {classes}")
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
    return TextClassifier(
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
        raise ClassifierError(f"training data needs at least 2 labels, found {len(classes)}")
    if folds < 2 or min(counts.values()) < folds:
        raise ClassifierError(
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
) -> tuple[TextClassifier, float]:
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
) -> tuple[TextClassifier, float]:
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


def read_sentences(directory: str | Path, languages: Sequence[str]) -> tuple[list[str], list[str]]:
    """Sentences and their language codes from `<directory>/<code>.txt` files (one sentence per line, UTF-8)."""
    texts, labels = [], []
    for code in (code for lang in languages for code in normalize_code(lang)):
        path = Path(directory) / f"{code}.txt"
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except OSError as err:
            raise ValueError(f"cannot read {path}: {err.strerror or err}") from None
        sentences = [line for line in lines if line]
        texts += sentences
        labels += [code] * len(sentences)
    return texts, labels


def train_pair_model(texts: Sequence[str], labels: Sequence[str], *, seed: int = 0, folds: int = 5, source: str = ""):
    """Train a pair model on sentences of two (or more) close languages, `labels` being their codes.

    Returns (model, cross-validated accuracy between the languages). The model is the topic classifier's
    recipe (word and character n-grams, naive Bayes and linear SVM; see transforms/text_classifier.py) with the
    language codes as labels; deterministic for the same data, seed and library versions.
    """
    languages = sorted(set(labels))
    unknown = set(languages) - set(DEFAULT_LANGUAGES)
    if len(languages) < 2 or unknown:
        raise ValueError(f"a pair model needs at least two of the 75 language codes; got {', '.join(languages)}")
    return train(texts, labels, seed=seed, folds=folds, languages=languages, source=source)


# The commands.


def train_topics_command(args: argparse.Namespace) -> int:
    """`newsbeam train-topics`: train, report cross-validated accuracy, save. Returns the exit status."""
    trained = _train_and_save(
        args,
        lambda: train_from_csv(args.data, seed=args.seed, folds=args.folds, languages=tuple(args.language or ["en"])),
    )
    if trained is None:
        return 2
    model, accuracy, path = trained
    print(f"{args.folds}-fold cross-validated accuracy: {accuracy:.4f}")
    print(f"wrote {path} (labels: {', '.join(model.labels)}; languages: {', '.join(model.languages)})")
    return 0


def train_language_pair_command(args: argparse.Namespace) -> int:
    """`newsbeam train-language-pair`: train, report cross-validated accuracy, save. Returns the exit status."""

    def train():
        texts, labels = read_sentences(args.data, args.languages.split(","))
        return train_pair_model(texts, labels, seed=args.seed, folds=args.folds, source=Path(args.data).name)

    trained = _train_and_save(args, train)
    if trained is None:
        return 2
    model, accuracy, path = trained
    print(f"{args.folds}-fold cross-validated accuracy between {', '.join(model.labels)}: {accuracy:.4f}")
    print(f"wrote {path}")
    return 0


def _train_and_save(args: argparse.Namespace, train):
    """(model, cross-validated accuracy, path written) from `train()` saved to `args.out`; None after printing a
    one-line error when the training data is unusable."""
    try:
        import sklearn  # noqa: F401  (workers do not need it, so it is an extra)
    except ImportError:
        print("newsbeam: error: training needs scikit-learn: pip install 'newsbeam[train]'", file=sys.stderr)
        return None
    try:
        model, accuracy = train()
    except (OSError, ValueError, ClassifierError) as err:
        print(f"newsbeam: error: {args.data}: {err}", file=sys.stderr)
        return None
    return model, accuracy, save_model(model, args.out)
