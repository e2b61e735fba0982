"""A benchmark corpus of real news-like text, served as RSS feeds: the same input for newsbeam and the plain script.

    from benchmarks.corpus import build_corpus, feed_documents
    articles = build_corpus(10_000, seed=0)                  # list[CorpusArticle]
    feeds = feed_documents(articles, feeds=100)               # list[bytes], one RSS 2.0 document per feed

Every word is real text from ../shared/data (read-only, never copied into the project):
- AG News rows (title + description): English news paragraphs and headlines;
- the article bodies of extraction-dev, split into paragraphs, pooled by the language py3langid gives each body;
- the langid-dev sentences, grouped by language into paragraphs of 2-5 sentences (drawn afresh for each paragraph, so
  two articles rarely share a paragraph: 500 sentences per language would give too few fixed paragraphs).
An article is in one language: a real headline (an AG News title, else a sentence of that language) and 1-6
paragraphs drawn from that language's pool. About 10% of the articles are syndicated copies of an earlier one in
another feed, under another URL: half exact copies, half near copies (other furniture, the last paragraph cut or a
new headline). Feeds are single-language, like real outlets (their <language> says which), and the draw is seeded.

A held-out corpus built the same way from other real text: point `data` at another directory with the same layout
(`agnews-train/train.csv`, `extraction-dev/ground-truth.json`, `langid-dev/<code>.txt`).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import random
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Share of articles per language (English carries AG News and most extraction-dev bodies). Eleven languages in
# five scripts, the mix a European news aggregator sees.
LANGUAGE_MIX = {
    "en": 0.40,
    "de": 0.08,
    "fr": 0.08,
    "es": 0.08,
    "it": 0.06,
    "pt": 0.06,
    "nl": 0.05,
    "ru": 0.05,
    "pl": 0.05,
    "ar": 0.05,
    "ja": 0.04,
}
COPY_SHARE = 0.10
_FURNITURE = (
    "Read more on our website.",
    "Follow us for the latest news.",
    "All rights reserved.",
    "Subscribe to our newsletter.",
)


@dataclasses.dataclass(frozen=True)
class CorpusArticle:
    """One article of the corpus: its feed, language and real text."""

    feed: int
    key: str
    language: str
    title: str
    paragraphs: tuple[str, ...]
    published: dt.datetime
    copy_of: str = ""


def _sentences(data: Path, code: str) -> list[str]:
    path = data / "langid-dev" / f"{code}.txt"
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _pools(data: Path) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[str]]]:
    """(paragraphs, sentences, headlines) by language, each from real text only."""
    paragraphs: dict[str, list[str]] = {code: [] for code in LANGUAGE_MIX}
    headlines: dict[str, list[str]] = {code: [] for code in LANGUAGE_MIX}
    with open(data / "agnews-train" / "train.csv", encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle):
            if len(row) >= 3 and row[2].strip():
                headlines["en"].append(row[1].strip())
                paragraphs["en"].append(row[2].strip())
    import py3langid  # the language of each extraction-dev body, to pool its paragraphs with the right language

    bodies = json.loads((data / "extraction-dev" / "ground-truth.json").read_text(encoding="utf-8"))
    for entry in bodies.values():
        body = (entry.get("articleBody") or "").strip()
        code = py3langid.classify(body[:2000])[0] if body else ""
        if code in paragraphs:
            paragraphs[code].extend(p.strip() for p in body.split("\n") if len(p.strip()) > 40)
    sentences = {code: _sentences(data, code) for code in LANGUAGE_MIX}
    for code in LANGUAGE_MIX:
        headlines[code].extend(s for s in sentences[code] if len(s) < 120)
    return paragraphs, sentences, headlines


def _paragraph(code: str, paragraphs: dict[str, list[str]], sentences: dict[str, list[str]], rng: random.Random) -> str:
    # English has thousands of real paragraphs (AG News, extraction-dev); the other languages have a few hundred
    # sentences each, so most of their paragraphs are fresh draws of 2-5 sentences.
    fixed = paragraphs[code]
    if fixed and (code == "en" or rng.random() < 0.2 or not sentences[code]):
        return rng.choice(fixed)
    return " ".join(rng.sample(sentences[code], rng.randint(2, 5)))


def build_corpus(n: int, seed: int = 0, feeds: int = 100, data: Path = DATA) -> list[CorpusArticle]:
    """`n` articles over `feeds` single-language feeds, about COPY_SHARE of them syndicated copies. Seeded."""
    rng = random.Random(seed)
    paragraphs, sentences, headlines = _pools(data)
    codes = list(LANGUAGE_MIX)
    # Feeds get languages in proportion to the mix (at least one each), so a feed is one outlet in one language.
    if feeds < len(codes):
        raise ValueError(f"at least {len(codes)} feeds: one per language")
    count = {code: max(1, round(LANGUAGE_MIX[code] * feeds)) for code in codes}
    while sum(count.values()) != feeds:
        step = 1 if sum(count.values()) < feeds else -1
        count["en"] += step
    feed_language = [code for code in codes for _ in range(count[code])]
    feeds_of = {code: [i for i, c in enumerate(feed_language) if c == code] for code in codes}
    start = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    articles: list[CorpusArticle] = []
    for i in range(n):
        published = start + dt.timedelta(seconds=rng.randint(0, 72 * 3600))
        if articles and rng.random() < COPY_SHARE:
            original = articles[rng.randrange(len(articles))]
            others = [f for f in feeds_of[original.language] if f != original.feed] or [original.feed]
            title, body = original.title, list(original.paragraphs)
            if rng.random() < 0.5:  # a near copy: the outlet's own furniture, a cut, or a new headline
                change = rng.randrange(3)
                if change == 0:
                    body.append(rng.choice(_FURNITURE))
                elif change == 1 and len(body) > 2:
                    body.pop()
                else:
                    title = rng.choice(headlines[original.language])
            articles.append(
                CorpusArticle(
                    rng.choice(others),
                    f"a{i}",
                    original.language,
                    title,
                    tuple(body),
                    published + dt.timedelta(minutes=rng.randint(1, 600)),
                    original.key,
                )
            )
            continue
        code = rng.choices(codes, weights=[LANGUAGE_MIX[c] for c in codes])[0]
        body = tuple(_paragraph(code, paragraphs, sentences, rng) for _ in range(rng.randint(1, 6)))
        articles.append(
            CorpusArticle(rng.choice(feeds_of[code]), f"a{i}", code, rng.choice(headlines[code]), body, published)
        )
    return articles


def feed_documents(articles: list[CorpusArticle], feeds: int = 100) -> list[bytes]:
    """One RSS 2.0 document per feed, the entries' bodies as HTML paragraphs in <description>."""
    items: list[list[str]] = [[] for _ in range(feeds)]
    languages = [""] * feeds
    for article in articles:
        languages[article.feed] = languages[article.feed] or article.language
        html = "".join(f"<p>{escape(p)}</p>" for p in article.paragraphs)
        items[article.feed].append(
            f"<item><title>{escape(article.title)}</title>"
            f"<link>https://feed{article.feed}.example/news/{article.key}?utm_source=rss</link>"
            f"<guid>{article.key}</guid><pubDate>{format_datetime(article.published)}</pubDate>"
            f"<description>{escape(html)}</description></item>"
        )
    return [
        (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>Outlet {f}</title><link>https://feed{f}.example/</link>"
            f"<language>{languages[f] or 'en'}</language>" + "".join(items[f]) + "</channel></rss>"
        ).encode("utf-8")
        for f in range(feeds)
    ]
