"""ClassifyArticles: language, topic and free labels of each article.

Language: `transforms.language.LanguageDetector` (deterministic), built once per worker in `setup()`; the feed's
declared language stands in when the text is too short to judge, and `und` when nothing is known.

Topic, in this order of trust:
1. an entry category the config maps onto the taxonomy (`topic_rules`): score 1.0;
2. the learned model (`transforms.topic_model`, applied with Beam's RunInference, batched, loaded once per worker)
   for articles in a language it was trained on: its probability;
3. the feed's default topic: score 0.5;
4. `unknown`: score 0.0.

Labels: `label_rules` add free labels (the `labels` column) when one of their keywords appears in the title or text
(whole words, case-insensitive) or one of their categories is among the entry's.

    python -m pytest tests/transforms/test_classify.py -q
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from typing import Literal

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.shared import Shared

from transforms.article import Article
from transforms.counters import ARTICLES_CLASSIFIED, counter
from transforms.dead_letter import DEAD_LETTER_TAG, DeadLetter, DeadLetterOutput, Routed, letter_on_error, reject
from transforms.language import LanguageDetector, LanguageSettings, shared_detector
from transforms.text_classifier import NO_LABEL
from transforms.topic_model import DEFAULT_MODEL_PATH, TopicModelHandler, load_topic_model, topic_text


@dataclasses.dataclass(frozen=True)
class TopicRule:
    """Entry categories (case-insensitive) that mean a topic of the taxonomy."""

    topic: str
    categories: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class LabelRule:
    """A free label, added when a keyword (whole word) appears in the title or text, or a category matches."""

    label: str
    keywords: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


DEFAULT_TOPIC_RULES = (
    TopicRule("World", ("world", "international", "world news", "europe", "asia", "africa", "americas", "middle east")),
    TopicRule("Sports", ("sport", "sports", "football", "soccer", "tennis", "cricket", "basketball", "olympics")),
    TopicRule("Business", ("business", "economy", "markets", "finance", "money", "companies")),
    TopicRule("Sci/Tech", ("technology", "tech", "science", "sci/tech", "sci-tech", "space", "internet")),
)


@dataclasses.dataclass(frozen=True)
class ClassifySettings:
    """Language detection, the topic model, and the config's topic and label rules.

    `topic_model`: a model file written by `newsbeam train-topics` ('' = the bundled AG News model; 'none' = no model,
    topics from rules and feed defaults only).
    """

    language: LanguageSettings = LanguageSettings()
    topic_model: str = ""
    topic_rules: tuple[TopicRule, ...] = DEFAULT_TOPIC_RULES
    label_rules: tuple[LabelRule, ...] = ()

    @property
    def model_path(self) -> str:
        """The model file to load, or '' for none."""
        if self.topic_model.strip().lower() == "none":
            return ""
        return self.topic_model or str(DEFAULT_MODEL_PATH)


class Rules:
    """Compiled topic and label rules."""

    def __init__(self, topic_rules: Iterable[TopicRule], label_rules: Iterable[LabelRule]):
        self._topic_by_category = {c.casefold().strip(): r.topic for r in topic_rules for c in r.categories}
        self._labels = [
            (
                r.label,
                re.compile(r"\b(?:" + "|".join(re.escape(k) for k in r.keywords) + r")\b", re.I)
                if r.keywords
                else None,
                {c.casefold().strip() for c in r.categories},
            )
            for r in label_rules
        ]

    def topic_from_categories(self, tags: Iterable[str]) -> str:
        """The taxonomy topic the entry's categories name, or ''."""
        for tag in tags:
            topic = self._topic_by_category.get(tag.casefold().strip())
            if topic:
                return topic
        return ""

    def labels(self, title: str, text: str, tags: Iterable[str]) -> tuple[str, ...]:
        """The free labels whose rules match, in rule order."""
        tag_set = {t.casefold().strip() for t in tags}
        body = f"{title}\n{text}"
        return tuple(
            label
            for label, pattern, categories in self._labels
            if (categories & tag_set) or (pattern is not None and pattern.search(body))
        )


def choose_topic(rule_topic: str, model_label: str, model_score: float, default_topic: str) -> tuple[str, float]:
    """The topic and its score, by the order of trust in the module docstring."""
    if rule_topic:
        return rule_topic, 1.0
    if model_label and model_label != NO_LABEL:
        return model_label, float(model_score)
    if default_topic:
        return default_topic, 0.5
    return "unknown", 0.0


_FOR_MODEL_TAG = "for_model"


def classify_error(article: Article, err: Exception) -> DeadLetter:
    """The dead letter of an article that classifying raised on (counted as `classify/failed`)."""
    Metrics.counter("classify", "failed").inc()
    return reject("classify", "classify_error", article=article, error=err, raw=article.text)


def unscored(failed_batch: tuple) -> Iterable[Article]:
    """The articles of a batch the topic model raised on: they go on without the model's topic (rules and the
    feed's default decide), so a model bug costs topics, never articles."""
    Metrics.counter("classify", "topic_model_failed_batches").inc()
    for article, _text in failed_batch[0]:
        Metrics.counter("classify", "topic_model_failed_articles").inc()
        yield article


def model_failure(failed_batch: tuple) -> DeadLetter:
    """One dead letter per batch the topic model raised on. Its articles are kept (see `unscored`), so it names no
    entry and does not count as a lost one."""
    batch, (exc_type, exc_value, _trace) = failed_batch
    return reject(
        "classify",
        "topic_model_error",
        message=f"{exc_value} on a batch of {len(batch)} article(s), kept with the topic from rules or feed default",
        raw=batch[0][1] if batch else "",
    )


class ArticleClassifier:
    """The per-article steps of ClassifyArticles, which its DoFns run around RunInference and the per-feed loop
    (pipeline/plane/feeds.py) calls directly, a chunk at a time (`classify_chunk`), so both detect, score and
    reject by the same code. Call `setup()` once (in a DoFn's setup) before the steps."""

    def __init__(self, settings: ClassifySettings, model_languages: frozenset[str] = frozenset()):
        self._settings = settings
        self._model_languages = model_languages
        self._shared = Shared()
        self._detector: LanguageDetector | None = None
        self._rules: Rules | None = None
        self._classified = counter(ARTICLES_CLASSIFIED)
        self._by_model = Metrics.counter("classify", "topic_by_model")

    def setup(self) -> None:
        # One detector per worker process, whatever the number of DoFn instances: its models take hundreds of MB.
        language = self._settings.language
        self._detector = self._shared.acquire(lambda: shared_detector(language), tag=repr(language))
        self._rules = Rules(self._settings.topic_rules, self._settings.label_rules)

    @letter_on_error(classify_error)
    def detect(self, article: Article) -> Article | tuple[Article, str] | DeadLetter:
        """The article with language and language_score set; for one in a language the topic model reads,
        (article, the model's input text) instead."""
        language, score = self._detector.detect(f"{article.title}\n{article.text}", article.declared_language)
        article = dataclasses.replace(article, language=language, language_score=score)
        if language in self._model_languages:
            return article, topic_text(article.title, article.text)
        return article

    @letter_on_error(classify_error)
    def apply_topic(self, article: Article, prediction: tuple[str, float] | None = None) -> Article | DeadLetter:
        """The article with topic, topic_score and labels set, from the rules and the model's (label,
        probability) when it read the article."""
        label, score = prediction if prediction is not None else (NO_LABEL, 0.0)
        rule_topic = self._rules.topic_from_categories(article.tags)
        topic, topic_score = choose_topic(rule_topic, label, score, article.default_topic)
        labels = self._rules.labels(article.title, article.text, article.tags)
        if not rule_topic and label != NO_LABEL:
            self._by_model.inc()
        self._classified.inc()
        return dataclasses.replace(article, topic=topic, topic_score=topic_score, labels=labels)

    def classify_chunk(self, articles: Iterable[Article], model=None) -> tuple[list[Article], list[DeadLetter]]:
        """The classified articles and the dead letters, `model` (a TextClassifier, None for no model) reading the
        texts of the articles in its languages in one vectorised call, as RunInference does in ClassifyArticles:
        when it raises, those articles go on without its topic and one dead letter says so."""
        detected, for_model, letters = [], [], []
        for article in articles:
            out = self.detect(article)
            if isinstance(out, DeadLetter):
                letters.append(out)
            elif isinstance(out, tuple):
                for_model.append(out)
            else:
                detected.append((out, None))
        if for_model:
            try:
                labels, probs = model.predict_proba([text for _, text in for_model])
            except Exception as err:  # noqa: BLE001 - a model bug costs topics, never articles
                failed = (for_model, (type(err), err, err.__traceback__))
                detected.extend((article, None) for article in unscored(failed))
                letters.append(model_failure(failed))
            else:
                detected.extend(
                    (article, (label, prob)) for (article, _), label, prob in zip(for_model, labels, probs.tolist())
                )
        classified = []
        for article, prediction in detected:
            out = self.apply_topic(article, prediction)
            (letters if isinstance(out, DeadLetter) else classified).append(out)
        return classified, letters


class _DetectLanguageFn(beam.DoFn):
    """Sets language and language_score (ArticleClassifier.detect); an article in one of `model_languages` goes out
    on the `for_model` output as (article, the model's input text), the others on the main output. One step instead
    of three (detect, partition, prepare): each step costs every element a pass through Beam, and each ParDo a fixed
    cost per run."""

    def __init__(self, settings: ClassifySettings, model_languages: frozenset[str] = frozenset()):
        self._classifier = ArticleClassifier(settings, model_languages)

    def setup(self) -> None:
        self._classifier.setup()

    def process(
        self, article: Article
    ) -> Iterator[Article | DeadLetterOutput | TaggedOutput[Literal[_FOR_MODEL_TAG], tuple[Article, str]]]:
        out = self._classifier.detect(article)
        if isinstance(out, DeadLetter):
            yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, out)
        elif isinstance(out, tuple):
            yield beam.pvalue.TaggedOutput(_FOR_MODEL_TAG, out)
        else:
            yield out


class _ApplyTopicFn(beam.DoFn):
    """Sets topic, topic_score and labels (ArticleClassifier.apply_topic) from the rules and RunInference's
    prediction, if any: an element is an article, or (article, PredictionResult)."""

    def __init__(self, settings: ClassifySettings):
        self._classifier = ArticleClassifier(settings)

    def setup(self) -> None:
        self._classifier.setup()

    def process(self, element) -> Iterator[Article | DeadLetterOutput]:
        article, prediction = element if isinstance(element, tuple) else (element, None)
        out = self._classifier.apply_topic(article, prediction.inference if prediction is not None else None)
        yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, out) if isinstance(out, DeadLetter) else out


class ClassifyArticles(beam.PTransform):
    """Articles -> the same articles with language, language_score, topic, topic_score and labels set.

    The topic model is loaded (and validated) when the transform is built, so a missing or corrupt model file is an
    error before any feed is fetched.
    """

    def __init__(self, settings: ClassifySettings = ClassifySettings()):
        super().__init__()
        self._settings = settings
        path = settings.model_path
        self._model_languages = frozenset(load_topic_model(path).languages) if path else frozenset()

    def expand(self, articles: beam.PCollection):
        detected = articles | "DetectLanguage" >> beam.ParDo(
            _DetectLanguageFn(self._settings, self._model_languages)
        ).with_outputs(DEAD_LETTER_TAG, _FOR_MODEL_TAG, main="articles")
        to_topics, letters = [detected.articles], [detected[DEAD_LETTER_TAG]]
        if self._settings.model_path:  # with `topic_model: none` no worker loads a model
            predicted, failed = (
                detected[_FOR_MODEL_TAG]
                | "TopicModel"
                >> RunInference(
                    KeyedModelHandler(TopicModelHandler(self._settings.model_path))
                ).with_exception_handling()
            )
            to_topics += [predicted, failed.failed_inferences | "Unscored" >> beam.FlatMap(unscored)]
            letters.append(failed.failed_inferences | "ModelFailures" >> beam.Map(model_failure))
        classified = (
            tuple(to_topics)
            | "Rejoin" >> beam.Flatten()
            | "ApplyTopic" >> beam.ParDo(_ApplyTopicFn(self._settings)).with_outputs(DEAD_LETTER_TAG, main="articles")
        )
        letters.append(classified[DEAD_LETTER_TAG])
        dead_letters = tuple(letters) | "ClassifyDeadLetters" >> beam.Flatten()
        return Routed(classified.articles, dead_letters)
