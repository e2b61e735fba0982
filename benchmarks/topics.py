"""Accuracy and speed of the topic classifier (transforms/text_classifier.py, transforms/topic_model.py).

Prints the 5-fold cross-validated accuracy of the shipped model's recipe on a training CSV, with each of its
four classifiers' own accuracy and a tf-idf + naive Bayes baseline, whether retraining reproduces the shipped
model file byte for byte, inference speed on one core (median of 3) both bare (on the training texts, and on
rows a model fit without them has never seen, so that unseen words take the character n-gram path) and
through RunInference in a DirectRunner pipeline, and the model file's size. `--compare` adds the other
models that were tried and the ensemble's ablations (slow: about 4 minutes). `--learning-curve` instead
cross-validates the recipe with 2, 5, 10 and 20 folds (training on 1/2 to 19/20 of the rows) for two fold seeds
and extends the curve, log-linear in the number of training rows, to a model trained on all of them, which is
what ships: an estimate of its accuracy on unseen rows of the same kind (about 7 minutes).

    python benchmarks/topics.py [TRAIN_CSV] [--model MODEL] [--articles N] [--compare | --learning-curve]

TRAIN_CSV defaults to ../shared/data/agnews-train/train.csv relative to the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402

from pipeline.training import (  # noqa: E402
    COMPONENTS,
    analyse,
    cross_validate,
    fit,
    fit_parts,
    fit_temperature,
    read_training_csv,
    train_from_csv,
)
from transforms import text_classifier  # noqa: E402
from transforms.classifier_file import load_model, save_model  # noqa: E402
from transforms.text_classifier import TOKEN_RE  # noqa: E402
from transforms.topic_model import DEFAULT_MODEL_PATH, TopicModelHandler  # noqa: E402

DEFAULT_CSV = REPO / ".." / "shared" / "data" / "agnews-train" / "train.csv"


def cv_accuracy(make_pipeline, texts, labels, seed=0, folds=5):
    """Mean accuracy of a fresh scikit-learn pipeline over stratified folds (the same folds as training)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(make_pipeline(), texts, labels, cv=splitter)))


def title_twice(texts):
    """Title up-weighting: each text's first line (its title, see topic_text) repeated."""
    return [f"{title}\n{title}\n{body}" if body else title for title, _, body in (t.partition("\n") for t in texts)]


class NBSVM(ClassifierMixin, BaseEstimator):
    """NB-SVM / NB-LR (Wang and Manning 2012) for several classes: one-vs-rest, each class with its own
    log-count ratio r scaling binarised features; the SVM's weights interpolated towards their mean (beta)."""

    def __init__(self, C=1.0, beta=0.25, alpha=1.0, logistic=False):
        self.C, self.beta, self.alpha, self.logistic = C, beta, alpha, logistic

    def fit(self, x, y):
        from sklearn.linear_model import LogisticRegression
        from sklearn.svm import LinearSVC

        x, y = (x > 0).astype(np.float64).tocsr(), np.asarray(y)
        self.classes_, self.parts_ = np.unique(y), []
        for label in self.classes_:
            p = self.alpha + np.asarray(x[y == label].sum(axis=0)).ravel()
            q = self.alpha + np.asarray(x[y != label].sum(axis=0)).ravel()
            r = np.log(p / p.sum()) - np.log(q / q.sum())
            model = (
                LogisticRegression(C=self.C, max_iter=5000) if self.logistic else LinearSVC(C=self.C, random_state=0)
            ).fit(x.multiply(r).tocsr(), y == label)
            w = model.coef_.ravel()
            if not self.logistic:
                w = (1 - self.beta) * np.abs(w).mean() + self.beta * w
            self.parts_.append((r, w, model.intercept_[0]))
        return self

    def predict(self, x):
        x = (x > 0).astype(np.float64).tocsr()
        scores = np.column_stack([x.multiply(r).tocsr() @ w + b for r, w, b in self.parts_])
        return self.classes_[scores.argmax(axis=1)]


def comparisons():
    """The baseline and the alternatives tried, as (name, pipeline factory, run only with --compare)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import ComplementNB, MultinomialNB
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.svm import LinearSVC

    def words(**kwargs):
        return TfidfVectorizer(token_pattern=TOKEN_RE.pattern, ngram_range=(1, 2), sublinear_tf=True, **kwargs)

    def chars():
        return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)

    def binary_words():
        return CountVectorizer(token_pattern=TOKEN_RE.pattern, ngram_range=(1, 2), binary=True)

    return [
        ("baseline: tf-idf words + MultinomialNB", lambda: make_pipeline(TfidfVectorizer(), MultinomialNB()), False),
        ("tf-idf word 1-2g + ComplementNB(0.1)", lambda: make_pipeline(words(), ComplementNB(alpha=0.1)), True),
        ("tf-idf word 1-2g + ComplementNB(1.0)", lambda: make_pipeline(words(), ComplementNB(alpha=1.0)), True),
        (
            "tf-idf word 1-2g min_df=2 + ComplementNB(0.3)",
            lambda: make_pipeline(words(min_df=2), ComplementNB(alpha=0.3)),
            True,
        ),
        (
            "title twice + tf-idf word 1-2g + ComplementNB(0.3)",
            lambda: make_pipeline(FunctionTransformer(title_twice), words(), ComplementNB(alpha=0.3)),
            True,
        ),
        (
            "title twice + tf-idf word 1-2g + LinearSVC",
            lambda: make_pipeline(FunctionTransformer(title_twice), words(), LinearSVC(C=1, random_state=0)),
            True,
        ),
        (
            "tf-idf word 1-2g + LogisticRegression(C=10)",
            lambda: make_pipeline(words(), LogisticRegression(C=10, max_iter=3000)),
            True,
        ),
        (
            "tf-idf word 1-2g + calibrated LinearSVC",
            lambda: make_pipeline(words(), CalibratedClassifierCV(LinearSVC(C=1), cv=3)),
            True,
        ),
        (
            "NB-SVM (Wang & Manning; binary word 1-2g, one-vs-rest, C=1, beta=0.25)",
            lambda: make_pipeline(binary_words(), NBSVM()),
            True,
        ),
        (
            "NB-LR (binary word 1-2g, one-vs-rest logistic regression, C=1)",
            lambda: make_pipeline(binary_words(), NBSVM(logistic=True)),
            True,
        ),
        (
            "tf-idf word 1-2g + char_wb 2-5g + ComplementNB(0.3)",
            lambda: make_pipeline(make_union(words(), chars()), ComplementNB(alpha=0.3)),
            True,
        ),
        (
            "tf-idf word 1-2g + char_wb 2-5g + LinearSVC",
            lambda: make_pipeline(make_union(words(), chars()), LinearSVC(C=1)),
            True,
        ),
    ]


def ablations(texts, labels, seed=0, folds=5):
    """CV accuracy of the shipped recipe's ensemble restricted to subsets of its four classifiers.

    Computed from each classifier's out-of-fold scores as scikit-learn gives them (which the exported model
    reproduces; tests/transforms/test_topic_model.py checks that), each over its own fitted temperature.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    classes = np.unique(labels)
    truth = np.searchsorted(classes, labels)
    word_docs, char_docs = zip(*(analyse(text) for text in texts))
    scores = {name: np.zeros((len(texts), len(classes))) for name in COMPONENTS}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(labels)), labels):
        parts = fit_parts([word_docs[i] for i in train], [char_docs[i] for i in train], labels[train])
        order = [parts.classes.index(label) for label in classes]
        for name, part in parts.scores([word_docs[i] for i in test], [char_docs[i] for i in test]).items():
            scores[name][test] = part[:, order]
    temperatures = {name: fit_temperature(scores[name], truth) for name in COMPONENTS}
    subsets = [
        ("word_nb", "word_svm"),
        ("char_nb", "char_svm"),
        ("word_nb", "char_nb"),
        ("word_svm", "char_svm"),
        ("word_nb", "char_nb", "char_svm"),
        ("word_nb", "word_svm", "char_nb"),
        COMPONENTS,
    ]
    for subset in subsets:
        total = sum(scores[name] / temperatures[name] for name in subset)
        yield " + ".join(subset), float(np.mean(total.argmax(axis=1) == truth))


def median_rate(run, count, repeats=3):
    """Median items/s over `repeats` runs of `run()`, each handling `count` items."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return count / statistics.median(times)


class _KeyedTexts(beam.DoFn):
    """Emits `per_seed` (key, text) pairs per input seed, cycling through the training CSV's texts.

    The texts are read in setup() rather than passed to beam.Create, whose cost (pickling and bz2-compressing
    every element into the pipeline graph, then inferring each one's type) would swamp what is measured.
    """

    def __init__(self, csv_path, per_seed):
        self._csv_path, self._per_seed = csv_path, per_seed
        self._texts = []

    def setup(self):
        self._texts = read_training_csv(self._csv_path)[1]

    def process(self, seed):
        start = seed * self._per_seed
        for i in range(start, start + self._per_seed):
            yield str(i), self._texts[i % len(self._texts)]


def pipeline_run(csv_path, model_path, articles, with_inference=True, per_seed=1000):
    """Source -> [RunInference(KeyedModelHandler(TopicModelHandler))] -> count, on a one-worker DirectRunner."""
    options = PipelineOptions(["--direct_num_workers=1", "--direct_running_mode=in_memory"])
    with beam.Pipeline(options=options) as pipeline:
        keyed = (
            pipeline
            | beam.Create(list(range(articles // per_seed)), reshuffle=False)
            | beam.ParDo(_KeyedTexts(csv_path, per_seed))
        )
        if with_inference:
            keyed = keyed | RunInference(KeyedModelHandler(TopicModelHandler(model_path)))
        _ = keyed | beam.combiners.Count.Globally()


def learning_curve(texts, labels, folds=(2, 5, 10, 20), seeds=(0, 1)):
    """Print CV accuracy against training rows and its log-linear extension to all rows."""
    import numpy as np

    sizes, means = [], []
    for k in folds:
        scores = [cross_validate(texts, labels, seed=seed, folds=k).accuracy for seed in seeds]
        sizes.append(len(texts) * (k - 1) / k)
        means.append(statistics.fmean(scores))
        print(
            f"{k:>2}-fold (trained on {sizes[-1]:,.0f} rows): "
            + ", ".join(f"seed {seed} {score:.4f}" for seed, score in zip(seeds, scores))
            + f"; mean {means[-1]:.4f}"
        )
    slope, intercept = np.polyfit(np.log(sizes), means, 1)
    print(
        f"log-linear fit: accuracy = {intercept:.4f} + {slope:.5f} ln(rows); at all {len(texts):,} rows "
        f"(the shipped model): {intercept + slope * np.log(len(texts)):.4f}"
    )


def main(argv=None):
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="?", default=str(DEFAULT_CSV))
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH), help="model file to time and to compare with")
    parser.add_argument("--articles", type=int, default=50_000, help="texts per speed run")
    parser.add_argument("--compare", action="store_true", help="also cross-validate the alternatives tried")
    parser.add_argument(
        "--learning-curve",
        action="store_true",
        help="only: accuracy against training rows, and the estimate for all of them",
    )
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)

    labels, texts = read_training_csv(args.csv)
    print(f"training data: {args.csv} ({len(labels)} rows, {len(set(labels))} labels)")
    if args.learning_curve:
        learning_curve(texts, labels)
        return

    start = time.perf_counter()
    trained, accuracy = train_from_csv(args.csv)
    print(
        f"chosen model (word 1-2g tf-idf and char 2-5g tf-idf, each into ComplementNB(0.3) and LinearSVC(C=1), "
        f"scores summed over per-classifier temperatures, final temperature {trained.temperature}): "
        f"5-fold CV accuracy {accuracy:.4f}  [train+CV {time.perf_counter() - start:.1f}s]"
    )
    for name in COMPONENTS:
        print(
            f"  its {name} alone: {trained.info['part_cv_accuracy'][name]:.4f} "
            f"(temperature {trained.info['part_temperatures'][name]})"
        )
    for name, make, slow in comparisons():
        if slow and not args.compare:
            continue
        start = time.perf_counter()
        print(
            f"{name}: 5-fold CV accuracy {cv_accuracy(make, texts, labels):.4f}  [{time.perf_counter() - start:.1f}s]"
        )
    if args.compare:
        for name, subset_accuracy in ablations(texts, labels):
            print(f"ensemble of {name} only: 5-fold CV accuracy {subset_accuracy:.4f}")

    with tempfile.TemporaryDirectory() as tmp:
        retrained = save_model(trained, Path(tmp) / "model.npz").read_bytes()
    shipped = Path(args.model).read_bytes()
    same = hashlib.sha256(retrained).digest() == hashlib.sha256(shipped).digest()
    print(f"retraining reproduces {args.model}: {'yes, byte for byte' if same else 'NO'}")

    model = load_model(args.model)
    sample = [texts[i % len(texts)] for i in range(args.articles)]
    batch = 256
    bare = median_rate(
        lambda: [model.predict_proba(sample[i : i + batch]) for i in range(0, len(sample), batch)], len(sample)
    )
    print(f"inference, bare predict_proba (batches of {batch}): {bare:,.0f} articles/s (one core, median of 3)")
    # The training texts hold no unseen word; rows held out of a refit do, as new articles do. With the memo of
    # unseen words' vectors off, every batch works its unseen words out afresh: the slowest case.
    held_out = [i % 5 == 0 for i in range(len(texts))]
    refit = fit(
        [t for t, out in zip(texts, held_out) if not out],
        [y for y, out in zip(labels, held_out) if not out],
        temperature=model.temperature,
        part_temperatures=model.info.get("part_temperatures"),
    )
    unseen = [t for t, out in zip(texts, held_out) if out]
    known = set(refit.unigrams)
    tokens = [token for text in unseen for token in TOKEN_RE.findall(text.lower())]
    unseen_share = sum(token not in known for token in tokens) / len(tokens)
    sample = [unseen[i % len(unseen)] for i in range(args.articles)]
    run = lambda: [refit.predict_proba(sample[i : i + batch]) for i in range(0, len(sample), batch)]  # noqa: E731
    with_memo = median_rate(run, len(sample))
    memo_size, text_classifier._OOV_MEMO_SIZE = text_classifier._OOV_MEMO_SIZE, 0
    try:
        without_memo = median_rate(run, len(sample))
    finally:
        text_classifier._OOV_MEMO_SIZE = memo_size
    print(
        f"inference, bare predict_proba on rows held out of a refit ({unseen_share:.1%} of their words unseen): "
        f"{with_memo:,.0f} articles/s, {without_memo:,.0f} articles/s with the memo of unseen words off"
    )
    articles = args.articles - args.articles % 1000
    whole = median_rate(lambda: pipeline_run(args.csv, args.model, articles), articles)
    empty = median_rate(lambda: pipeline_run(args.csv, args.model, articles, with_inference=False), articles)
    stage = 1 / (1 / whole - 1 / empty)
    print(
        f"inference through RunInference in a DirectRunner pipeline (one worker, median of 3): "
        f"{whole:,.0f} articles/s for the whole pipeline (source + RunInference + count; "
        f"{empty:,.0f}/s without RunInference), so {stage:,.0f} articles/s for the RunInference stage"
    )
    print(
        f"model file: {args.model} {os.path.getsize(args.model) / 1e6:.2f} MB, "
        f"{model.n_features:,} features, labels {list(model.labels)}, languages {list(model.languages)}"
    )


if __name__ == "__main__":
    main()
