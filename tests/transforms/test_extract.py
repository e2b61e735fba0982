"""transforms.extract: the page fetcher against a loopback server (politeness, SSRF guard, caps, timeouts,
content types, charsets), merging a page into its article, and ArticlePages, the page step of the per-feed loop."""

import dataclasses
import datetime as dt

import numpy as np
import pytest

from tests.conftest import art
from tests.feed_server import FeedServer
from tests.transforms.sample_pages import BODY, RUSSIAN, page
from transforms.article import Article, key_hash
from transforms.extract import (
    ArticlePages,
    ExtractSettings,
    HostLimiter,
    PageFetcher,
    PageResult,
    apply_page,
    wants_page,
)
from transforms.page_html import extract_page

UTC = dt.timezone.utc

SETTINGS = ExtractSettings(mode="always", allow_hosts=("127.0.0.1",), per_host_delay=0.0, total_timeout=5.0)


@pytest.fixture
def fetcher():
    f = PageFetcher(SETTINGS)
    yield f
    f.close()


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


def test_article_pages_fetch_each_url_once_skip_written_entries_and_honour_feed_modes(feed_server):
    for name in ("a", "b", "c", "d"):
        feed_server.add(f"/{name}", page(BODY), content_type="text/html")
    feed_server.add("/gone", status=410, content_type="text/html")
    a, b, c, d, gone = (feed_server.url(f"/{n}") for n in ("a", "b", "c", "d", "gone"))
    inputs = [
        article(a),
        dataclasses.replace(article(a), article_id="a-copy", feed_url="https://other.test/feed"),
        article(b),  # written by an earlier run: never fetched
        article(c, feed_url="https://quiet.test/feed"),  # its feed says off
        article(d, text=""),  # a title-only entry has its page fetched
        article(gone),  # a page that fails: the article goes on unchanged, with a dead letter
    ]
    pages = ArticlePages(SETTINGS, {"https://quiet.test/feed": "off"}, "r1")
    pages.setup()
    try:
        written = np.unique([key_hash(b), key_hash("unrelated")])
        out, letters = pages.fetch_chunk(inputs, written)
        # A later chunk linking a page this instance fetched already takes it from memory.
        again, _ = pages.fetch_chunk([dataclasses.replace(article(d), article_id="d-later")], written)
    finally:
        pages.teardown()
    assert [(x.article_id, x.text_source or "-") for x in out] == [
        ("a", "page"),
        ("a-copy", "page"),
        ("b", "-"),
        ("c", "-"),
        ("d", "page"),
        ("gone", "-"),
    ]
    assert out[5] == inputs[5] and BODY[0] in out[0].text and out[0].summary == "Teaser."
    assert [(x.reason, x.entry_key, x.status) for x in letters] == [("page_fetch_error", gone, 410)]
    assert again[0].text_source == "page"
    assert [feed_server.hits(f"/{n}") for n in "abcd"] == [1, 0, 0, 1]


def test_article_pages_without_written_keys_fetch_every_wanted_page(feed_server):
    feed_server.add("/a", page(BODY), content_type="text/html")
    pages = ArticlePages(dataclasses.replace(SETTINGS, mode="when_short", min_chars=50), run_id="r2")
    pages.setup()
    try:
        long_text = "<p>" + " ".join(BODY) + "</p>"
        out, letters = pages.fetch_chunk([article(feed_server.url("/a")), article("https://d.test/x", text=long_text)])
    finally:
        pages.teardown()
    assert [x.text_source for x in out] == ["page", ""] and letters == []
    assert feed_server.hits("/a") == 1


def test_the_connect_time_check_holds_when_the_first_check_is_passed(feed_server, monkeypatch):
    # As if DNS answered a public address to the check and a loopback one to the connect: the session still refuses.
    import transforms.extract as extract

    feed_server.add("/a", page(BODY), content_type="text/html")
    monkeypatch.setattr(extract, "check_url", lambda url, allow: None)
    unguarded_check = PageFetcher(ExtractSettings(per_host_delay=0.0, robots=False))
    result = unguarded_check.fetch(feed_server.url("/a"))
    unguarded_check.close()
    assert result.reason == "blocked_address" and feed_server.hits("/a") == 0
