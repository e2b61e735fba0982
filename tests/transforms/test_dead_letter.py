"""transforms.dead_letter: `reject`, and `dead_letter_on_error` / `letter_on_error`, the one way a DoFn's or a step's
surprise becomes a dead letter."""

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import art
from transforms.article import Article
from transforms.dead_letter import (
    DEAD_LETTER_TAG,
    MESSAGE_CHARS,
    RAW_EXCERPT_BYTES,
    DeadLetter,
    DeadLetterOutput,
    dead_letter_on_error,
    letter_on_error,
    reject,
)


def _letter(article: Article, err: Exception) -> DeadLetter:
    return reject("test", "test_error", article=article, error=err, raw=article.text)


class _HalfWayFn(beam.DoFn):
    """Yields the article, then raises for article "bad": the half-way output must not go out."""

    @dead_letter_on_error(_letter)
    def process(self, article: Article) -> Iterator[Article | DeadLetterOutput]:
        yield article
        if article.article_id == "bad":
            raise ValueError("cannot handle this one")


def test_an_element_that_raises_becomes_one_dead_letter_and_nothing_else():
    fn = _HalfWayFn()
    assert list(fn.process(art("good"))) == [art("good")]
    (output,) = fn.process(art("bad", text="<p>odd</p>"))
    assert output.tag == DEAD_LETTER_TAG
    letter = output.value
    raised_at = _HalfWayFn.process.__wrapped__.__code__.co_firstlineno + 4
    assert (letter.stage, letter.reason, letter.entry_key, letter.raw_excerpt) == (
        "test",
        "test_error",
        "bad",
        "<p>odd</p>",
    )
    assert letter.message == f"ValueError: cannot handle this one (at test_dead_letter.py:{raised_at} in process)"


def test_the_decorated_process_keeps_its_typed_outputs_in_a_pipeline():
    fn = _HalfWayFn()
    # Beam reads the return hint through the decorator: the main output is typed as the element alone.
    assert fn.default_type_hints().simple_output_type("test") == Article
    with TestPipeline() as p:
        out = p | beam.Create([art("good"), art("bad")]) | beam.ParDo(fn).with_outputs(DEAD_LETTER_TAG, main="ok")
        assert_that(out.ok | beam.Map(lambda a: a.article_id), equal_to(["good"]), label="ok")
        assert_that(
            out[DEAD_LETTER_TAG] | beam.Map(lambda d: (d.reason, d.entry_key)),
            equal_to([("test_error", "bad")]),
            label="dead",
        )


def test_reject_keeps_excerpts_and_messages_short():
    letter = reject("s", "r", feed_url="f", message="m" * (MESSAGE_CHARS + 50), raw=b"x" * (RAW_EXCERPT_BYTES + 9))
    assert len(letter.message) == MESSAGE_CHARS and len(letter.raw_excerpt) == RAW_EXCERPT_BYTES
    assert letter.time is not None and letter.run_id == ""


class _Step:
    """A per-element step (as ArticleCleaner.clean): the article back, or raises for article "bad"."""

    @letter_on_error(_letter)
    def run(self, article: Article, suffix: str = "") -> Article | DeadLetter:
        if article.article_id == "bad":
            raise ValueError("cannot handle this one")
        return art(article.article_id + suffix)


def test_a_step_that_raises_returns_one_dead_letter_instead():
    step = _Step()
    assert step.run(art("good"), "-ok") == art("good-ok")
    letter = step.run(art("bad", text="<p>odd</p>"))
    raised_at = _Step.run.__wrapped__.__code__.co_firstlineno + 3
    assert (letter.stage, letter.reason, letter.entry_key, letter.raw_excerpt) == (
        "test",
        "test_error",
        "bad",
        "<p>odd</p>",
    )
    assert letter.message == f"ValueError: cannot handle this one (at test_dead_letter.py:{raised_at} in run)"
