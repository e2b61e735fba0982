"""The training commands: `newsbeam train-topics` (a topic model) and `newsbeam train-language-pair` (a model that
tells two close languages apart). Both need the `train` extra (scikit-learn); the workers that use the models do not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def train_topics_command(args: argparse.Namespace) -> int:
    """`newsbeam train-topics`: train, report cross-validated accuracy, save. Returns the exit status."""
    from transforms.topic_model import train_from_csv

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
    from transforms.language import read_sentences, train_pair_model

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
    from transforms.topic_model import TopicModelError, save_model

    try:
        import sklearn  # noqa: F401  (workers do not need it, so it is an extra)
    except ImportError:
        print("newsbeam: error: training needs scikit-learn: pip install 'newsbeam[train]'", file=sys.stderr)
        return None
    try:
        model, accuracy = train()
    except (OSError, ValueError, TopicModelError) as err:
        print(f"newsbeam: error: {args.data}: {err}", file=sys.stderr)
        return None
    return model, accuracy, save_model(model, args.out)
