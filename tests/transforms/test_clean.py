"""CleanArticles: markup to text, furniture rules one by one, the seed article, the Beam stage, real feeds."""

import dataclasses
import random
import sys
from pathlib import Path

import apache_beam as beam
import feedparser
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

import transforms.clean as clean_module
import transforms.html_text as html_text_module
from tests.conftest import art, counter
from transforms.article import Article
from transforms.clean import (
    ArticleCleaner,
    CleanArticles,
    CleanSettings,
    _CleanArticleFn,
    clean_text,
    clean_title,
    html_to_text,
    normalise_text,
    remove_furniture,
)
from transforms.dead_letter import DEAD_LETTER_TAG, DeadLetter

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
SEED = SHARED / "data" / "seed" / "000_0ba629fe7179814c.txt"
FEEDS = SHARED / "data" / "feeds"
SEED_TITLE = "President Volodymyr Zelenskyy refuses US offer to flee Kyiv, urges Ukraine to ‘stand firm’"
BODY = "The council met on Tuesday and approved the new budget after a long debate."


# --- html_to_text ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<p>One <b>bold</b> line</p><p>Two</p>", "One bold line\n\nTwo"),
        ("<div><h1>Head</h1><section><p>Para</p></section></div>", "Head\n\nPara"),
        ("a<br>b<br/><br>c", "a\nb\n\nc"),
        ("<ul>\n  <li>one</li>\n  <li>two</li>\n</ul><p>after</p>", "one\ntwo\n\nafter"),
        ("<table><tr><th>Version:</th><td>5.7</td></tr><tr><td>a</td><td>b</td></tr></table>", "Version: 5.7\na b"),
        ("<blockquote>quoted</blockquote>said<hr>next", "quoted\n\nsaid\n\nnext"),
        ("<pre>line 1\n  line 2</pre>", "line 1\nline 2"),
        ("<p>Folded\n   source   lines</p>", "Folded source lines"),
    ],
)
def test_block_elements_become_line_breaks(markup, text):
    assert html_to_text(markup) == text


def test_code_styles_embeds_and_navigation_are_dropped():
    markup = (
        "<head><title>Page</title><style>p{color:red}</style></head><body>"
        "<script>var x = '</p>';</script><nav><a>Home</a><a>World</a></nav>"
        "<p>Kept<noscript>Enable JavaScript</noscript></p><template><p>Hidden</p></template>"
        "<iframe src='x'>Frame fallback</iframe><svg><text>Chart label</text></svg>"
        "<video>Your browser does not support video</video><button>Share</button><p>Also kept</p></body>"
    )
    assert html_to_text(markup) == "Kept\n\nAlso kept"


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("Tom &amp; Jerry &lt;3 &#8220;hi&#x201D; &eacute;", "Tom & Jerry <3 “hi” é"),
        ("<p>Caf&amp;eacute; &amp;amp; co</p>", "Café & co"),  # escaped twice by the feed
        ("Caf&amp;eacute; in plain text", "Café in plain text"),
        ("<p>AT&T and &notanentity; stay</p>", "AT&T and &notanentity; stay"),
        ("<p>non&nbsp;breaking&nbsp;&nbsp;space</p>", "non breaking space"),
        ("<p>zero\u200bwidth\ufeff soft\u00adhyphen</p>", "zerowidth softhyphen"),
        ("e\u0301t\u0301e\u0301", "\u00e9t\u0301\u00e9"),  # NFC composes where a composed form exists
        ("<p>cafe\u0301</p>", "café"),
    ],
)
def test_entities_whitespace_and_unicode_are_normalised(markup, text):
    assert html_to_text(markup) == text


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<p>unclosed <b>bold <i>italic", "unclosed bold italic"),
        ("</div>stray end tags</span></p>", "stray end tags"),
        ("x < y and a<3 but <b>bold</b>", "x < y and a<3 but bold"),
        ("<a href='x>y' title=\"a > b\">link</a> text", "link text"),
        ("<p>before</p><!-- a comment --><p>after</p>", "before\n\nafter"),
        ("<p>before</p><!-- never closed <p>lost</p>", "before"),
        ("<![CDATA[<p>in cdata</p> x &amp; y]]>", "in cdata\n\nx & y"),
        ("<![ odd ]]>text<?php echo 1 ?><!DOCTYPE html>", "text"),
        ("<p>text <img src='a.png' alt='ignored'> more", "text more"),
        ("<p>tag never ends <a href='x'", "tag never ends <a href='x'"),
        ("<p>kept</p><iframe src='x'><p>no end tag: nothing hidden</p>", "kept\n\nno end tag: nothing hidden"),
        ("<p>kept</p><script>no end tag hides the rest", "kept"),
        ("<svg><p>unclosed svg keeps its text", "unclosed svg keeps its text"),
        ("", ""),
        ("<p> </p><div>\n</div>", ""),
    ],
)
def test_broken_markup_is_rendered_leniently(markup, text):
    assert html_to_text(markup) == text


def test_plain_text_keeps_its_lines_and_joins_hard_wraps():
    plain = (
        "  First  paragraph\u00a0line\r\n\r\n\r\n\r\nSecond, hard-wrapped\n  across lines.\nNew line\n\nList:\nflour"
    )
    assert html_to_text(plain) == "First paragraph line\n\nSecond, hard-wrapped across lines.\nNew line\n\nList:\nflour"


@pytest.mark.parametrize("unit", ["<a ", "<a b='", "<!--", "</", "<![CDATA[", "<iframe>", "<svg>", "&#x", "<p>x</p>"])
def test_pathological_markup_is_handled(unit):
    # 40,000 repeats: Python 3.11's HTMLParser takes minutes on the first two; this tokenizer is linear.
    text = html_to_text(unit * 40_000 + "--><p>end</p>")
    assert text.endswith("end")


def test_long_plain_text_is_handled():
    assert html_to_text("x\n" * 40_000) == " ".join(["x"] * 40_000)  # one hard-wrapped sentence
    assert remove_furniture("By A\n" * 40_000) == ""


def test_clean_title_is_one_line():
    assert clean_title("<b>Breaking:</b>\n  Caf&amp;eacute; <br>opens") == "Breaking: Café opens"
    assert clean_title("Bright Victorian &#x0024;4300 1930ft<sup>2</sup>") == "Bright Victorian $4300 1930ft2"


# Characters that every normalisation step touches: runs and kinds of whitespace, line breaks of every sort,
# invisible characters, a combining accent (NFC), entities and tags.
_TRICKY = list("ab cD\n\n\t\r  &<p></p><br>é.:") + [
    "e\u0301",
    "\u00a0",
    "\u200b",
    "\u2028",
    "\u2029",
    "\x85",
    "\x0b",
    "\x0c",
    "\u3000",
    "\u00ad",
    "\ufeff",
    "&amp;",
    "&nbsp;",
    "\r\n",
]


def _random_texts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(_TRICKY, k=rng.randint(0, 40))) for _ in range(n)]


def test_normalise_text_returns_normal_text_unchanged_and_normalises_the_rest_as_in_full():
    for text in _random_texts(5000):
        full = html_text_module._normalise(text)
        assert normalise_text(text) == full
        # What it returns is normal: normalising it again gives it back as it is, without the work.
        assert html_text_module._is_normal(full), repr(full)
        assert html_text_module._normalise(full) == full
        if html_text_module._is_normal(text):
            assert full == text


def test_no_whitespace_above_u3000_escapes_the_normal_text_check():
    # _ODD_CHARS lists the whitespace characters up to U+3000; Unicode has none above (str.split's and re's \s).
    assert not [cp for cp in range(0x3001, sys.maxunicode + 1) if chr(cp).isspace()]


def test_markup_whitespace_is_folded_exactly_where_folding_changes_the_text():
    for text in _random_texts(5000):
        folded = html_text_module._MARKUP_WS.sub(" ", text)
        assert (folded != text) == html_text_module._has_markup_ws_to_fold(text), repr(text)


def test_html_to_text_keeps_indentation_between_tags_out():
    # A lone space between tags (no run to fold) is still indentation, not text.
    assert html_to_text("<ul> <li>one</li> <li>two</li> </ul>") == "one\ntwo"
    assert html_to_text("<p>a</p> <p>b</p>") == "a\n\nb"


# --- furniture rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "furniture",
    [
        "1. Home\n2. World\n3. Council approves budget",
        "1. Home 2. World 3. Council approves budget",
        "Home > World > Europe",
        "Home / World",
        "Home\nWorld\nEurope",
        "By Ruchi Upadhyay",
        "By Jane Doe, Reuters",
        "By The Associated Press",
        "Written by J. Smith | Updated 3 hours ago",
        "by Matt Lowrie, Manjusha Parvathaneni, Benjamin Pick, and Jochen Wuttke",
        "Updated Date",
        "Updated: 26 Feb 2022, 10:41 IST",
        "Published: Monday, March 4",
        "Last updated on 4 March 2024",
        "Also Read :- Russian foreign minister compares Zelenskyy with Hitler",
        "Also read: Council to vote again",
        "Read more: How the budget works",
        "READ ALSO",
        "Related: Fact check: the budget analysed",
        "Continue reading...",
        "For the latest news and reviews, follow us on Facebook and Twitter ...",
        "Follow us on Twitter",
        "Follow The Daily on Instagram",
        "Subscribe to our newsletter",
        "Sign up for our daily newsletter to get the news first",
        "Click here to read the full report",
        "Share this article",
        "Share on WhatsApp",
        "Facebook Twitter WhatsApp Email",
        "Advertisement",
        "Story continues below advertisement",
        "The post Council approves budget appeared first on The Daily.",
        "submitted by /u/someone to /r/news",
        "[link] [275 comments]",
        "Tags: budget, council",
        "© 2024 The Daily. All rights reserved.",
        "Reporting by Jane Doe; Editing by John Smith",
    ],
)
def test_each_furniture_rule_removes_its_lines(furniture):
    text = f"{furniture}\n\n{BODY}\n\nSecond paragraph of the report, which closes the article."
    assert remove_furniture(text, "") == f"{BODY}\n\nSecond paragraph of the report, which closes the article."


def test_case_folding_never_shortens_a_string():
    # Why only a line whose first few characters fold to a breadcrumb word's start is split as a trail.
    assert all(len(chr(cp).casefold()) >= 1 for cp in range(sys.maxunicode + 1))


@pytest.mark.parametrize(
    ("words", "line"),
    [
        (("Straße",), "STRASSE > Berlin"),  # folding lengthens the word: the line's "STRASSE" is longer than "Straße"
        (("strasse",), "Straße > Berlin"),  # and the other way round
        (("home",), "HOME › World"),
        (("start", "startseite"), "Startseite / Politik"),
    ],
)
def test_breadcrumbs_are_found_whatever_case_folding_does_to_their_length(words, line):
    settings = CleanSettings(breadcrumb_words=words)
    text = f"{line}\n\n{BODY}"
    assert remove_furniture(text, "", settings) == BODY


def test_a_paragraph_that_merely_starts_like_a_breadcrumb_word_is_kept():
    text = f"Homeowners / renters face new rules this year, the council says in a report.\n\n{BODY}"
    assert remove_furniture(text, "") == text


def test_title_repeats_near_the_top_are_removed_exact_or_near():
    title = "Council approves ‘new’ budget"
    text = f'Council approves ‘new’ budget\n\nCOUNCIL APPROVES "NEW" BUDGET\nCouncil approves new budgets\n{BODY}'
    assert remove_furniture(text, title) == BODY
    # The same line further down (past head_lines) is body, e.g. a heading that quotes the title.
    far = "\n\n".join([BODY] * 10 + [title])
    assert remove_furniture(far, title).endswith(title)
    assert remove_furniture(text, title, CleanSettings(drop_title_repeats=False)) == text


def test_trailing_link_block_is_removed_only_when_it_is_short_and_link_like():
    links = f"{BODY}\n\nFurther reading:\nCouncil faces new vote\nWhat next for the budget?\nhttps://daily.test/x"
    assert remove_furniture(links, "") == BODY
    sentences = f"{BODY}\n\nRelated\n\nThe mayor said the vote was fair. Nobody objected."
    assert remove_furniture(sentences, "") == f"{BODY}\n\nThe mayor said the vote was fair. Nobody objected."
    long_tail = BODY + "\n\nFurther reading:\n" + "\n".join(f"Headline {i}" for i in range(20))
    assert "Headline 19" in remove_furniture(long_tail, "")


@pytest.mark.parametrize(
    "sentence",
    [
        "The bill was passed by the senate and signed by the governor on Friday.",
        "By contrast, prices fell",
        "by the end of the year",
        "By Monday, all of the residents had left.",
        "Police asked drivers to follow us on the detour, the officer said.",
        "Follow the money, he said.",
        "Analysts expect more cuts to follow.",
        "Shares in the company rose",
        "Updated guidance was issued.",
        "Home prices rose by 3% in the year to March.",
        "1. Homeowners will pay less tax.",
        "(c) the court shall decide.",
        "Read more about it in the report, she said.",
        "Related parties must be disclosed.",
    ],
)
def test_body_sentences_with_by_or_follow_are_kept(sentence):
    text = f"{sentence}\n\n{BODY}"
    assert remove_furniture(text, "Council approves budget") == text


def test_settings_accept_extra_patterns_and_reject_bad_ones():
    settings = CleanSettings(extra_drop_line_patterns=["photo: .*"], breadcrumb_words=["Start"])
    assert settings.extra_drop_line_patterns == ("photo: .*",)
    assert remove_furniture(f"Start > Welt\nPhoto: Reuters\n\n{BODY}", "", settings) == BODY
    with pytest.raises(ValueError, match=r"bad pattern '\(unclosed'"):
        CleanSettings(extra_drop_line_patterns=("(unclosed",))
    with pytest.raises(TypeError):
        CleanSettings(drop_line_patterns="by .*")
    with pytest.raises(ValueError):
        CleanSettings(min_chars=-1)


# --- the seed article --------------------------------------------------------------------------------------


@pytest.fixture
def seed() -> str:
    if not SEED.exists():
        pytest.skip("../shared is absent")
    return SEED.read_text(encoding="utf-8")


@pytest.mark.parametrize("title", [SEED_TITLE, ""])
def test_seed_article_loses_every_furniture_line_and_keeps_every_paragraph(seed, title):
    cleaned = clean_text(seed, title)
    lines = cleaned.split("\n")
    for furniture in (
        "1. Home",
        "2. World",
        "3. President",
        "By Ruchi",
        "Updated Date",
        "Also Read",
        "Further reading",
        "follow us",
    ):
        assert not any(furniture.casefold() in line.casefold() for line in lines), furniture
    assert SEED_TITLE not in cleaned
    assert lines[0].startswith("Kyiv: Russian troops stormed toward Ukraine’s capital early Saturday")
    assert lines[-1].startswith("The West-backed resolution, calling for unconditional withdrawal")
    for sentence in (
        "He refused American help to evacuate, saying: “The fight is here.”",
        "“We’re all here. Our military is here. Citizens in society are here.",
        "As his country confronted explosions and gunfire, and as the fate of Kyiv hung in the balance,",
        "Zelensky wrote on Twitter while expressing gratitude for “strong” American support..",
        "Eleven members voted for the adoption of the resolution and three, including India and China, abstained.",
    ):
        assert sentence in cleaned
    # Every body paragraph of the seed (its long lines), verbatim and in order, and nothing else.
    body = [line.strip() for line in seed.splitlines() if len(line) > 120]
    assert len(body) == 8
    assert cleaned.split("\n\n") == body


# --- the Beam stage ----------------------------------------------------------------------------------------


GOOD = art(
    "a1",
    run_id="r0",
    title="<b>Council</b> approves budget",
    text=f"<p>By Jane Doe</p><p>{BODY}</p><p>Follow us on Twitter</p>",
)
EMPTY = art("a2", run_id="r0", title="Title only", text="<p>&nbsp;</p><script>track()</script>")
FURNITURE_ONLY = art("a3", run_id="r0", title="Budget", text="<p>Budget</p><p>Read more</p>")
NOTHING = art("a4", run_id="r0", title="<b></b>", text="<p>&nbsp;</p><script>track()</script>")


def test_dofn_cleans_title_and_text_and_routes_empty_articles():
    fn = _CleanArticleFn(CleanSettings())
    [cleaned] = fn.process(GOOD)
    assert (cleaned.title, cleaned.text, cleaned.article_id) == ("Council approves budget", BODY, "a1")
    assert (cleaned.summary, cleaned.text_source) == (BODY, "feed")
    # A headline with a link is news: title-only entries (no text, or text that only repeated the title) are kept.
    [title_only] = fn.process(EMPTY)
    assert (title_only.title, title_only.text, title_only.text_source) == ("Title only", "", "none")
    [title_only] = fn.process(FURNITURE_ONLY)
    assert (title_only.title, title_only.text, title_only.text_source) == ("Budget", "", "none")
    [routed] = fn.process(NOTHING)
    assert routed.tag == DEAD_LETTER_TAG
    letter = routed.value
    assert isinstance(letter, DeadLetter)
    assert (letter.stage, letter.reason, letter.entry_key, letter.feed_url, letter.run_id) == (
        "clean",
        "empty_after_cleaning",
        "a4",
        "https://f.test/rss",
        "",
    )
    assert letter.raw_excerpt == NOTHING.text and letter.time is not None
    assert "neither title nor text" in letter.message
    # min_chars=0 still drops an entry with nothing in it; a high min_chars rejects short texts, not title-only ones.
    assert next(iter(_CleanArticleFn(CleanSettings(min_chars=0)).process(NOTHING))).tag == DEAD_LETTER_TAG
    [short] = _CleanArticleFn(CleanSettings(min_chars=500)).process(GOOD)
    assert short.tag == DEAD_LETTER_TAG and "min_chars=500" in short.value.message
    assert next(iter(_CleanArticleFn(CleanSettings(min_chars=500)).process(EMPTY))).text_source == "none"


def test_page_text_keeps_the_feed_text_as_summary():
    page = dataclasses.replace(
        GOOD, text=f"Council approves budget\n\n{BODY}", summary="<p>A short teaser.</p>", text_source="page"
    )
    [cleaned] = _CleanArticleFn(CleanSettings()).process(page)
    assert (cleaned.text, cleaned.summary, cleaned.text_source) == (BODY, "A short teaser.", "page")


def test_clean_articles_routes_outputs_and_counts():
    pipeline = TestPipeline()
    routed = pipeline | beam.Create([GOOD, EMPTY, FURNITURE_ONLY, NOTHING]) | CleanArticles()
    expected = Article(
        **{**GOOD.__dict__, "title": "Council approves budget", "text": BODY, "summary": BODY, "text_source": "feed"}
    )
    kept = routed.articles | beam.Map(lambda a: a if a.article_id == "a1" else (a.article_id, a.text_source))
    assert_that(kept, equal_to([expected, ("a2", "none"), ("a3", "none")]), label="articles")
    letters = routed.dead_letters | beam.Map(lambda d: (d.stage, d.reason, d.entry_key, d.run_id))
    assert_that(letters, equal_to([("clean", "empty_after_cleaning", "a4", "")]), label="dead_letters")
    result = pipeline.run()
    result.wait_until_finish()
    counts = [
        counter(result, f"clean/{name}")
        for name in ("articles_cleaned", "title_only", "empty_after_cleaning", "furniture_lines_removed", "failed")
    ]
    assert counts == [3, 2, 1, 4, 0]


def test_a_bug_on_one_article_becomes_a_dead_letter_and_the_others_go_through(monkeypatch):
    # The DirectRunner runs the DoFn in this process, so patching the module function it calls reaches it.
    real = clean_module.html_to_text
    sentinel = "<p>the text this version of the code cannot handle</p>"

    def html_to_text(markup: str) -> str:
        if markup == sentinel:
            raise KeyError("unexpected markup")
        return real(markup)

    monkeypatch.setattr(clean_module, "html_to_text", html_to_text)
    odd = art("a5", run_id="r0", title="Odd one", text=sentinel)
    pipeline = TestPipeline()
    routed = pipeline | beam.Create([GOOD, odd]) | CleanArticles()
    assert_that(
        routed.articles | beam.Map(lambda a: (a.article_id, a.text)), equal_to([("a1", BODY)]), label="articles"
    )
    letters = routed.dead_letters | beam.Map(
        lambda d: (d.stage, d.reason, d.entry_key, d.run_id, d.raw_excerpt, d.message)
    )
    raised_at = html_to_text.__code__.co_firstlineno + 2  # the traceback's last frame: the raise above
    message = f"KeyError: 'unexpected markup' (at test_clean.py:{raised_at} in html_to_text)"
    assert_that(letters, equal_to([("clean", "clean_error", "a5", "", sentinel, message)]), label="dead_letters")
    result = pipeline.run()
    result.wait_until_finish()
    assert counter(result, "clean/failed") == 1


# --- real feeds --------------------------------------------------------------------------------------------


def test_every_shared_feed_entry_cleans_without_error():
    if not FEEDS.exists():
        pytest.skip("../shared is absent")
    entries = kept = 0
    for path in sorted(p for p in FEEDS.rglob("*") if p.suffix in {".xml", ".rss", ".atom"}):
        for entry in feedparser.parse(path.read_bytes(), sanitize_html=False).entries:
            title = clean_title(entry.get("title", ""))
            assert "\n" not in title
            for raw in [c.get("value", "") for c in entry.get("content", [])] + [entry.get("summary", "")]:
                text = clean_text(raw, title)
                assert text == text.strip() and "\n\n\n" not in text and "<script" not in text
                assert "Continue reading..." not in text and "[link]" not in text
                entries += 1
                kept += bool(text)
    assert entries > 1000
    assert kept > 0.8 * entries


def test_the_chunk_step_keeps_the_order_and_splits_off_the_dead_letters():
    # What the per-feed loop calls: the same step as the DoFn, a chunk at a time.
    fn, cleaner = _CleanArticleFn(CleanSettings()), ArticleCleaner(CleanSettings())
    kept, letters = cleaner.clean_chunk([GOOD, NOTHING, EMPTY, FURNITURE_ONLY])
    assert [a.article_id for a in kept] == ["a1", "a2", "a3"]
    assert [(d.reason, d.entry_key) for d in letters] == [("empty_after_cleaning", "a4")]
    assert kept == [next(iter(fn.process(a))) for a in (GOOD, EMPTY, FURNITURE_ONLY)]
