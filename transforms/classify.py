"""ClassifyArticles: language and topic of each article.

Language: `transforms.language.LanguageDetector` (seeded, deterministic), built once per worker in `setup()`; the
feed's declared language stands in when the text is too short to judge, and `und` when nothing is known.

Topic, for now from rules in the config (a learned model comes with its own issue), in this order of trust:
an entry category the rules map onto the taxonomy (score 0.9), then keywords found in the title and text
(score grows with the number of distinct keywords: 2 -> 0.67, 3 -> 0.75, ...), then the feed's default topic
(score 0.5), else `unknown` (score 0.0).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.article import DEAD_LETTER_TAG, Article, DeadLetter, Routed, excerpt, utcnow
from transforms.language import LanguageDetector, LanguageSettings


@dataclasses.dataclass(frozen=True)
class TopicRule:
    """A topic, the entry categories that mean it, and keywords that suggest it (matched as whole words)."""

    topic: str
    categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()


DEFAULT_TOPIC_RULES = (
    TopicRule(
        "World",
        categories=("world", "international", "politics", "europe", "asia", "africa", "americas", "middle east"),
        keywords=("president", "minister", "government", "election", "parliament", "troops", "ceasefire",
                  "sanctions", "diplomat", "united nations", "embassy", "refugees", "war"),
    ),
    TopicRule(
        "Sports",
        categories=("sport", "sports", "football", "soccer", "tennis", "cricket", "basketball", "olympics"),
        keywords=("match", "league", "tournament", "coach", "goal", "season", "championship", "striker",
                  "olympic", "cup", "scored", "team"),
    ),
    TopicRule(
        "Business",
        categories=("business", "economy", "markets", "finance", "money", "companies"),
        keywords=("shares", "investors", "profit", "revenue", "market", "inflation", "bank", "economy",
                  "quarter", "stocks", "earnings", "merger"),
    ),
    TopicRule(
        "Sci/Tech",
        categories=("technology", "tech", "science", "sci/tech", "sci-tech", "space", "internet", "ai"),
        keywords=("software", "researchers", "scientists", "internet", "smartphone", "satellite", "study",
                  "artificial intelligence", "computer", "chip", "data", "space"),
    ),
)


@dataclasses.dataclass(frozen=True)
class ClassifySettings:
    """Language detection settings and the topic rules."""

    language: LanguageSettings = LanguageSettings()
    topic_rules: tuple[TopicRule, ...] = DEFAULT_TOPIC_RULES
    min_keyword_hits: int = 2


class TopicRules:
    """Compiled topic rules: `classify(article) -> (topic, score)`."""

    def __init__(self, rules: tuple[TopicRule, ...], min_keyword_hits: int = 2):
        self._by_category = {c.casefold(): r.topic for r in rules for c in r.categories}
        self._keywords = [
            (r.topic, re.compile(r"\b(" + "|".join(re.escape(k) for k in r.keywords) + r")\b", re.I))
            for r in rules
            if r.keywords
        ]
        self._min_hits = min_keyword_hits

    def classify(self, title: str, text: str, tags: Iterable[str], default_topic: str) -> tuple[str, float]:
        """The topic and its score, by categories, then keywords, then the feed default."""
        for tag in tags:
            topic = self._by_category.get(tag.casefold().strip())
            if topic:
                return topic, 0.9
        body = f"{title}\n{text}"
        best, best_hits = "", 0
        for topic, pattern in self._keywords:
            hits = len({m.casefold() for m in pattern.findall(body)})
            if hits > best_hits:
                best, best_hits = topic, hits
        if best_hits >= self._min_hits:
            return best, round(best_hits / (best_hits + 1), 3)
        if default_topic:
            return default_topic, 0.5
        return "unknown", 0.0


class _ClassifyFn(beam.DoFn):
    def __init__(self, settings: ClassifySettings, run_id: str):
        self._settings = settings
        self._run_id = run_id
        self._classified = Metrics.counter("classify", "articles")
        self._failed = Metrics.counter("classify", "failed")
        self._detector: LanguageDetector | None = None
        self._topics: TopicRules | None = None

    def setup(self) -> None:
        self._detector = LanguageDetector(self._settings.language)
        self._topics = TopicRules(self._settings.topic_rules, self._settings.min_keyword_hits)

    def process(self, article: Article) -> Iterable[Article]:
        try:
            language, language_score = self._detector.detect(f"{article.title}\n{article.text}", article.declared_language)
            topic, topic_score = self._topics.classify(article.title, article.text, article.tags, article.default_topic)
        except Exception as err:  # one odd text must not stop the run; the article goes to the dead letters
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG,
                DeadLetter(
                    stage="classify",
                    reason="classify_error",
                    feed_url=article.feed_url,
                    entry_key=article.article_id,
                    message=f"{type(err).__name__}: {err}",
                    raw_excerpt=excerpt(article.text),
                    time=utcnow(),
                    run_id=self._run_id,
                ),
            )
            return
        self._classified.inc()
        yield dataclasses.replace(
            article, language=language, language_score=language_score, topic=topic, topic_score=topic_score
        )


class ClassifyArticles(beam.PTransform):
    """Articles -> the same articles with language, language_score, topic and topic_score set."""

    def __init__(self, settings: ClassifySettings = ClassifySettings(), run_id: str = ""):
        super().__init__()
        self._settings = settings
        self._run_id = run_id

    def expand(self, articles: beam.PCollection) -> Routed:
        outputs = articles | "Classify" >> beam.ParDo(_ClassifyFn(self._settings, self._run_id)).with_outputs(
            DEAD_LETTER_TAG, main="articles"
        )
        return Routed(outputs.articles, outputs[DEAD_LETTER_TAG])
