"""transforms.article: the element's identity, shared by DeduplicateArticles and the page step (ArticlePages)."""

from tests.conftest import art
from transforms.article import identity_keys, key_hash


def test_identity_keys_are_the_id_url_and_content_hash_that_are_set():
    raw = art("a1", url="https://news.test/a")  # as parsed: no content hash yet (the page step asks then)
    assert identity_keys(raw) == [("id_key", key_hash("a1")), ("url_key", key_hash("https://news.test/a"))]
    hashed = art("a1", url="", content_hash="c0ffee")  # after DeduplicateArticles hashed it; no link
    assert identity_keys(hashed) == [("id_key", key_hash("a1")), ("content_key", key_hash("c0ffee"))]


def test_an_article_is_built_as_the_frozen_dataclass_builds_it():
    import dataclasses
    import datetime as dt
    import inspect
    import pickle

    import pytest

    from transforms.article import Article

    fields = dataclasses.fields(Article)
    # The same signature as the dataclass's own __init__: the fields in order, with their defaults.
    parameters = list(inspect.signature(Article).parameters.values())
    assert [(p.name, p.default) for p in parameters] == [
        (f.name, inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default) for f in fields
    ]
    plain = Article("id", "https://feed.test/rss", "feed")
    assert vars(plain) == {f.name: f.default for f in fields} | {
        "article_id": "id",
        "feed_url": "https://feed.test/rss",
        "source": "feed",
    }
    assert list(vars(plain)) == [f.name for f in fields]
    when = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    refined = dataclasses.replace(plain, title="T", labels=("a",), published_at=when, language_score=0.5)
    assert (refined.title, refined.labels, refined.published_at, refined.article_id) == ("T", ("a",), when, "id")
    assert (
        refined != plain
        and refined == dataclasses.replace(refined)
        and hash(refined) == hash(dataclasses.replace(refined))
    )
    assert pickle.loads(pickle.dumps(refined)) == refined
    with pytest.raises(dataclasses.FrozenInstanceError):
        refined.title = "changed"
    with pytest.raises(TypeError):
        Article("id", "https://feed.test/rss")
    with pytest.raises(TypeError):
        Article("id", "https://feed.test/rss", "feed", headline="x")
