"""transforms.article: the element's identity, shared by DeduplicateArticles and the page step (ArticlePages)."""

from tests.conftest import art
from transforms.article import identity_keys, key_hash


def test_identity_keys_are_the_id_url_and_content_hash_that_are_set():
    raw = art("a1", url="https://news.test/a")  # as parsed: no content hash yet (the page step asks then)
    assert identity_keys(raw) == [("id_key", key_hash("a1")), ("url_key", key_hash("https://news.test/a"))]
    hashed = art("a1", url="", content_hash="c0ffee")  # after DeduplicateArticles hashed it; no link
    assert identity_keys(hashed) == [("id_key", key_hash("a1")), ("content_key", key_hash("c0ffee"))]
