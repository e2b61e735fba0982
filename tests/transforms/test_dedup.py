"""Exact duplicates: canonical URLs, content hashes, the keep-one choice on arrays, and what earlier runs wrote."""

import dataclasses
import datetime as dt
import random

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import art
from tests.plane import run_plane
from transforms.article import key_hash
from transforms.dedup import DedupSettings, content_hash, exact_duplicates
from transforms.neardup import NearDedupSettings
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


def _plane(tmp_path, articles, **kwargs):
    return run_plane(tmp_path, articles, NearDedupSettings(enabled=False), **kwargs)


def test_keeps_earliest_per_group_and_counts_copies(tmp_path):
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
    for seed in range(3):  # the kept article does not depend on input order (nor on the chunks it was staged in)
        shuffled = articles[:]
        random.Random(seed).shuffle(shuffled)
        result = _plane(tmp_path / str(seed), shuffled, chunk_size=3)
        assert sorted((r["article_id"], r["duplicate_count"]) for r in result.rows) == expected
        assert result.counters["dedup"]["duplicates"] == 3


def test_hash_is_set_and_counters_reconcile(tmp_path):
    articles = [art(str(i), i, url=f"https://n.test/{i % 3}", text=f"t{i % 3}") for i in range(9)]
    result = _plane(tmp_path, articles)
    assert [bool(r["content_hash"]) for r in result.rows] == [True] * 3
    assert result.counters["dedup"]["duplicates"] == 6
    assert result.counters["dedup"]["duplicates_by_url"] == 6
    assert result.counters["sink"]["articles"] == 3


def _reference(articles, passes):
    """The keep-one passes as DeduplicateArticles ran them (a keyed combine per pass, merge_duplicates), on
    Articles: what exact_duplicates must reproduce."""
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)

    def order(a):
        return (a.published_at or far, a.article_id)

    for key_fn in passes:
        groups, keyless = {}, []
        for a in articles:
            key = key_fn(a)
            if not key:
                keyless.append(a)
            elif key not in groups:
                groups[key] = a
            else:
                kept = groups[key]
                first, second = (kept, a) if order(kept) <= order(a) else (a, kept)
                groups[key] = dataclasses.replace(
                    first, duplicate_count=first.duplicate_count + second.duplicate_count + 1
                )
        articles = list(groups.values()) + keyless
    return sorted((a.article_id, a.duplicate_count) for a in articles)


def test_exact_duplicates_on_arrays_match_the_keyed_combine_passes():
    rng = random.Random(7)
    for trial in range(30):
        articles = [
            art(
                f"id{rng.randrange(10**6):06d}-{i}",
                rng.randrange(5),
                url=rng.choice(["", "https://n.test/1", "https://n.test/2", f"https://n.test/u{i}"]),
                guid=rng.choice(["", "g1", "g2", f"g{i}"]),
                feed_url=rng.choice(["https://f.test/rss", "https://h.test/rss"]),
                text=rng.choice(["one", "two", "three", f"text {i}"]),
            )
            for i in range(rng.randrange(1, 40))
        ]
        passes = [
            ("url", lambda a: a.url),
            ("guid", lambda a: f"{a.feed_url}\n{a.guid}" if a.guid else ""),
            ("content", lambda a: content_hash(a.title, a.text)),
        ]
        chosen = [p for p in passes if rng.random() < 0.8]
        arrays = []
        for kind, key_fn in chosen:
            keys = [key_fn(a) for a in articles]
            arrays.append(
                (kind, np.array([key_hash(k) if k else 0 for k in keys], np.int64), np.array([bool(k) for k in keys]))
            )
        published = np.array([int(a.published_at.timestamp() * 1e6) for a in articles], np.int64)
        ids = [a.article_id for a in articles]
        rank = np.empty(len(ids), np.int64)
        rank[np.argsort(np.array(ids, dtype=object), kind="stable")] = np.arange(len(ids))
        found = exact_duplicates(arrays, published, rank)
        got = sorted((ids[i], int(found.duplicate_count[i])) for i in np.flatnonzero(found.keep))
        assert got == _reference(articles, [key_fn for _, key_fn in chosen]), trial
        assert sum(found.dropped.values()) == len(articles) - len(got)


def test_articles_an_earlier_run_wrote_are_dropped_and_their_keys_noted(tmp_path):
    old = art("old", 1, url="https://n.test/old", text="written yesterday")
    same_text = art("moved", 2, url="https://n.test/moved", text="written yesterday")
    new = art("new", 3, url="https://n.test/new", text="fresh")
    index = pa.table(
        {
            "id_key": pa.array([key_hash("old")], pa.int64()),
            "url_key": pa.array([key_hash("https://n.test/old")], pa.int64()),
            "content_key": pa.array([key_hash(content_hash("", "something else"))], pa.int64()),
        }
    )
    result = _plane(tmp_path, [old, same_text, new], index=index, dedup=DedupSettings(by_content=False))
    assert [r["article_id"] for r in result.rows] == ["moved", "new"]
    assert result.counters["dedup"]["already_written"] == 1
    assert sorted((r["column"], r["key"]) for r in result.seen_keys) == sorted(
        [("id_key", key_hash("old")), ("url_key", key_hash("https://n.test/old"))]
    )


def test_ascii_text_is_normalised_for_hashing_as_the_unicode_rule_does():
    import re
    import unicodedata

    from transforms.dedup import normalise_for_hash

    def by_regex(text: str) -> str:
        return re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()

    rng = random.Random(5)
    ascii_chars = [chr(c) for c in range(128)]
    texts = ["".join(rng.choices(ascii_chars, k=rng.randint(0, 24))) for _ in range(20000)]
    texts += ["  The  Council_approved\tit -- 3 times!\n", "", "___", "ÉTÉ, déjà vu", "ﬁnance Straße", "a\u00a0b"]
    for text in texts:
        assert normalise_for_hash(text) == by_regex(text), repr(text)
