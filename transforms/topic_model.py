"""The topic model: the bundled AG News classifier and the RunInference handler that applies a topic model.

A topic model is a `transforms.text_classifier.TextClassifier` whose labels are topics. The default, trained on
AG News (World, Sports, Business, Sci/Tech; English), ships as `DEFAULT_MODEL_PATH`; train another with

    newsbeam train-topics --data labelled.csv --out model.npz

where the CSV's rows are label,title,text (AG News' own train.csv included).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from transforms.classifier_file import load_model
from transforms.text_classifier import TextClassifier

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "agnews-topics.npz"


def topic_text(title: str, text: str) -> str:
    """The text the model reads for an article: its title, then its body."""
    return f"{title}\n{text}" if title and text else title or text


def load_topic_model(path: str | os.PathLike = DEFAULT_MODEL_PATH) -> TextClassifier:
    """Read and validate a topic model file (ClassifierError, naming the file, if it is unusable)."""
    return load_model(path, kind="topic model")


class TopicModelHandler(ModelHandler[str, PredictionResult, TextClassifier]):
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

    def load_model(self) -> TextClassifier:
        """Load and validate the model file (ClassifierError if it is missing or corrupt)."""
        return load_topic_model(self._model_path)

    def run_inference(
        self, batch: Sequence[str], model: TextClassifier, inference_args: dict[str, Any] | None = None
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
