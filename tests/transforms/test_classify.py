"""ClassifyArticles: language, topic (rules, model via RunInference, feed default) and free labels."""

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import art
from transforms.classify import ClassifyArticles, ClassifySettings, LabelRule, Rules, TopicRule, choose_topic
from transforms.topic_model import TopicModelError

SPORT = (
    "The striker scored twice as the home team won the league match on Saturday, and the coach praised "
    "the defence after a season of injuries. The championship race is now wide open with three games left."
)
MARKETS = (
    "Shares fell sharply after the bank reported lower quarterly profit, and investors sold stocks across "
    "the market as inflation data surprised economists. The central bank may raise interest rates again."
)
GERMAN = (
    "Die Bundesregierung hat am Mittwoch ein neues Gesetz beschlossen, das den Ausbau der erneuerbaren "
    "Energien beschleunigen soll. Kritiker halten die Pläne für unzureichend und fordern mehr Tempo."
)


def test_choose_topic_order_of_trust():
    assert choose_topic("World", "Sports", 0.9, "Business") == ("World", 1.0)
    assert choose_topic("", "Sports", 0.8, "Business") == ("Sports", 0.8)
    assert choose_topic("", "", 0.0, "Business") == ("Business", 0.5)
    assert choose_topic("", "", 0.0, "") == ("unknown", 0.0)


def test_rules_map_categories_and_add_labels():
    rules = Rules(
        [TopicRule("Sports", ("Football",))],
        [LabelRule("ukraine", keywords=("Kyiv", "Zelensky")), LabelRule("climate", categories=("Climate",))],
    )
    assert rules.topic_from_categories(["news", "football "]) == "Sports"
    assert rules.topic_from_categories(["news"]) == ""
    assert rules.labels("Talks in KYIV", "text", ["climate"]) == ("ukraine", "climate")
    assert rules.labels("Kyivstar results", "", []) == ()  # whole words only


def test_composite_uses_rules_model_and_defaults():
    settings = ClassifySettings(label_rules=(LabelRule("markets", keywords=("shares",)),))
    articles = [
        art("sport", 0, text=SPORT, title="Late winner keeps title race alive"),
        art("markets", 0, text=MARKETS, title="Bank shares slide"),
        art("tagged", 0, text=MARKETS, tags=("Sport",)),  # the category wins over the model
        art("german", 0, text=GERMAN, default_topic="World"),  # the model is English-only: feed default
        art("short", 0, text="Ja.", declared_language="de"),
    ]
    with TestPipeline() as p:
        out = p | beam.Create(articles) | ClassifyArticles(settings, "r1")
        assert_that(
            out.articles | beam.Map(lambda a: (a.article_id, a.language, a.topic, a.labels)),
            equal_to(
                [
                    ("sport", "en", "Sports", ()),
                    ("markets", "en", "Business", ("markets",)),
                    ("tagged", "en", "Sports", ("markets",)),
                    ("german", "de", "World", ()),
                    ("short", "de", "unknown", ()),
                ]
            ),
        )
        assert_that(
            out.articles | beam.Map(lambda a: 0.0 <= a.topic_score <= 1.0 and 0.0 <= a.language_score <= 1.0),
            equal_to([True] * 5),
            label="scores",
        )
        assert_that(out.dead_letters, equal_to([]), label="no dead letters")


def test_without_model_topics_come_from_rules_and_defaults():
    settings = ClassifySettings(topic_model="none")
    with TestPipeline() as p:
        out = p | beam.Create([art("a", 0, text=SPORT, default_topic="World")]) | ClassifyArticles(settings)
        assert_that(out.articles | beam.Map(lambda a: (a.topic, a.topic_score)), equal_to([("World", 0.5)]))


def test_missing_or_corrupt_model_is_rejected_when_built(tmp_path):
    with pytest.raises(TopicModelError, match="not found"):
        ClassifyArticles(ClassifySettings(topic_model=str(tmp_path / "absent.npz")))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(TopicModelError, match="corrupt.npz"):
        ClassifyArticles(ClassifySettings(topic_model=str(corrupt)))
