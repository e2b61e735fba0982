"""ParseEntries: feedparser formats, JSON Feed, salvaged malformed feeds, not-a-feed, dates."""

import codecs
import dataclasses
import datetime as dt
import json
import random
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import open_files_under
from transforms import spool
from transforms.clock import UTC
from transforms.feed import FeedSource, FetchedFeed
from transforms.fetch import FetchSettings, fetch_feed
from transforms.parse import ParseEntries, count_entry_tags, feed_report, iter_feed, parse_feed
from transforms.readers.base import FeedStats, ParseSettings, resolve_event_time
from transforms.spool import BodySink, SpooledBody

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
    result = parse_feed(fetched(RSS))
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
    assert first.run_id == ""  # WriteParquetPartitions stamps it in the row
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
            {
                "id": "1",
                "url": "https://j.test/1",
                "title": "Un",
                "content_html": "<p>Texte</p>",
                "date_published": "2026-11-20T10:00:00+01:00",
                "authors": [{"name": "Ana"}],
                "tags": ["Monde"],
            },
            {"id": "2"},
            "not an object",
        ],
    }
    result = parse_feed(fetched(json.dumps(doc).encode(), "application/feed+json"))
    [article] = result.articles
    assert (article.title, article.authors, article.tags, article.declared_language) == (
        "Un",
        ("Ana",),
        ("Monde",),
        "fr",
    )
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
    body = '<?xml version="1.0"?><rss version="2.0"><channel><title>x</title><item><title>Café</title><link>https://c.test/1</link></item></channel></rss>'.encode(
        "iso-8859-1"
    )
    [article] = parse_feed(fetched(body, "application/rss+xml; charset=iso-8859-1")).articles
    assert article.title == "Café"


def test_resolve_event_time_order():
    p, u = FETCHED_AT - dt.timedelta(hours=2), FETCHED_AT - dt.timedelta(hours=1)
    assert resolve_event_time(p, u, FETCHED_AT, 86400) == (p, "published")
    assert resolve_event_time(None, u, FETCHED_AT, 86400) == (u, "updated")
    far = FETCHED_AT + dt.timedelta(days=2)
    assert resolve_event_time(far, far, FETCHED_AT, 86400) == (FETCHED_AT, "fetched")
    assert resolve_event_time(far, u, FETCHED_AT, 86400) == (u, "updated")


def test_parse_entries_composite():
    with TestPipeline() as p:
        out = p | beam.Create([fetched(RSS), fetched(b"<html></html>", "text/html")]) | ParseEntries(ParseSettings())
        assert_that(out.articles | beam.Map(lambda a: a.title), equal_to(["First & foremost", "No date", "Future"]))
        assert_that(
            out.dead_letters | beam.Map(lambda d: d.reason), equal_to(["empty_entry", "not_a_feed"]), label="dead"
        )


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


# Hostile input: every entry on its own, dates, links, charsets, entities.


def rss(*items: str, declaration: str = '<?xml version="1.0" encoding="utf-8"?>') -> bytes:
    return (declaration + '<rss version="2.0"><channel><title>T</title>' + "".join(items) + "</channel></rss>").encode()


def item(title: str, link: str = "", date: str = "") -> str:
    return (
        f"<item><title>{title}</title>"
        + (f"<link>{link}</link>" if link else "")
        + (f"<pubDate>{date}</pubDate>" if date else "")
        + "<description>text</description></item>"
    )


def test_well_formed_rss_and_atom_are_read_incrementally():
    assert parse_feed(fetched(RSS)).stats.parser == "lxml"
    assert parse_feed(fetched(ATOM, "application/atom+xml")).stats.parser == "lxml"


@pytest.mark.parametrize("date", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_an_out_of_range_date_costs_only_its_date(date):
    result = parse_feed(fetched(rss(item("Bad date", "https://d.test/1", date), item("Good", "https://d.test/2"))))
    assert [a.title for a in result.articles] == ["Bad date", "Good"]
    assert result.articles[0].date_source == "fetched" and result.articles[0].published_at == FETCHED_AT
    assert result.problem is None


def test_json_feed_out_of_range_date_keeps_the_feed():
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "items": [
            {"id": "1", "url": "https://j.test/1", "title": "Old", "date_published": "0001-01-01T00:00:00+14:00"},
            {"id": "2", "url": "https://j.test/2", "title": "Late", "date_modified": "9999-12-31T23:59:59-14:00"},
            {"id": "3", "url": "https://j.test/3", "title": "Fine", "date_published": "2026-11-20T10:00:00Z"},
        ],
    }
    result = parse_feed(fetched(json.dumps(doc).encode(), "application/feed+json"))
    assert [(a.title, a.date_source) for a in result.articles] == [
        ("Old", "fetched"),
        ("Late", "fetched"),
        ("Fine", "published"),
    ]


@pytest.mark.parametrize("date", ["0001-01-01T00:00:00Z", "Mon, 01 Jan 1900 00:00:00 GMT", "1969-12-31T23:59:59Z"])
def test_dates_before_1990_are_not_trusted(date):
    text = f'<item><title>x</title><link>https://d.test/1</link><pubDate>{date}</pubDate><dc:date xmlns:dc="http://purl.org/dc/elements/1.1/">{date}</dc:date></item>'
    result = parse_feed(fetched(rss(text)))
    [article] = result.articles
    assert (article.published_at, article.date_source, article.updated_at) == (FETCHED_AT, "fetched", None)
    assert result.stats.dates_untrusted == 1


def test_a_date_from_1995_is_trusted():
    [article] = parse_feed(fetched(rss(item("x", "https://d.test/1", "1995-06-01T00:00:00Z")))).articles
    assert (article.published_at.year, article.date_source) == (1995, "published")


def test_a_bad_entry_is_a_dead_letter_and_the_others_stay():
    doc = {
        "version": "https://jsonfeed.org/version/1",
        "items": [
            {"id": "1", "url": "https://j.test/1", "title": "Before"},
            {"id": "2", "url": "https://j.test/2", "title": "Broken", "tags": 7},  # not a list
            {"id": "3", "url": "https://j.test/3", "title": "After"},
        ],
    }
    result = parse_feed(fetched(json.dumps(doc).encode(), "application/feed+json"))
    assert [a.title for a in result.articles] == ["Before", "After"]
    [reject] = result.rejects
    assert (reject.reason, reject.is_entry) == ("bad_entry", True)
    assert "TypeError" in reject.message and "Broken" in reject.raw_excerpt
    assert result.entries_read == 3


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "ftp://files.test/a",
        "mailto:x@y.test",
        "http://host.test:99999/x",
        "http://host.test:abc/x",
    ],
)
def test_only_http_links_with_valid_ports_become_urls(link):
    result = parse_feed(fetched(rss(item("Kept without its link", link.replace("&", "&amp;")))))
    [article] = result.articles
    assert article.url == "" and article.title == "Kept without its link"
    assert result.stats.links_dropped == 1


def test_relative_links_are_resolved_against_the_feed_url():
    [article] = parse_feed(fetched(rss(item("x", "/news/1")), url="https://site.test/rss/feed.xml")).articles
    assert article.url == "https://site.test/news/1"


RUSSIAN = "Правительство объявило новые меры поддержки экономики"


def test_cp1251_served_as_utf8_is_decoded_by_the_evidence_and_flagged():
    body = rss(item(RUSSIAN, "https://r.test/1")).decode().encode("cp1251")
    result = parse_feed(fetched(body, "application/rss+xml; charset=utf-8"))
    [article] = result.articles
    assert article.title == RUSSIAN and article.encoding_repaired
    assert result.stats.encoding_repaired


def test_a_utf8_bom_wins_over_a_windows_1251_declaration_and_is_flagged():
    body = codecs.BOM_UTF8 + rss(
        item(RUSSIAN, "https://r.test/1"), declaration='<?xml version="1.0" encoding="windows-1251"?>'
    )
    [article] = parse_feed(fetched(body, "application/rss+xml")).articles
    assert article.title == RUSSIAN and article.encoding_repaired


def test_a_correct_declaration_is_not_flagged():
    body = rss(item(RUSSIAN, "https://r.test/1"), declaration='<?xml version="1.0" encoding="windows-1251"?>')
    [article] = parse_feed(fetched(body.decode().encode("cp1251"), "application/rss+xml")).articles
    assert article.title == RUSSIAN and not article.encoding_repaired


def test_a_few_bad_bytes_in_utf8_keep_the_rest_of_the_text():
    body = rss(item("Café crème", "https://c.test/1"), item("Naïve BAD bad", "https://c.test/2")).replace(
        b"BAD", b"\xff"
    )
    first, second = parse_feed(fetched(body, "application/rss+xml; charset=utf-8")).articles
    assert first.title == "Café crème" and first.encoding_repaired
    assert second.title == "Naïve \ufffd bad"


def test_bytes_that_nothing_decodes_are_bad_encoding_and_their_entries_are_counted():
    rng = random.Random(1)
    junk = bytes(rng.randrange(256) for _ in range(3000))
    body = (
        b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        + b"".join(b"<item><title>" + junk[i * 1000 : (i + 1) * 1000] + b"</title></item>" for i in range(3))
        + b"</channel></rss>"
    )
    result = parse_feed(fetched(body))
    assert result.problem.reason == "bad_encoding" and not result.problem.is_entry
    assert result.articles == []
    assert [(r.reason, r.is_entry) for r in result.rejects] == [("bad_encoding", True)] * 3
    assert result.entries_read == 3  # read, and each accounted for by a dead letter


def test_malformed_after_some_entries_salvages_without_duplicates():
    body = rss(item("One", "https://m.test/1"), item("Two", "https://m.test/2")).replace(
        b"<title>Two</title>", b"<title>Two &amp; <b>broken</title>"
    )
    body = body.replace(b"</channel>", item("Three", "https://m.test/3").encode() + b"</channel>")
    result = parse_feed(fetched(body))
    assert result.stats.parser == "feedparser"
    assert result.problem.reason == "malformed_feed"
    titles = [a.title for a in result.articles]
    assert titles[0] == "One" and titles.count("One") == 1
    assert result.entries_read == len(result.articles) + len(result.rejects)


def test_entities_are_not_expanded_and_external_ones_not_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x SYSTEM "{secret.as_uri()}">'
        '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        '<rss version="2.0"><channel><title>t</title>'
        "<item><title>X &x; Y &c;</title><link>https://e.test/1</link></item></channel></rss>"
    ).encode()
    result = parse_feed(fetched(body))
    assert all("TOP-SECRET" not in a.title + a.text for a in result.articles)
    assert all(len(a.title) < 100 for a in result.articles)


def test_parse_entries_yields_articles_of_one_feed_one_at_a_time():
    feed = fetched(rss(*(item(f"n{i}", f"https://o.test/{i}") for i in range(5))))
    stream = iter_feed(feed, ParseSettings(), FeedStats())
    first = next(stream)
    assert first.title == "n0"  # given before the rest of the document is read
    assert [a.title for a in stream] == ["n1", "n2", "n3", "n4"]


# A big body read from its spool file (transforms/spool.py) reads exactly as the same bytes in memory. Chunks of 7
# bytes cut characters, BOMs, tags and declarations at every place they can be cut.


def _spooled(body: bytes) -> SpooledBody:
    with BodySink(spool_over=0) as sink:
        sink.write(body)
        return sink.result()


def _reading(feed: FetchedFeed) -> tuple:
    """Everything ParseEntries makes of a feed; dead letters without the time they were made."""
    result = parse_feed(feed)
    undated = [dataclasses.replace(r, time=None) for r in (*result.rejects, result.problem) if r is not None]
    report = dataclasses.replace(feed_report(feed, result), fetched_at=None)
    stats = dataclasses.replace(result.stats, problem=None)  # the problem is among `undated`
    return result.articles, undated, result.entries_read, result.ttl_seconds, stats, report


def assert_spooled_reads_the_same(body: bytes, content_type: str = "application/rss+xml", url: str = "") -> tuple:
    in_memory = _reading(fetched(body, content_type, *([url] if url else [])))
    feed = fetched(_spooled(body), content_type, *([url] if url else []))
    try:
        on_disk = _reading(feed)
    finally:
        feed.close()
    assert on_disk == in_memory
    return in_memory


UTF16_RSS = rss(item(RUSSIAN, "https://r.test/1"), item("Café", "https://r.test/2"))


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (RSS, "application/rss+xml"),
        (ATOM, "application/atom+xml"),
        (rss(item(RUSSIAN, "https://r.test/1")).decode().encode("cp1251"), "application/rss+xml; charset=utf-8"),
        (
            codecs.BOM_UTF8
            + rss(item(RUSSIAN, "https://r.test/1"), declaration='<?xml version="1.0" encoding="windows-1251"?>'),
            "application/rss+xml",
        ),
        (
            rss(item(RUSSIAN, "https://r.test/1"), declaration='<?xml version="1.0" encoding="windows-1251"?>')
            .decode()
            .encode("cp1251"),
            "application/rss+xml",
        ),
        (
            rss(item("Café crème", "https://c.test/1"), item("Naïve BAD", "https://c.test/2")).replace(b"BAD", b"\xff"),
            "",
        ),
        (codecs.BOM_UTF16_LE + UTF16_RSS.decode().encode("utf-16-le"), "application/rss+xml"),
        (UTF16_RSS.decode().encode("utf-16-le"), "application/rss+xml; charset=utf-16"),
        (RSS.replace(b"<title>No date</title>", b"<title>No & date</title><broken>"), "application/rss+xml"),
        (RSS[: RSS.index(b"<title>Future")], "application/rss+xml"),  # cut short in an entry
        (b"<html><body><h1>Welcome</h1><item>1</item><ns:entry x><item/></body></html>", "text/html"),
        (bytes(random.Random(1).randrange(256) for _ in range(3000)) + b"<item>" * 5, "application/rss+xml"),
        (b"  \n{not json", "application/octet-stream"),
        (b"", "application/rss+xml"),
    ],
    ids=[
        "rss",
        "atom",
        "cp1251-served-as-utf8",
        "bom-over-declaration",
        "declared-cp1251",
        "bad-utf8-bytes",
        "utf16-bom",
        "utf16-header-no-bom",
        "malformed",
        "truncated",
        "not-a-feed",
        "bad-encoding",
        "broken-json",
        "empty",
    ],
)
def test_a_spooled_body_reads_as_the_same_bytes_in_memory(body, content_type, monkeypatch):
    monkeypatch.setattr(spool, "CHUNK_BYTES", 7)
    assert_spooled_reads_the_same(body, content_type)


def test_a_spooled_json_feed_reads_the_same(monkeypatch):
    monkeypatch.setattr(spool, "CHUNK_BYTES", 7)
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "items": [{"id": str(i), "url": f"https://j.test/{i}", "title": f"Ítem {i}"} for i in range(5)] + [{}],
    }
    articles, rejects, *_ = assert_spooled_reads_the_same(json.dumps(doc).encode(), "application/feed+json")
    assert len(articles) == 5 and [r.reason for r in rejects] == ["empty_entry"]


def test_entry_tags_cut_by_chunk_ends_are_counted_once(monkeypatch):
    body = b"".join(b"<item>x</item><a:entry/>text<itemz><item\n>" for _ in range(50))
    for size in (1, 2, 3, 5, 64):
        monkeypatch.setattr(spool, "CHUNK_BYTES", size)
        spooled = _spooled(body)
        assert count_entry_tags(spooled) == count_entry_tags(body) == 150
        spooled.close()


@pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason="../shared is absent")
def test_every_shared_feed_reads_the_same_spooled(monkeypatch):
    monkeypatch.setattr(spool, "CHUNK_BYTES", 4093)
    files = [f for f in SHARED_FEEDS.rglob("*") if f.is_file() and not f.name.startswith("LICENSE")]
    for path in files:
        content_type = "application/feed+json" if path.suffix == ".json" else "application/xml"
        assert_spooled_reads_the_same(path.read_bytes(), content_type, url=path.as_uri())


def _big_feed(entries: int) -> bytes:
    words = "government market league election storm research court festival".split()
    items = (
        item(f"{words[i % 8].title()} {i} {RUSSIAN if i % 3 == 0 else 'Café'}", f"https://big.test/{i}")
        for i in range(entries)
    )
    return rss(*items)


def test_a_big_feed_over_loopback_is_spooled_and_reads_as_in_memory(feed_server, spool_dir):
    body = _big_feed(20_000)  # about 2.2 MB
    feed_server.add("/big.xml", body, content_type="application/rss+xml; charset=utf-8", gzip=True)
    source = FeedSource("news", feed_server.url("/big.xml"), topic="World")
    settings = FetchSettings(max_bytes=len(body) + 1, spool_bytes=64 * 1024)
    in_memory = fetch_feed(source, settings)
    assert isinstance(in_memory.body, bytes)  # without `spool`, whatever the size
    on_disk = fetch_feed(source, settings, spool=True)
    assert isinstance(on_disk.body, SpooledBody) and len(on_disk.body) == len(body)
    try:
        assert open_files_under(spool_dir)
        fixed = {"fetched_at": FETCHED_AT}  # two fetches, two times: the rest must match
        expected = _reading(dataclasses.replace(in_memory, **fixed))
        assert _reading(dataclasses.replace(on_disk, **fixed)) == expected
    finally:
        on_disk.close()
    assert open_files_under(spool_dir) == []
    assert len(expected[0]) == 20_000


def test_a_big_truncated_feed_salvages_from_its_spool_as_in_memory(feed_server, spool_dir):
    body = _big_feed(5_000)
    body = body[: body.index(b"https://big.test/4000<")]  # the connection closed in the middle of an entry
    articles, rejects, entries_read, *_ = assert_spooled_reads_the_same(body)
    assert [r.reason for r in rejects] == ["malformed_feed"]
    assert len(articles) == entries_read >= 3_999
    assert open_files_under(spool_dir) == []
