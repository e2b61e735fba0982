"""transforms.page_html: a page's body text and metadata (no network)."""

import datetime as dt
from pathlib import Path

import pytest

from tests.transforms.sample_pages import BODY, page
from transforms.clean import clean_text
from transforms.page_html import extract_page

UTC = dt.timezone.utc
SEED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "seed" / "000_0ba629fe7179814c.txt"


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
