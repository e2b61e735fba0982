"""ParseEntries: feedparser formats, JSON Feed, salvaged malformed feeds, not-a-feed, dates."""

import datetime as dt
import json
from pathlib import Path

import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

import apache_beam as beam
from transforms.article import UTC
from transforms.fetch import FeedSource, FetchedFeed
from transforms.parse import ParseEntries, ParseSettings, parse_date, parse_feed, resolve_event_time

SHARED_FEEDS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "feeds"
FETCHED_AT = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>T</title><link>https://news.test/</link><language>en-gb</language>
<item><title>First &amp; foremost</title><link>https://News.test/a?utm_source=x&amp;b=2&amp;a=1#top</link>
<guid>g1</guid><pubDate>Fri, 20 Nov 2026 10:15:00 +0100</pubDate><category>World</category>
<author>jane@news.test (Jane Roe)</author><description>&lt;p&gt;Body &lt;b&gt;one&lt;/b&gt;&lt;/p&gt;</description></item>
<item><title>No date</title><link>https://news.test/b</link><description>Body two</description></item>
<item><title>Future</title><link>https://news.test/c</link><pubDate>Fri, 20 Nov 2099 10:15:00 GMT</pubDate>
<description>Body three</description></item>
<item><description></description></item>
</channel></rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>A</title><id>urn:a</id><updated>2026-11-20T09:00:00Z</updated>
<entry><title>Only updated</title><id>urn:e1</id><link href="https://news.test/u"/>
<updated>2026-11-20T08:30:00-05:00</updated><content type="html">&lt;p&gt;Text&lt;/p&gt;</content></entry>
</feed>"""


def fetched(body: bytes, content_type: str = "application/rss+xml", url: str = "https://news.test/feed") -> FetchedFeed:
    return FetchedFeed(FeedSource("news", url, topic="World"), url, 200, content_type, body, FETCHED_AT)


def test_rss_entries_become_articles_with_canonical_urls_and_dates():
    result = parse_feed(fetched(RSS), run_id="r1")
    assert result.entries_read == 4
    first, no_date, future = result.articles
    assert first.url == "https://news.test/a?a=1&b=2"
    assert first.title == "First & foremost"
    assert "<b>one</b>" in first.text  # markup stays until CleanArticles
    assert first.published_at == dt.datetime(2026, 11, 20, 9, 15, tzinfo=UTC)
    assert first.date_source == "published"
    assert first.tags == ("World",)
    assert first.declared_language == "en"
    assert first.default_topic == "World"
    assert first.run_id == "r1"
    assert (no_date.published_at, no_date.date_source) == (FETCHED_AT, "fetched")
    assert (future.published_at, future.date_source) == (FETCHED_AT, "fetched")
    [reject] = result.rejects
    assert (reject.stage, reject.reason) == ("parse", "empty_entry")
    assert reject.entry_key


def test_article_id_is_stable_and_follows_the_url():
    a = parse_feed(fetched(RSS)).articles[0]
    b = parse_feed(fetched(RSS, url="https://other.test/rss")).articles[0]
    assert a.article_id == b.article_id and len(a.article_id) == 32


def test_atom_entry_with_only_updated_uses_it():
    [article] = parse_feed(fetched(ATOM, "application/atom+xml")).articles
    assert article.published_at == dt.datetime(2026, 11, 20, 13, 30, tzinfo=UTC)
    assert article.date_source == "updated"
    assert article.guid == "urn:e1"


def test_json_feed():
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "J",
        "language": "fr-FR",
        "items": [
            {"id": "1", "url": "https://j.test/1", "title": "Un", "content_html": "<p>Texte</p>",
             "date_published": "2026-11-20T10:00:00+01:00", "authors": [{"name": "Ana"}], "tags": ["Monde"]},
            {"id": "2"},
            "not an object",
        ],
    }
    result = parse_feed(fetched(json.dumps(doc).encode(), "application/feed+json"))
    [article] = result.articles
    assert (article.title, article.authors, article.tags, article.declared_language) == ("Un", ("Ana",), ("Monde",), "fr")
    assert article.published_at == dt.datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    assert [r.reason for r in result.rejects] == ["empty_entry", "empty_entry"]


def test_html_page_is_not_a_feed():
    result = parse_feed(fetched(b"<html><body><h1>Welcome</h1></body></html>", "text/html; charset=utf-8"))
    assert result.articles == [] and result.problem.reason == "not_a_feed"
    assert "Welcome" in result.problem.raw_excerpt


def test_malformed_feed_keeps_salvaged_entries():
    broken = RSS.replace(b"<title>No date</title>", b"<title>No & date</title><broken>")
    result = parse_feed(fetched(broken))
    assert result.problem is not None and result.problem.reason == "malformed_feed"
    assert result.articles  # salvaged
    assert not result.problem.is_entry


def test_declared_charset_is_honoured():
    body = '<?xml version="1.0"?><rss version="2.0"><channel><title>x</title><item><title>Café</title><link>https://c.test/1</link></item></channel></rss>'.encode("iso-8859-1")
    [article] = parse_feed(fetched(body, "application/rss+xml; charset=iso-8859-1")).articles
    assert article.title == "Café"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Seg, 24 Set 2018 19:42:40 -0300", dt.datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC)),
        ("mar., 13 mars 2018 10:00:00 +0100", dt.datetime(2018, 3, 13, 9, 0, tzinfo=UTC)),
        ("2026-11-20T10:00:00Z", dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)),
        ("2026-11-20", dt.datetime(2026, 11, 20, tzinfo=UTC)),
        ("yesterday-ish", None),
        ("", None),
    ],
)
def test_parse_date(text, expected):
    assert parse_date(text) == expected


def test_resolve_event_time_order():
    p, u = FETCHED_AT - dt.timedelta(hours=2), FETCHED_AT - dt.timedelta(hours=1)
    assert resolve_event_time(p, u, FETCHED_AT, 86400) == (p, "published")
    assert resolve_event_time(None, u, FETCHED_AT, 86400) == (u, "updated")
    far = FETCHED_AT + dt.timedelta(days=2)
    assert resolve_event_time(far, far, FETCHED_AT, 86400) == (FETCHED_AT, "fetched")
    assert resolve_event_time(far, u, FETCHED_AT, 86400) == (u, "updated")


def test_parse_entries_composite():
    with TestPipeline() as p:
        out = p | beam.Create([fetched(RSS), fetched(b"<html></html>", "text/html")]) | ParseEntries(ParseSettings(), "r")
        assert_that(out.articles | beam.Map(lambda a: a.title), equal_to(["First & foremost", "No date", "Future"]))
        assert_that(out.dead_letters | beam.Map(lambda d: d.reason), equal_to(["empty_entry", "not_a_feed"]), label="dead")


@pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason="../shared is absent")
def test_every_shared_feed_parses_without_raising():
    files = [f for f in SHARED_FEEDS.rglob("*") if f.is_file() and not f.name.startswith("LICENSE")]
    assert len(files) > 60
    total = 0
    for path in files:
        content_type = "application/feed+json" if path.suffix == ".json" else "application/xml"
        result = parse_feed(fetched(path.read_bytes(), content_type, url=path.as_uri()))
        assert result.entries_read == len(result.articles) + len(result.rejects), path
        total += len(result.articles)
    assert total > 300
