"""FetchArticlePages: decoding and extraction (pure), the page fetcher against a loopback server (politeness, SSRF
guard, caps, timeouts, content types, charsets), merging a page into its article, and the Beam stage."""

import dataclasses
import datetime as dt
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import art
from tests.feed_server import FeedServer
from transforms.article import Article, key_hash
from transforms.clean import clean_text
from transforms.extract import (
    ExtractSettings,
    FetchArticlePages,
    HostLimiter,
    PageFetcher,
    PageResult,
    apply_page,
    decode_html,
    extract_page,
    wants_page,
)

UTC = dt.timezone.utc
SEED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "seed" / "000_0ba629fe7179814c.txt"

BODY = [
    "The city council approved the new budget on Tuesday after a debate that lasted well into the night, "
    "with members arguing over funding for schools, roads and the public library system.",
    "Supporters said the plan balances the books without cutting services, while critics warned that the "
    "projected tax revenue relies on optimistic assumptions about growth in the coming years.",
    "The mayor is expected to sign the budget into law later this week, officials said.",
]
RUSSIAN = [
    "Городской совет во вторник утвердил новый бюджет после долгих споров, которые продолжались до поздней ночи.",
    "Сторонники плана говорят, что он сбалансирован и не сокращает расходы на школы, дороги и библиотеки.",
    "Критики предупреждают, что прогноз налоговых поступлений основан на слишком оптимистичных предположениях.",
]


def page(paragraphs, *, title="Council approves budget", head="", lang="en") -> bytes:
    """A news page: navigation, the article, a footer with links (what a real page wraps its body in)."""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<!doctype html><html lang='{lang}'><head><title>{title} | Daily</title>{head}</head><body>"
        "<nav><a href='/'>Home</a> <a href='/world'>World</a> <a href='/sport'>Sport</a></nav>"
        f"<main><article><h1>{title}</h1>{body}</article></main>"
        "<footer><p>© Daily News. All rights reserved.</p><a href='/about'>About us</a></footer></body></html>"
    ).encode()


SETTINGS = ExtractSettings(mode="always", allow_hosts=("127.0.0.1",), per_host_delay=0.0, total_timeout=5.0)


@pytest.fixture
def fetcher():
    f = PageFetcher(SETTINGS)
    yield f
    f.close()


# --- decoding and extraction (no network) ---------------------------------------------------------------------


def test_charset_from_header_then_meta_then_detection():
    text = "Über die Brücke".encode("cp1252")
    assert decode_html(text, "text/html; charset=windows-1252") == ("Über die Brücke", "cp1252")
    meta = b"<html><head><meta charset='windows-1251'></head><body>" + RUSSIAN[0].encode("cp1251")
    assert RUSSIAN[0] in decode_html(meta, "text/html")[0]
    assert decode_html("é".encode(), "")[0] == "é"
    # No header charset, no meta tag, not UTF-8: detected.
    undeclared = ("<html><body>" + " ".join(RUSSIAN) + "</body></html>").encode("cp1251")
    decoded, charset = decode_html(undeclared, "text/html")
    assert RUSSIAN[1] in decoded and charset == "cp1251"


def test_extract_page_text_and_metadata():
    head = (
        "<link rel='canonical' href='/2026/council-budget'>"
        "<meta name='author' content='Jane Doe'>"
        '<script type=\'application/ld+json\'>{"@type": "NewsArticle", "datePublished": "2026-11-30T08:15:00+01:00",'
        ' "author": [{"@type": "Person", "name": "Jane Doe"}, {"name": "Max Mustermann"}]}</script>'
    )
    result = extract_page(page(BODY, head=head), "https://daily.test/a?x=1", "text/html; charset=utf-8")
    assert result.text.split("\n\n")[-3:] == BODY  # the paragraphs, nothing of the navigation or footer
    assert "About us" not in result.text and "Sport" not in result.text
    assert result.canonical_url == "https://daily.test/2026/council-budget"
    assert result.published_at == dt.datetime(2026, 11, 30, 7, 15, tzinfo=UTC)
    assert result.authors == ("Jane Doe", "Max Mustermann")
    assert result.language == "en"
    og = extract_page(page(BODY, head="<meta property='og:url' content='https://daily.test/og'>", lang="pt-BR"))
    assert (og.canonical_url, og.language, og.published_at, og.authors) == ("https://daily.test/og", "pt", None, ())
    assert extract_page(b"").text == "" and extract_page(b"<html><body></body></html>").text == ""


def test_seed_furniture_inside_a_page_layout_is_removed_after_extraction():
    if not SEED.exists():
        pytest.skip("../shared is absent")
    lines = [line.strip() for line in SEED.read_text(encoding="utf-8").splitlines() if line.strip()]
    title = "President Volodymyr Zelenskyy refuses US offer to flee Kyiv, urges Ukraine to ‘stand firm’"
    extracted = extract_page(page(lines, title=title), "https://news.test/world/zelenskyy").text
    body = [line for line in lines if len(line) > 200]
    assert all(paragraph in extracted for paragraph in body)
    # What lands in `text`: CleanArticles removes the furniture the page carried inside its article.
    text = clean_text(extracted, title)
    assert all(paragraph in text for paragraph in body)
    assert "Also Read" not in text and "follow us" not in text.lower() and "1. Home" not in text
    assert not text.startswith(title)


# --- fetching over loopback -----------------------------------------------------------------------------------


def test_normal_page_redirect_and_user_agent(feed_server, fetcher):
    feed_server.add("/a", page(BODY), content_type="text/html; charset=utf-8")
    feed_server.add("/old", redirect_to="/a")
    result = fetcher.fetch(feed_server.url("/old"))
    assert result.reason == "" and result.final_url == feed_server.url("/a")
    assert BODY[0] in result.page.text
    ua = feed_server.requests_for("/a")[0].headers["User-Agent"]
    assert ua.startswith("newsbeam/") and "https://" in ua
    assert feed_server.hits("/robots.txt") == 1  # asked once per origin and run
    fetcher.fetch(feed_server.url("/a"))
    assert feed_server.hits("/robots.txt") == 1


def test_redirect_to_a_blocked_address_is_refused(feed_server, fetcher):
    feed_server.add("/to-metadata", redirect_to="http://169.254.169.254/latest/meta-data/")
    result = fetcher.fetch(feed_server.url("/to-metadata"))
    assert result.reason == "blocked_address" and "169.254.169.254" in result.message


def test_loopback_refused_without_the_allow_list_and_fetched_with_it():
    with FeedServer() as other:
        other.add("/story", page(BODY), content_type="text/html")
        refused = PageFetcher(ExtractSettings(per_host_delay=0.0)).fetch(other.url("/story"))
        assert refused.reason == "blocked_address" and refused.page is None
        assert other.hits("/story") == 0 and other.hits("/robots.txt") == 0  # nothing was sent
        allowed = PageFetcher(ExtractSettings(per_host_delay=0.0, allow_hosts=("127.0.0.1",))).fetch(
            other.url("/story")
        )
        assert allowed.page is not None and other.hits("/story") == 1


def test_robots_txt_disallowing_a_path(feed_server, fetcher):
    feed_server.add("/robots.txt", "User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    feed_server.add("/private/story", page(BODY), content_type="text/html")
    feed_server.add("/public/story", page(BODY), content_type="text/html")
    assert fetcher.fetch(feed_server.url("/private/story")).reason == "robots_disallowed"
    assert fetcher.fetch(feed_server.url("/public/story")).page is not None
    assert feed_server.hits("/private/story") == 0 and feed_server.hits("/robots.txt") == 1


def test_a_20_mb_page_is_capped(feed_server):
    filler = b"<div class='ad'>" + b"x" * (20 * 1024 * 1024) + b"</div>"
    huge = page(BODY).replace(b"</footer>", b"</footer>" + filler)
    feed_server.add("/huge", huge, content_type="text/html")
    capped = PageFetcher(dataclasses.replace(SETTINGS, max_bytes=256 * 1024))
    result = capped.fetch(feed_server.url("/huge"))
    capped.close()
    assert result.truncated and BODY[0] in result.page.text  # the body came before the cap


def test_a_slow_page_times_out(feed_server):
    feed_server.add("/slow", page(BODY), content_type="text/html", delay=3)
    quick = PageFetcher(dataclasses.replace(SETTINGS, total_timeout=0.5, read_timeout=0.5))
    result = quick.fetch(feed_server.url("/slow"))
    quick.close()
    assert result.reason == "page_fetch_error" and "timeout" in result.message.lower()


def test_pdf_and_http_errors(feed_server, fetcher):
    feed_server.add("/report.pdf", b"%PDF-1.7 ...", content_type="application/pdf")
    feed_server.add("/gone", status=410, content_type="text/html")
    feed_server.add("/empty", b"<html><body><nav><a href='/'>Home</a></nav></body></html>", content_type="text/html")
    assert fetcher.fetch(feed_server.url("/report.pdf")).reason == "not_html"
    gone = fetcher.fetch(feed_server.url("/gone"))
    assert (gone.reason, gone.status) == ("page_fetch_error", 410)
    assert fetcher.fetch(feed_server.url("/empty")).reason == "extraction_failed"


def test_windows_1251_page_without_a_charset_header(feed_server, fetcher):
    body = page(RUSSIAN, title="Бюджет утверждён", lang="ru").decode("utf-8").encode("cp1251")
    feed_server.add("/ru", body, content_type="text/html")
    result = fetcher.fetch(feed_server.url("/ru"))
    assert result.page.charset == "cp1251" and RUSSIAN[1] in result.page.text


def test_retry_after_is_honoured_once(feed_server):
    feed_server.add("/busy", page(BODY), content_type="text/html", fail_times=1, fail_status=503, retry_after=7)
    waits = []
    polite = PageFetcher(SETTINGS, sleep=waits.append)
    result = polite.fetch(feed_server.url("/busy"))
    polite.close()
    assert result.page is not None and feed_server.hits("/busy") == 2
    assert 7 in waits


def test_host_limiter_spaces_requests_per_host():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(round(seconds, 3))
        now[0] += seconds

    limiter = HostLimiter(connections=2, delay=1.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        with limiter.slot("a.test"):
            pass
    with limiter.slot("b.test"):
        pass
    assert slept == [1.0, 1.0]  # the second and third start a second apart; another host does not wait
    limiter.push_back("b.test", 30)
    with limiter.slot("b.test"):
        pass
    assert slept[-1] == 30


# --- merging a page into its article, and the stage -------------------------------------------------------------


def article(
    url: str, text: str = "Teaser.", feed_url: str = "https://daily.test/feed", title: str = "Budget", **kw
) -> Article:
    return art(
        url.rsplit("/", 1)[-1],
        feed_url=feed_url,
        source="daily",
        url=url,
        title=title,
        text=text,
        fetched_at=dt.datetime(2026, 12, 1, tzinfo=UTC),
        date_source="fetched",
        **kw,
    )


def test_apply_page_fills_what_the_feed_lacks_and_failures_keep_the_article():
    extracted = extract_page(
        page(
            BODY,
            head="<meta property='article:published_time' content='2026-11-30T10:00:00Z'>"
            "<meta name='author' content='Jane Doe'>",
        ),
        "https://daily.test/a",
    )
    merged, letter = apply_page(article("https://daily.test/a"), PageResult("https://daily.test/a", page=extracted))
    assert letter is None
    assert (merged.text_source, merged.summary, merged.authors, merged.declared_language) == (
        "page",
        "Teaser.",
        ("Jane Doe",),
        "en",
    )
    assert (merged.published_at, merged.date_source) == (dt.datetime(2026, 11, 30, 10, tzinfo=UTC), "page")
    kept, letter = apply_page(
        article("https://daily.test/b"), PageResult("https://daily.test/b", reason="not_html", message="pdf")
    )
    assert kept == article("https://daily.test/b")
    assert (letter.stage, letter.reason, letter.entry_key) == ("extract", "not_html", "https://daily.test/b")
    assert letter.is_page and not letter.is_entry  # the article went on: not a lost entry


def test_modes():
    short, long_ = article("https://d.test/1"), article("https://d.test/2", text="<p>" + " ".join(BODY) + "</p>")
    assert wants_page(short, "when_short", 200) and not wants_page(long_, "when_short", 200)
    assert wants_page(long_, "always", 200) and not wants_page(short, "off", 200)
    assert not wants_page(article("urn:x:1"), "always", 200)


def test_stage_fetches_each_url_once_skips_written_entries_and_honours_feed_modes(feed_server):
    for name in ("a", "b", "c", "d"):
        feed_server.add(f"/{name}", page(BODY), content_type="text/html")
    a, b, c, d = (feed_server.url(f"/{n}") for n in "abcd")
    feeds = [type("Feed", (), {"url": "https://quiet.test/feed", "extract": "off"})()]
    inputs = [
        article(a),
        dataclasses.replace(article(a), article_id="a-copy", feed_url="https://other.test/feed"),
        article(b),  # written by an earlier run: never fetched
        article(c, feed_url="https://quiet.test/feed"),  # its feed says off
        article(d, text=""),  # a title-only entry has its page fetched
    ]
    with TestPipeline() as p:
        written = p | "Written" >> beam.Create([("url_key", key_hash(b)), ("id_key", key_hash("unrelated"))])
        routed = p | beam.Create(inputs) | FetchArticlePages(SETTINGS, feeds, "r1", written_keys=written)
        assert_that(
            routed.articles | beam.Map(lambda x: (x.article_id, x.text_source or "-")),
            equal_to([("a", "page"), ("a-copy", "page"), ("b", "-"), ("c", "-"), ("d", "page")]),
        )
        assert_that(routed.dead_letters, equal_to([]), label="letters")
    assert [feed_server.hits(f"/{n}") for n in "abcd"] == [1, 0, 0, 1]


def test_the_connect_time_check_holds_when_the_first_check_is_passed(feed_server, monkeypatch):
    # As if DNS answered a public address to the check and a loopback one to the connect: the session still refuses.
    import transforms.extract as extract

    feed_server.add("/a", page(BODY), content_type="text/html")
    monkeypatch.setattr(extract, "check_url", lambda url, allow: None)
    unguarded_check = PageFetcher(ExtractSettings(per_host_delay=0.0, robots=False))
    result = unguarded_check.fetch(feed_server.url("/a"))
    unguarded_check.close()
    assert result.reason == "blocked_address" and feed_server.hits("/a") == 0
