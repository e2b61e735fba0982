"""DeduplicateArticles: canonical URLs, content hashes and the keep-one choice."""

import random

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import art, counter
from transforms.dedup import DeduplicateArticles, content_hash
from transforms.urls import canonical_url


@pytest.mark.parametrize(
    "url, expected",
    [
        (
            "HTTPS://News.Example.TEST/a/b?utm_source=rss&utm_medium=x&id=3&b=1#frag",
            "https://news.example.test/a/b?b=1&id=3",
        ),
        ("http://x.test:80/p?fbclid=1&gclid=2", "http://x.test/p"),
        ("https://x.test:8443", "https://x.test:8443/"),
        ("https://x.test/p?q=a+b&q=c", "https://x.test/p?q=a+b&q=c"),
        ("not a url", "not a url"),
        ("  https://x.test/p  ", "https://x.test/p"),
    ],
)
def test_canonical_url(url, expected):
    assert canonical_url(url) == expected


def test_content_hash_ignores_case_punctuation_and_spacing():
    assert content_hash("Hello, World!", "A  text.\n") == content_hash("hello world", "a text")
    assert content_hash("Hello", "A text") != content_hash("Hello", "Another text")


def test_keeps_earliest_per_group_and_counts_copies():
    articles = [
        art("b", 5, url="https://n.test/1", text="one"),
        art("a", 1, url="https://n.test/1", text="one again"),  # same URL, earliest: kept
        art("c", 0, url="https://m.test/9", text="one again"),  # same text as a, even earlier: kept
        art("d", 3, guid="g", text="two"),
        art("e", 3, guid="g", text="two, edited"),  # same feed+guid, same time: smaller id kept
        art("f", 3, guid="g", text="three", feed_url="https://other.test/rss"),  # same guid in another feed: distinct
        art("g", 9, text="lonely"),
    ]
    expected = [("c", 2), ("d", 1), ("f", 0), ("g", 0)]
    for seed in range(3):  # the kept article does not depend on input order
        shuffled = articles[:]
        random.Random(seed).shuffle(shuffled)
        with TestPipeline() as p:
            out = p | beam.Create(shuffled) | DeduplicateArticles()
            assert_that(out | beam.Map(lambda a: (a.article_id, a.duplicate_count)), equal_to(expected))


def test_hash_is_set_and_counters_reconcile():
    articles = [art(str(i), i, url=f"https://n.test/{i % 3}", text=f"t{i % 3}") for i in range(9)]
    p = TestPipeline()
    out = p | beam.Create(articles) | DeduplicateArticles()
    assert_that(out | beam.Map(lambda a: bool(a.content_hash)), equal_to([True] * 3))
    result = p.run()
    result.wait_until_finish()
    assert counter(result, "dedup/duplicates") == 6
