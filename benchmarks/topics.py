"""Accuracy and speed of the topic classifier (transforms/topic_model.py).

Prints the 5-fold cross-validated accuracy of the shipped model's recipe on a training CSV next to a
tf-idf + naive Bayes baseline, whether retraining reproduces the shipped model file byte for byte,
inference speed on one core (median of 3) both bare and through RunInference in a DirectRunner pipeline,
and the model file's size. `--compare` adds the other classifiers that were tried (slow: about 5 minutes).

    python benchmarks/topics.py [TRAIN_CSV] [--model MODEL] [--articles N] [--compare]

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

from transforms.topic_model import (  # noqa: E402
    DEFAULT_MODEL_PATH,
    TOKEN_RE,
    TopicModelHandler,
    load_model,
    read_training_csv,
    save_model,
    train_from_csv,
)

DEFAULT_CSV = REPO / ".." / "shared" / "data" / "agnews-train" / "train.csv"


def cv_accuracy(make_pipeline, texts, labels, seed=0, folds=5):
    """Mean accuracy of a fresh scikit-learn pipeline over stratified folds (the same folds as training)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(make_pipeline(), texts, labels, cv=splitter)))


def comparisons():
    """The baseline and the alternatives tried, as (name, pipeline factory, run only with --compare)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import ComplementNB, MultinomialNB
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.svm import LinearSVC

    def words():
        return TfidfVectorizer(token_pattern=TOKEN_RE.pattern, ngram_range=(1, 2), sublinear_tf=True)

    def chars():
        return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)

    return [
        ("baseline: tf-idf words + MultinomialNB", lambda: make_pipeline(TfidfVectorizer(), MultinomialNB()), False),
        ("tf-idf word 1-2g + ComplementNB(0.1)", lambda: make_pipeline(words(), ComplementNB(alpha=0.1)), True),
        ("tf-idf word 1-2g + ComplementNB(1.0)", lambda: make_pipeline(words(), ComplementNB(alpha=1.0)), True),
        ("tf-idf word 1-2g + LogisticRegression(C=10)",
         lambda: make_pipeline(words(), LogisticRegression(C=10, max_iter=3000)), True),
        ("tf-idf word 1-2g + calibrated LinearSVC",
         lambda: make_pipeline(words(), CalibratedClassifierCV(LinearSVC(C=1), cv=3)), True),
        ("tf-idf word 1-2g + char_wb 2-5g + ComplementNB(0.3)",
         lambda: make_pipeline(make_union(words(), chars()), ComplementNB(alpha=0.3)), True),
        ("tf-idf word 1-2g + char_wb 2-5g + LinearSVC",
         lambda: make_pipeline(make_union(words(), chars()), LinearSVC(C=1)), True),
    ]


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


def main(argv=None):
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="?", default=str(DEFAULT_CSV))
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH), help="model file to time and to compare with")
    parser.add_argument("--articles", type=int, default=50_000, help="texts per speed run")
    parser.add_argument("--compare", action="store_true", help="also cross-validate the alternatives tried")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)

    labels, texts = read_training_csv(args.csv)
    print(f"training data: {args.csv} ({len(labels)} rows, {len(set(labels))} labels)")

    start = time.perf_counter()
    trained, accuracy = train_from_csv(args.csv)
    print(f"chosen model (tf-idf word 1-2g + ComplementNB(0.3), temperature {trained.temperature}): "
          f"5-fold CV accuracy {accuracy:.4f}  [train+CV {time.perf_counter() - start:.1f}s]")
    for name, make, slow in comparisons():
        if slow and not args.compare:
            continue
        start = time.perf_counter()
        print(f"{name}: 5-fold CV accuracy {cv_accuracy(make, texts, labels):.4f}  "
              f"[{time.perf_counter() - start:.1f}s]")

    with tempfile.TemporaryDirectory() as tmp:
        retrained = save_model(trained, Path(tmp) / "model.npz").read_bytes()
    shipped = Path(args.model).read_bytes()
    same = hashlib.sha256(retrained).digest() == hashlib.sha256(shipped).digest()
    print(f"retraining reproduces {args.model}: {'yes, byte for byte' if same else 'NO'}")

    model = load_model(args.model)
    sample = [texts[i % len(texts)] for i in range(args.articles)]
    batch = 256
    bare = median_rate(lambda: [model.predict_proba(sample[i:i + batch]) for i in range(0, len(sample), batch)],
                       len(sample))
    print(f"inference, bare predict_proba (batches of {batch}): {bare:,.0f} articles/s (one core, median of 3)")
    articles = args.articles - args.articles % 1000
    whole = median_rate(lambda: pipeline_run(args.csv, args.model, articles), articles)
    empty = median_rate(lambda: pipeline_run(args.csv, args.model, articles, with_inference=False), articles)
    stage = 1 / (1 / whole - 1 / empty)
    print(f"inference through RunInference in a DirectRunner pipeline (one worker, median of 3): "
          f"{whole:,.0f} articles/s for the whole pipeline (source + RunInference + count; "
          f"{empty:,.0f}/s without RunInference), so {stage:,.0f} articles/s for the RunInference stage")
    print(f"model file: {args.model} {os.path.getsize(args.model) / 1e6:.2f} MB, "
          f"{model.n_features:,} features, labels {list(model.labels)}, languages {list(model.languages)}")


if __name__ == "__main__":
    main()
