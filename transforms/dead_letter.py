"""DeadLetter: the record of something that could not become (or stay) an Article, and how a stage makes one.

A feed that failed to fetch or parse, an entry with nothing in it, an article left empty by cleaning: every stage
builds its rejects with `reject` (or lets `dead_letter_on_error`, or `letter_on_error` for a per-element step
outside a DoFn, build them from what it raised) and routes them to the `dead_letters` output; WriteDeadLetters
writes them all to one place, with DEAD_LETTER_SCHEMA.
A stage never stamps the run id: the sink sets the `run_id` column of every row it writes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import traceback
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.pvalue import TaggedOutput

from transforms.article import Article
from transforms.clock import utcnow

# Dead letters keep at most this much of the raw input: enough to debug, never a copy of a whole feed.
RAW_EXCERPT_BYTES = 4096
# And at most this much of a message (some libraries put a whole document in an exception's text).
MESSAGE_CHARS = 1000


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A rejected feed or entry, with the stage that rejected it and why."""

    stage: str
    reason: str
    feed_url: str
    message: str = ""
    entry_key: str = ""
    status: int | None = None
    retry_after_seconds: float | None = None
    raw_excerpt: str = ""
    time: dt.datetime | None = None
    run_id: str = ""  # set in the written row by WriteDeadLetters, not by the stage that rejects

    @property
    def is_page(self) -> bool:
        """True for a page that could not be fetched or extracted: its article was kept with the feed's text, so
        it is not a lost entry and does not count in the reconciliation."""
        return self.stage == PAGE_STAGE

    @property
    def is_entry(self) -> bool:
        """True when this rejects one entry (it counts in the reconciliation), False for a whole feed or a page."""
        return bool(self.entry_key) and not self.is_page


def reject(
    stage: str,
    reason: str,
    *,
    article: Article | None = None,
    feed_url: str = "",
    entry_key: str = "",
    message: str = "",
    error: BaseException | None = None,
    status: int | None = None,
    retry_after_seconds: float | None = None,
    raw: bytes | str | None = None,
    time: dt.datetime | None = None,
) -> DeadLetter:
    """The one way a stage builds a DeadLetter.

    `article` gives the feed URL and the entry key (its id) unless they are given. `error` gives the message when
    there is none: the exception's type and text and where it was raised. `raw` is kept as an excerpt of at most
    RAW_EXCERPT_BYTES, the message is cut to MESSAGE_CHARS, and `time` defaults to now. No run id: the sink stamps it.
    """
    if article is not None:
        feed_url = feed_url or article.feed_url
        entry_key = entry_key or article.article_id
    if error is not None and not message:
        message = describe_error(error)
    return DeadLetter(
        stage=stage,
        reason=reason,
        feed_url=feed_url,
        entry_key=entry_key,
        message=message[:MESSAGE_CHARS],
        status=status,
        retry_after_seconds=retry_after_seconds,
        raw_excerpt=excerpt(raw),
        time=time or utcnow(),
    )


def describe_error(error: BaseException) -> str:
    """`Type: text (at file.py:line in function)`: the traceback's last frame is enough to find the bug."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


class Routed(NamedTuple):
    """What every stage returns: the articles that go on, and the dead letters it produced."""

    articles: beam.PCollection
    dead_letters: beam.PCollection


DEAD_LETTER_TAG = "dead_letters"
# A DoFn's dead-letter output, in its return hint: Beam (2.78+) then types the main output as its element alone.
DeadLetterOutput = TaggedOutput[Literal[DEAD_LETTER_TAG], DeadLetter]
# The stage of dead letters about an article's page (transforms/extract.py): the article itself went on.
PAGE_STAGE = "extract"


def dead_letter_on_error(letter: Callable[[Any, Exception], DeadLetter]):
    """Decorates a DoFn's `process(self, element, ...)`: when it raises, the element becomes `letter(element,
    error)` on the dead-letter output instead of failing the bundle, and nothing else it yielded goes out (as Beam's
    `with_exception_handling()` with `partial=False`, but the reject is a DeadLetter and the DoFn's own typed
    outputs and return hint are kept). For a bug or a library surprise met on one element; a reject the stage
    decides on itself is yielded with `reject` like any other output."""

    def decorate(process):
        @functools.wraps(process)
        def guarded(self, element, *args, **kwargs):
            try:
                outputs = list(process(self, element, *args, **kwargs))
            except Exception as err:  # noqa: BLE001 - one element's surprise costs that element, never the run
                outputs = [TaggedOutput(DEAD_LETTER_TAG, letter(element, err))]
            yield from outputs

        return guarded

    return decorate


_TS = pa.timestamp("us", tz="UTC")

DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("feed_url", pa.string()),
        pa.field("entry_key", pa.string()),
        pa.field("status", pa.int32()),
        pa.field("retry_after_seconds", pa.float64()),
        pa.field("message", pa.string()),
        pa.field("raw_excerpt", pa.string()),
        pa.field("time", _TS),
        pa.field("run_id", pa.string()),
    ]
)


def dead_letter_row(letter: DeadLetter) -> dict[str, Any]:
    """The Parquet row of a dead letter."""
    return {name: getattr(letter, name) for name in DEAD_LETTER_SCHEMA.names}


def excerpt(raw: bytes | str | None, limit: int = RAW_EXCERPT_BYTES) -> str:
    """At most `limit` bytes of `raw` as text, cut on a character boundary."""
    if raw is None:
        return ""
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else bytes(raw)
    return data[:limit].decode("utf-8", "ignore")


def letter_on_error(letter: Callable[[Any, Exception], DeadLetter]):
    """Decorates a per-element step `step(self, element, ...) -> result` (a stage's own step, which its DoFn and
    the per-feed loop both call): when it raises, the result is `letter(element, error)` instead, as
    `dead_letter_on_error` does for a DoFn's `process`."""

    def decorate(step):
        @functools.wraps(step)
        def guarded(self, element, *args, **kwargs):
            try:
                return step(self, element, *args, **kwargs)
            except Exception as err:  # noqa: BLE001 - one element's surprise costs that element, never the run
                return letter(element, err)

        return guarded

    return decorate
