"""CleanArticles: turn each article's raw markup into plain text and strip the page furniture around the body.

Two pure steps, usable without Beam, each in its own module:

- `html_to_text` (transforms/html_text.py) renders markup as a browser would show it in reader mode: block
  elements become line breaks (paragraphs separated by one blank line), scripts, styles, embeds and navigation are
  dropped, entities are decoded, whitespace is normalised and the result is Unicode NFC. Plain text (no tags) keeps
  its own lines.
- `remove_furniture` (transforms/furniture.py) drops the lines a scraper or CMS wraps around an article
  (breadcrumbs, the title repeated, "By ..." bylines, "Updated: ..." lines, "Also read: ..." links, "Follow us on
  ..." prompts, a trailing "Further reading:" block) by rules held in `CleanSettings`. Rules only ever match whole,
  short lines, so a body sentence that merely contains "by" or "follow" is never touched.

`CleanArticles` applies both to every Article (title, text and the feed's `summary`); it keeps a title-only
article (a headline with a link is news) and makes one left with neither title nor text a dead letter with reason
`empty_after_cleaning`. Try it on one document:

    python -c "import sys; from transforms.clean import clean_text; print(clean_text(sys.stdin.read()))" < page.html
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.article import Article
from transforms.counters import ARTICLES_CLEANED, counter
from transforms.dead_letter import DEAD_LETTER_TAG, DeadLetter, DeadLetterOutput, Routed, letter_on_error, reject

# Re-exported: callers import these from transforms.clean.
from transforms.furniture import CleanSettings, _remove_furniture_counted, remove_furniture
from transforms.html_text import html_to_text, normalise_text

__all__ = [
    "ArticleCleaner",
    "CleanArticles",
    "CleanSettings",
    "clean_text",
    "clean_title",
    "html_to_text",
    "normalise_text",
    "remove_furniture",
]

STAGE = "clean"
EMPTY_AFTER_CLEANING = "empty_after_cleaning"
CLEAN_ERROR = "clean_error"


def clean_title(html_title: str) -> str:
    """A title as one line of plain text."""
    return " ".join(html_to_text(html_title).split())


def clean_text(html_text: str, title: str = "", settings: CleanSettings = CleanSettings()) -> str:
    """html_to_text, then remove_furniture: the article body as plain text."""
    return remove_furniture(html_to_text(html_text), clean_title(title), settings)


# ---------------------------------------------------------------------------------------------------------------
# The stage


def clean_error(article: Article, err: Exception) -> DeadLetter:
    """The dead letter of an article that cleaning raised on (counted as `clean/failed`): a bug met on one odd
    article costs that article, never the run."""
    Metrics.counter(STAGE, "failed").inc()
    return reject(STAGE, CLEAN_ERROR, article=article, error=err, raw=article.text)


class ArticleCleaner:
    """Cleans articles one at a time: the step CleanArticles runs in its DoFn and the per-feed loop
    (pipeline/plane/feeds.py) calls directly, so both count, keep and reject by the same code."""

    def __init__(self, settings: CleanSettings) -> None:
        self._settings = settings
        self._cleaned = counter(ARTICLES_CLEANED)
        self._empty = Metrics.counter(STAGE, "empty_after_cleaning")
        self._furniture = Metrics.counter(STAGE, "furniture_lines_removed")
        self._title_only = Metrics.counter(STAGE, "title_only")

    @letter_on_error(clean_error)
    def clean(self, article: Article) -> Article | DeadLetter:
        """The article with a plain title, text and summary, or the dead letter of one with no text left."""
        title = clean_title(article.title)
        plain = html_to_text(article.text)
        text, removed = _remove_furniture_counted(plain, title, self._settings)
        if removed:
            self._furniture.inc(removed)
        title_only = bool(title) and not text
        if title_only:
            self._title_only.inc()
        elif len(text) < self._settings.min_chars or not (title or text):
            self._empty.inc()
            return self._dead_letter(article, plain, text, removed)
        self._cleaned.inc()
        if article.text_source == "page":
            # The text came from the article's page (transforms/extract.py); the feed's own text is the summary.
            summary = remove_furniture(html_to_text(article.summary), title, self._settings)
        else:
            summary = text
        source = "page" if article.text_source == "page" and text else "feed" if text else "none"
        return dataclasses.replace(article, title=title, text=text, summary=summary, text_source=source)

    def clean_chunk(self, articles: Iterable[Article]) -> tuple[list[Article], list[DeadLetter]]:
        """The cleaned articles, in order, and the dead letters of the others."""
        kept, letters = [], []
        for article in articles:
            out = self.clean(article)
            (letters if isinstance(out, DeadLetter) else kept).append(out)
        return kept, letters

    def _dead_letter(self, article: Article, plain: str, text: str, removed: int) -> DeadLetter:
        if not (plain or clean_title(article.title)):
            why = "the entry has neither title nor text (markup only or empty)"
        elif not plain:
            why = "the entry has no text (markup only or empty)"
        elif not text:
            why = f"all {removed} line(s) of text were page furniture or repeated the title"
        else:
            why = f"{len(text)} character(s) left, fewer than min_chars={self._settings.min_chars}"
        return reject(STAGE, EMPTY_AFTER_CLEANING, article=article, message=why, raw=article.text)


class _CleanArticleFn(beam.DoFn):
    """Cleans one Article (ArticleCleaner); routes it to the dead letters when no text is left."""

    def __init__(self, settings: CleanSettings) -> None:
        self._cleaner = ArticleCleaner(settings)

    def process(self, article: Article) -> Iterator[Article | DeadLetterOutput]:
        out = self._cleaner.clean(article)
        yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, out) if isinstance(out, DeadLetter) else out


class CleanArticles(beam.PTransform):
    """Articles with raw markup in, Articles with plain title, text and summary out, with `text_source` set.

    A title-only article (empty text, or text that only repeated its title) is kept with `text_source` "none";
    an article with neither title nor text, or with text shorter than `min_chars`, becomes a dead letter.
    """

    def __init__(self, settings: CleanSettings = CleanSettings()) -> None:
        super().__init__()
        self._settings = settings

    def expand(self, articles: beam.PCollection):
        results = articles | "CleanText" >> beam.ParDo(_CleanArticleFn(self._settings)).with_outputs(
            DEAD_LETTER_TAG, main="articles"
        )
        return Routed(results.articles, results[DEAD_LETTER_TAG])
