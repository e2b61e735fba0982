"""ClassifyArticles: language, topic (rules, model via RunInference, feed default) and free labels."""

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import art, counter
from transforms import classify as classify_module
from transforms.classify import (
    ArticleClassifier,
    ClassifyArticles,
    ClassifySettings,
    LabelRule,
    Rules,
    TopicRule,
    choose_topic,
)
from transforms.text_classifier import ClassifierError
from transforms.topic_model import TopicModelHandler, load_topic_model

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
        out = p | beam.Create(articles) | ClassifyArticles(settings)
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
    p = TestPipeline()
    out = p | beam.Create([art("a", 0, text=SPORT, default_topic="World")]) | ClassifyArticles(settings)
    assert_that(out.articles | beam.Map(lambda a: (a.topic, a.topic_score)), equal_to([("World", 0.5)]))
    labels = [t.unique_name for t in p.to_runner_api().components.transforms.values()]
    assert not [label for label in labels if "TopicModel" in label]  # no model step: no worker loads a model
    p.run().wait_until_finish()


def test_a_topic_model_that_raises_costs_topics_not_articles(monkeypatch):
    # The model's batch fails: its articles go on with the rule's or feed's topic, and one dead letter says so
    # without naming an entry (nothing was lost, so the run's counts still reconcile).
    def broken(self, batch, model, inference_args=None):
        raise RuntimeError("model bug")

    monkeypatch.setattr(TopicModelHandler, "run_inference", broken)
    articles = [art("sport", 0, text=SPORT, default_topic="World"), art("tagged", 0, text=MARKETS, tags=("Sport",))]
    p = TestPipeline()
    out = p | beam.Create(articles) | ClassifyArticles(ClassifySettings())
    assert_that(
        out.articles | beam.Map(lambda a: (a.article_id, a.topic, a.language)),
        equal_to([("sport", "World", "en"), ("tagged", "Sports", "en")]),
    )
    assert_that(
        out.dead_letters | beam.Map(lambda d: (d.stage, d.reason, d.is_entry, "model bug" in d.message)),
        equal_to([("classify", "topic_model_error", False, True)]),
        label="letters",
    )
    result = p.run()
    result.wait_until_finish()
    assert counter(result, "classify/topic_model_failed_articles") == 2


def test_an_article_that_makes_topic_rules_raise_is_a_dead_letter_and_the_others_go_on(monkeypatch):
    real = classify_module.choose_topic

    def fussy(rule_topic, label, score, default_topic):
        if default_topic == "Explode":
            raise KeyError("odd article")
        return real(rule_topic, label, score, default_topic)

    monkeypatch.setattr(classify_module, "choose_topic", fussy)
    raised_at = fussy.__code__.co_firstlineno + 2  # the dead letter names the line that raised
    articles = [art("fine", 0, text=SPORT), art("odd", 0, text=MARKETS, default_topic="Explode")]
    with TestPipeline() as p:
        out = p | beam.Create(articles) | ClassifyArticles(ClassifySettings())
        assert_that(out.articles | beam.Map(lambda a: a.article_id), equal_to(["fine"]))
        assert_that(
            out.dead_letters | beam.Map(lambda d: (d.reason, d.entry_key, d.is_entry, d.message)),
            equal_to(
                [("classify_error", "odd", True, f"KeyError: 'odd article' (at test_classify.py:{raised_at} in fussy)")]
            ),
            label="letters",
        )


def test_missing_or_corrupt_model_is_rejected_when_built(tmp_path):
    with pytest.raises(ClassifierError, match="not found"):
        ClassifyArticles(ClassifySettings(topic_model=str(tmp_path / "absent.npz")))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(ClassifierError, match="corrupt.npz"):
        ClassifyArticles(ClassifySettings(topic_model=str(corrupt)))


CHUNK = [
    art("sport", 0, text=SPORT, title="Late winner keeps title race alive"),
    art("german", 0, text=GERMAN, default_topic="World"),
    art("markets", 0, text=MARKETS, title="Bank shares slide"),
    art("tagged", 0, text=MARKETS, tags=("Sport",)),
]


def chunk_classifier(settings: ClassifySettings):
    model = load_topic_model(settings.model_path)
    classifier = ArticleClassifier(settings, frozenset(model.languages))
    classifier.setup()
    return classifier, model


def test_the_chunk_step_gives_what_the_composite_gives():
    # The per-feed loop calls classify_chunk; ClassifyArticles runs the same detect and apply_topic around
    # RunInference: the same articles come out, the model's languages first as the loop orders them.
    settings = ClassifySettings(label_rules=(LabelRule("markets", keywords=("shares",)),))
    classifier, model = chunk_classifier(settings)
    chunked, letters = classifier.classify_chunk(CHUNK, model)
    assert letters == [] and [a.article_id for a in chunked] == ["german", "sport", "markets", "tagged"]
    with TestPipeline() as p:
        out = p | beam.Create(CHUNK) | ClassifyArticles(settings)
        assert_that(out.articles, equal_to(chunked))


def test_the_chunk_step_keeps_the_articles_of_a_model_that_raises():
    class Broken:
        def predict_proba(self, texts):
            raise RuntimeError("model bug")

    classifier, _ = chunk_classifier(ClassifySettings())
    chunked, letters = classifier.classify_chunk(CHUNK, Broken())
    assert [(a.article_id, a.topic) for a in chunked] == [
        ("german", "World"),
        ("sport", "unknown"),
        ("markets", "unknown"),
        ("tagged", "Sports"),
    ]
    assert [(d.reason, d.is_entry, "model bug" in d.message) for d in letters] == [("topic_model_error", False, True)]
