"""The learned topic classifier: training, a portable model file, and a RunInference model handler.

The model is a bag of words and word pairs (tf-idf, word 1-2-grams, sublinear tf, l2 norm) fed to a linear
classifier, Complement Naive Bayes, whose scores are turned into probabilities by a softmax with one
temperature fitted on cross-validated predictions, so that `topic_score` is a calibrated probability.
scikit-learn fits it (`train_from_csv`); the fitted vectoriser and classifier are then exported to a file of
plain arrays (`save_model`) and applied by numpy/scipy code here (`TopicModel.predict_proba`) that reproduces
the scikit-learn pipeline's probabilities to float32 precision (the precision topic_score is stored at).
So a shipped model never depends on the scikit-learn version, loading it runs no pickled code, and the
pipeline's workers need only numpy and scipy.

The model file is a zip archive (so `numpy.load` can read its arrays too) written byte for byte the same
by the same training run: `meta.json` (format, version, labels, languages, temperature, training facts and a
sha256 of the arrays) and `.npy` arrays: `unigrams` (the words, newline-joined UTF-8), `bigrams` (pairs of
unigram ids, sorted), `idf`, `coef` (classes x features) and `intercept`.

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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import scipy.sparse as sp
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "agnews-topics.npz"

FORMAT_NAME = "newsbeam-topic-model"
FORMAT_VERSION = 1
FEATURES = "tfidf-word-1-2gram-sublinear-l2"

# scikit-learn's default token pattern: runs of two or more word characters, lowercased first.
TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")

# Only the start of a long article is read: a news text states its subject early, and this bounds the cost
# of a huge body. AG News rows (title + description) are far shorter, so training never cuts.
MAX_CHARS = 2000

# Chosen from {0.1, 0.3, 1.0} by 5-fold CV on AG News (0.885, 0.888, 0.885); see benchmarks/topics.py.
DEFAULT_ALPHA = 0.3

# Predictions for a text that contains none of the model's words: no evidence, so no label.
NO_LABEL = ""

_ARRAYS = ("unigrams", "bigrams", "idf", "coef", "intercept")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class TopicModelError(ValueError):
    """A topic model file, or the data to train one, is unusable; the message is one line naming the file."""


def topic_text(title: str, text: str) -> str:
    """The text the model reads for an article: its title, then its body."""
    return f"{title}\n{text}" if title and text else title or text


class _Vocabulary(dict):
    """Word -> feature id, -1 for an unknown word (lets a C-level map() look words up)."""

    def __missing__(self, word: str) -> int:
        return -1


@dataclasses.dataclass(frozen=True, eq=False)
class TopicModel:
    """A trained topic classifier. Immutable and thread-safe: one instance serves every thread of a worker."""

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

    def __post_init__(self):
        vocabulary = _Vocabulary((word, i) for i, word in enumerate(self.unigrams))
        n_words = len(self.unigrams)
        bigram_keys = self.bigrams[:, 0].astype(np.int64) * n_words + self.bigrams[:, 1]
        # Derived lookup tables; computed once here so predict_proba is only array work.
        object.__setattr__(self, "_vocabulary", vocabulary)
        object.__setattr__(self, "_bigram_keys", bigram_keys)
        object.__setattr__(self, "_idf64", self.idf.astype(np.float64))
        object.__setattr__(self, "_coef_t", np.ascontiguousarray(self.coef.T, dtype=np.float64))

    @property
    def n_features(self) -> int:
        """Number of features (unigrams + bigrams)."""
        return len(self.unigrams) + len(self.bigrams)

    def applies_to(self, language: str) -> bool:
        """Whether the model was trained on `language` (an ISO 639-1 code such as "en"; "en-GB" counts as "en")."""
        return language.split("-")[0].lower() in self.languages

    def features(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The tf-idf matrix of `texts`, as scikit-learn's TfidfVectorizer would give (columns in our order)."""
        n_docs = len(texts)
        n_words = len(self.unigrams)
        n_features = self.n_features
        tokens = [TOKEN_RE.findall(text[: self.max_chars].lower()) for text in texts]
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=n_docs)
        ids = np.fromiter(map(self._vocabulary.__getitem__, itertools.chain.from_iterable(tokens)),
                          dtype=np.int64, count=int(lengths.sum()))
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

    def scores(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Raw class scores (before temperature and softmax) and whether each text had any known feature."""
        matrix = self.features(texts)
        return matrix @ self._coef_t + self.intercept, np.diff(matrix.indptr) > 0

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
            raise TopicModelError(f"{path}: labels run {numbers[0]}..{numbers[-1]} but {classes_file} "
                                  f"names classes 1..{len(names)}")
        labels = [names[int(label) - 1] for label in labels]
    return labels, texts


def fit(texts: Sequence[str], labels: Sequence[str], *, alpha: float = DEFAULT_ALPHA,
        languages: Sequence[str] = ("en",), temperature: float = 1.0, info: Optional[dict] = None) -> TopicModel:
    """Fit the vectoriser and classifier with scikit-learn on all of `texts` and export them as a TopicModel."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.naive_bayes import ComplementNB

    vectorizer = TfidfVectorizer(lowercase=True, token_pattern=TOKEN_RE.pattern, ngram_range=(1, 2),
                                 sublinear_tf=True, norm="l2", dtype=np.float64)
    matrix = vectorizer.fit_transform([text[:MAX_CHARS] for text in texts])
    classifier = ComplementNB(alpha=alpha).fit(matrix, list(labels))
    return export(vectorizer, classifier, languages=languages, temperature=temperature, info=info)


def export(vectorizer, classifier, *, languages: Sequence[str], temperature: float = 1.0,
           info: Optional[dict] = None) -> TopicModel:
    """A TopicModel equal to a fitted TfidfVectorizer (word 1-2-grams) followed by a fitted ComplementNB."""
    vocabulary = vectorizer.vocabulary_
    unigrams = sorted(term for term in vocabulary if " " not in term)
    word_id = {word: i for i, word in enumerate(unigrams)}
    pairs = sorted((word_id[first], word_id[second])
                   for first, second in (term.split(" ") for term in vocabulary if " " in term))
    columns = [vocabulary[word] for word in unigrams]
    columns += [vocabulary[f"{unigrams[a]} {unigrams[b]}"] for a, b in pairs]
    # ComplementNB scores a text by X @ feature_log_prob_.T; its class prior only counts with a single class,
    # which training rejects, so the intercept is zero (kept in the format for other linear classifiers).
    weights = classifier.feature_log_prob_[:, columns]
    intercept = np.zeros(len(classifier.classes_))
    # A per-feature shift common to all classes leaves the softmax unchanged; removing it keeps the float32
    # weights small, hence precise.
    weights = weights - weights.mean(axis=0, keepdims=True)
    return TopicModel(
        labels=tuple(str(label) for label in classifier.classes_),
        languages=tuple(language.lower() for language in languages),
        unigrams=tuple(unigrams),
        bigrams=np.asarray(pairs, dtype=np.int32).reshape(-1, 2),
        idf=vectorizer.idf_[columns].astype(np.float32),
        coef=weights.astype(np.float32),
        intercept=np.asarray(intercept, dtype=np.float64),
        temperature=float(temperature),
        info=dict(info or {}),
    )


def cross_validate(texts: Sequence[str], labels: Sequence[str], *, seed: int = 0, folds: int = 5,
                   alpha: float = DEFAULT_ALPHA) -> tuple[float, float]:
    """Stratified k-fold accuracy of the exported model, and the softmax temperature that fits it best.

    Each fold's model is exported and applied exactly as a shipped one would be, so the figure is the
    accuracy of what ships; the temperature minimises the log loss of the out-of-fold scores.
    """
    from sklearn.model_selection import StratifiedKFold

    texts, labels = list(texts), np.asarray(labels)
    classes = np.unique(labels)
    counts = {label: int((labels == label).sum()) for label in classes}
    if len(classes) < 2:
        raise TopicModelError(f"training data needs at least 2 labels, found {len(classes)}")
    if folds < 2 or min(counts.values()) < folds:
        raise TopicModelError(f"{folds}-fold cross-validation needs folds >= 2 and at least {folds} rows per "
                              f"label; smallest label has {min(counts.values())}")
    scores = np.zeros((len(texts), len(classes)))
    evidence = np.zeros(len(texts), dtype=bool)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(labels)), labels):
        model = fit([texts[i] for i in train], labels[train], alpha=alpha)
        order = [model.labels.index(label) for label in classes]
        fold_scores, fold_evidence = model.scores([texts[i] for i in test])
        scores[test] = fold_scores[:, order]
        evidence[test] = fold_evidence
    truth = np.searchsorted(classes, labels)
    accuracy = float(np.mean((scores.argmax(axis=1) == truth) & evidence))
    return accuracy, _fit_temperature(scores[evidence], truth[evidence])


def _fit_temperature(scores: np.ndarray, truth: np.ndarray) -> float:
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


def train_from_csv(path: str | os.PathLike, seed: int = 0, folds: int = 5, *,
                   languages: Sequence[str] = ("en",), alpha: float = DEFAULT_ALPHA) -> tuple[TopicModel, float]:
    """Train a model on a label,title,text CSV; returns it and its `folds`-fold cross-validated accuracy.

    Deterministic: the same CSV, seed and library versions give the same model file, byte for byte.
    """
    import sklearn

    labels, texts = read_training_csv(path)
    accuracy, temperature = cross_validate(texts, labels, seed=seed, folds=folds, alpha=alpha)
    info = {
        "source": Path(path).name,
        "rows": len(labels),
        "rows_per_label": {label: labels.count(label) for label in sorted(set(labels))},
        "classifier": f"ComplementNB(alpha={alpha}) with softmax temperature",
        "cv_accuracy": round(accuracy, 6),
        "cv_folds": folds,
        "seed": seed,
        "sklearn_version": sklearn.__version__,
    }
    model = fit(texts, labels, alpha=alpha, languages=languages, temperature=temperature, info=info)
    return model, accuracy


# ---------------------------------------------------------------------------------------------- the file


# The meta fields that change predictions; the checksum covers them and the arrays.
_CHECKED_META = ("version", "features", "max_chars", "labels", "languages", "temperature")


def _digest(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([meta.get(key) for key in _CHECKED_META]).encode())
    for name in _ARRAYS:
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _model_arrays(model: TopicModel) -> dict[str, np.ndarray]:
    return {
        "unigrams": np.frombuffer("\n".join(model.unigrams).encode("utf-8"), dtype=np.uint8),
        "bigrams": np.ascontiguousarray(model.bigrams, dtype=np.int32),
        "idf": np.ascontiguousarray(model.idf, dtype=np.float32),
        "coef": np.ascontiguousarray(model.coef, dtype=np.float32),
        "intercept": np.ascontiguousarray(model.intercept, dtype=np.float64),
    }


def save_model(model: TopicModel, path: str | os.PathLike) -> Path:
    """Write `model` to `path` (atomically: a reader never sees half a file); returns the path."""
    path = Path(path)
    arrays = _model_arrays(model)
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "features": FEATURES,
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
            archive.writestr(zipfile.ZipInfo("meta.json", _ZIP_DATE),
                             json.dumps(meta, indent=1, sort_keys=True), zipfile.ZIP_DEFLATED)
            for name in _ARRAYS:
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, arrays[name], allow_pickle=False)
                archive.writestr(zipfile.ZipInfo(f"{name}.npy", _ZIP_DATE), buffer.getvalue(), zipfile.ZIP_DEFLATED)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_model(path: str | os.PathLike = DEFAULT_MODEL_PATH) -> TopicModel:
    """Read and validate a model file; raises TopicModelError (one line, naming the file) if unusable."""
    path = Path(path)
    if not path.exists():
        raise TopicModelError(f"topic model file not found: {path}")
    if not path.is_file():
        raise TopicModelError(f"topic model {path} is not a file")
    try:
        return _read(path)
    except TopicModelError as err:
        raise TopicModelError(f"topic model {path} is unusable: {err}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise TopicModelError(f"topic model {path} is unusable: damaged archive ({_one_line(err)})") from None
    except (OSError, ValueError, KeyError) as err:
        raise TopicModelError(f"topic model {path} is unusable: {_one_line(err)}") from None


def _read(path: Path) -> TopicModel:
    if not zipfile.is_zipfile(path):
        raise TopicModelError("not a zip archive (truncated, damaged, or not a newsbeam topic model)")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        missing = [name for name in ("meta.json", *(f"{a}.npy" for a in _ARRAYS)) if name not in names]
        if missing:
            raise TopicModelError(f"not a newsbeam topic model (missing {', '.join(missing)})")
        meta = json.loads(archive.read("meta.json").decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise TopicModelError(f"not a newsbeam topic model (format {meta.get('format')!r})"
                                  if isinstance(meta, dict) else "meta.json is not an object")
        if meta.get("version") != FORMAT_VERSION or meta.get("features") != FEATURES:
            raise TopicModelError(f"unsupported model version {meta.get('version')!r} / features "
                                  f"{meta.get('features')!r}; this newsbeam reads version {FORMAT_VERSION}")
        arrays = {}
        for name in _ARRAYS:
            with archive.open(f"{name}.npy") as member:
                arrays[name] = np.lib.format.read_array(io.BytesIO(member.read()), allow_pickle=False)
    if _digest(meta, arrays) != meta.get("sha256"):
        raise TopicModelError("checksum mismatch (the file is damaged or was edited)")

    labels, languages = meta.get("labels"), meta.get("languages")
    if not (isinstance(labels, list) and len(labels) >= 2 and all(isinstance(x, str) and x for x in labels)
            and len(set(labels)) == len(labels)):
        raise TopicModelError("labels must be at least 2 distinct non-empty strings")
    if not (isinstance(languages, list) and all(isinstance(x, str) for x in languages)):
        raise TopicModelError("languages must be a list of strings")
    temperature, max_chars = meta.get("temperature"), meta.get("max_chars")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise TopicModelError(f"bad temperature {temperature!r}")
    if not (isinstance(max_chars, int) and max_chars > 0):
        raise TopicModelError(f"bad max_chars {max_chars!r}")

    unigrams = tuple(arrays["unigrams"].tobytes().decode("utf-8").split("\n")) if arrays["unigrams"].size else ()
    bigrams, idf, coef, intercept = arrays["bigrams"], arrays["idf"], arrays["coef"], arrays["intercept"]
    n_features = len(unigrams) + len(bigrams)
    expected = {
        "bigrams": (bigrams.dtype == np.int32 and bigrams.ndim == 2 and bigrams.shape[1] == 2),
        "idf": idf.dtype == np.float32 and idf.shape == (n_features,),
        "coef": coef.dtype == np.float32 and coef.shape == (len(labels), n_features),
        "intercept": intercept.dtype == np.float64 and intercept.shape == (len(labels),),
    }
    bad = [name for name, ok in expected.items() if not ok]
    if bad:
        raise TopicModelError(f"arrays of the wrong type or shape: {', '.join(bad)}")
    if len(bigrams) and (bigrams.min() < 0 or bigrams.max() >= len(unigrams)):
        raise TopicModelError("bigrams refer to words outside the vocabulary")
    keys = bigrams[:, 0].astype(np.int64) * len(unigrams) + bigrams[:, 1]
    if len(keys) > 1 and not np.all(keys[1:] > keys[:-1]):
        raise TopicModelError("bigrams are not sorted")
    if not (np.isfinite(idf).all() and np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise TopicModelError("non-finite weights")
    return TopicModel(labels=tuple(labels), languages=tuple(languages), unigrams=unigrams, bigrams=bigrams,
                      idf=idf, coef=coef, intercept=intercept, temperature=float(temperature),
                      max_chars=max_chars, info=meta.get("training") or {})


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

    def __init__(self, model_path: str | os.PathLike = DEFAULT_MODEL_PATH, *, min_batch_size: int = 64,
                 max_batch_size: int = 2048, max_batch_duration_secs: Optional[int] = None, **kwargs: Any):
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size,
                         max_batch_duration_secs=max_batch_duration_secs, **kwargs)
        self._model_path = str(model_path)

    def load_model(self) -> TopicModel:
        """Load and validate the model file (TopicModelError if it is missing or corrupt)."""
        return load_model(self._model_path)

    def run_inference(self, batch: Sequence[str], model: TopicModel,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        """Classify a batch of texts in one vectorised call."""
        labels, probs = model.predict_proba(batch)
        return [PredictionResult(text, (label, prob), self._model_path)
                for text, label, prob in zip(batch, labels, probs.tolist())]

    def get_num_bytes(self, batch: Sequence[str]) -> int:
        """Approximate size of a batch (the default pickles the whole batch just to measure it)."""
        return sum(len(text) for text in batch)

    def get_metrics_namespace(self) -> str:
        """Namespace of RunInference's own metrics (inference counts, batch latency)."""
        return "topic_model"

    def update_model_path(self, model_path: Optional[str] = None):
        """Point at a new model file (RunInference's model-update side input)."""
        self._model_path = model_path or self._model_path
