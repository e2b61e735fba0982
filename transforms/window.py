"""WindowByEventTime: put each article in the fixed event-time window of its `published_at` (the streaming graph).

The event time itself is settled by ParseEntries (published, else updated, else fetch time; see `date_source`).
Here each article is timestamped with it, stamped with the bounds (`window_start`, `window_end`) of the FixedWindows
window of the configured size that holds it, which name its output partition, and assigned to that window. The batch
graph stamps the same bounds itself, a column at a time, while it stages a chunk (pipeline/plane/staging.py), and
writes each window's rows from the staged files: its articles never enter a Beam window.

A window fires when the watermark passes its end, then once more for each bundle of late articles (discarding
mode: a late pane holds only the new articles), until the watermark passes `window_end + allowed_lateness +
late_margin`. Articles too late for that never reach this stage: RouteTooLate sends them to the dead letters first,
by the rule in `lateness_deadline`.

RouteTooLate: Beam drops an element that reaches a window after the watermark has passed the window's end
plus the allowed lateness, without a trace, and a DoFn cannot read the watermark. So the rule uses what the article
carries: it is too late when `window_end + allowed_lateness <= fetched_at` (see `is_too_late`). The source's
watermark follows its ticks, which are never after the fetch, so an article this rule lets through is one Beam
accepts, as long as it takes less than `late_margin_seconds` from its fetch to the window (the windows stay open
that much longer). WindowDeadLetters puts the dead letters in windows of their own so a streaming job writes them
as it runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger as beam_trigger
from apache_beam.transforms import window as beam_window
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms.article import Article
from transforms.clock import UTC
from transforms.dead_letter import DEAD_LETTER_TAG, DeadLetter, DeadLetterOutput, Routed, reject

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class WindowSettings:
    """`size_seconds`: the width of a window (and so of an output partition); one hour by default.

    Streaming only: `allowed_lateness_seconds` is how long after a window's end (by the fetch time) an article is
    still written into it, as a late pane; a later one is a dead letter `too_late`. `late_margin_seconds` is how
    much longer Beam keeps the window open, for articles already accepted but still on their way to the window
    (see RouteTooLate: without it, an article delayed inside the pipeline could be dropped by Beam without a trace).
    """

    size_seconds: int = dataclasses.field(default=3600, metadata={"unit": "seconds"})
    allowed_lateness_seconds: int = dataclasses.field(default=86400, metadata={"unit": "seconds"})
    late_margin_seconds: int = dataclasses.field(default=3600, metadata={"unit": "seconds"})

    def __post_init__(self) -> None:
        if self.size_seconds <= 0:
            raise ValueError("size_seconds must be positive")
        if self.allowed_lateness_seconds < 0:
            raise ValueError("allowed_lateness_seconds must not be negative")
        if self.late_margin_seconds < 0:
            raise ValueError("late_margin_seconds must not be negative")


def event_timestamp(article: Article) -> float:
    """The article's event time as Unix seconds (Beam's timestamp unit)."""
    return article.published_at.timestamp()


def window_bounds(event_time: dt.datetime, size_seconds: int) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end) of the fixed window that holds `event_time`, exactly as Beam's FixedWindows assigns it."""
    window = beam_window.FixedWindows(size_seconds).assign(
        beam_window.WindowFn.AssignContext(Timestamp.from_utc_datetime(event_time))
    )[0]
    return _datetime(window.start), _datetime(window.end)


def window_starts_us(published_us: np.ndarray, window_seconds: int) -> np.ndarray:
    """`window_bounds`' start for many event times at once (microseconds since the epoch): floor division, as
    Beam's FixedWindows (offset 0) assigns it, also before 1970. The batch plane stamps a chunk's rows with it."""
    size = window_seconds * 1_000_000
    return published_us - np.mod(published_us, size)


def _datetime(timestamp: Timestamp) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=timestamp.micros)


def lateness_deadline(event_time: dt.datetime, settings: WindowSettings) -> dt.datetime:
    """The last moment an article with this event time may arrive and still be written: its window's end plus
    the allowed lateness. Compared with the fetch time by RouteTooLate."""
    return window_bounds(event_time, settings.size_seconds)[1] + dt.timedelta(seconds=settings.allowed_lateness_seconds)


class _StampFn(beam.DoFn):
    """Timestamps an article with its event time and stamps it with the bounds of the fixed window that
    FixedWindows assigns it (computed here, so one step does both before WindowInto)."""

    def __init__(self, size_seconds: int):
        self._size = size_seconds

    def process(self, article: Article) -> Iterator[Article]:  # each wrapped in a TimestampedValue
        start, end = window_bounds(article.published_at, self._size)
        stamped = dataclasses.replace(article, window_start=start, window_end=end)
        yield beam_window.TimestampedValue(stamped, event_timestamp(article))


class WindowByEventTime(beam.PTransform):
    """Articles -> the same articles, timestamped by `published_at`, stamped with the bounds of their fixed window
    and assigned to it, with the watermark trigger, late firings and the allowed lateness of the module doc.

    For unbounded input: after a batch graph's global-window GroupByKeys the watermark is at the end of time, so an
    article timestamped back to its publication would be late for its window there, and a runner that keeps to the
    watermark in batch too (Prism) drops late data without a trace.
    """

    def __init__(self, settings: WindowSettings = WindowSettings()):
        super().__init__()
        self._settings = settings

    def expand(self, articles: beam.PCollection) -> beam.PCollection:
        # Fire on the watermark, then once per late bundle, discarding what was fired.
        s = self._settings
        return (
            articles
            | "Stamp" >> beam.ParDo(_StampFn(s.size_seconds))
            | "FixedWindows"
            >> beam.WindowInto(
                beam_window.FixedWindows(s.size_seconds),
                trigger=beam_trigger.AfterWatermark(late=beam_trigger.AfterCount(1)),
                accumulation_mode=beam_trigger.AccumulationMode.DISCARDING,
                allowed_lateness=Duration(seconds=s.allowed_lateness_seconds + s.late_margin_seconds),
            )
        )


# Articles too late for their window, and the dead letters' own windows.

TOO_LATE = "too_late"


def is_too_late(article: Article, settings: WindowSettings) -> bool:
    """True when the article was fetched at or after its window's end plus the allowed lateness."""
    if article.fetched_at is None:  # ParseEntries always sets it; without it there is no "now" to judge by
        return False
    return lateness_deadline(article.published_at, settings) <= article.fetched_at


class _RouteTooLateFn(beam.DoFn):
    def __init__(self, settings: WindowSettings):
        self._settings = settings
        self._in_time = Metrics.counter("window", "in_time")
        self._too_late = Metrics.counter("window", TOO_LATE)

    def process(self, article: Article) -> Iterator[Article | DeadLetterOutput]:
        if not is_too_late(article, self._settings):
            self._in_time.inc()
            yield article
            return
        self._too_late.inc()
        start, end = window_bounds(article.published_at, self._settings.size_seconds)
        yield beam.pvalue.TaggedOutput(
            DEAD_LETTER_TAG,
            reject(
                "window",
                TOO_LATE,
                article=article,
                entry_key=article.url or article.guid,
                message=(
                    f"published {article.published_at.isoformat()}, fetched {article.fetched_at.isoformat()}: "
                    f"window {start.isoformat()}..{end.isoformat()} took late articles for "
                    f"{self._settings.allowed_lateness_seconds}s after its end"
                ),
                raw=f"{article.title}\n\n{article.text}",
            ),
        )


class RouteTooLate(beam.PTransform):
    """Articles -> Routed(articles still in time for their window, dead letters `too_late` for the others)."""

    def __init__(self, settings: WindowSettings = WindowSettings()):
        super().__init__()
        self._settings = settings

    def expand(self, articles: beam.PCollection):
        routed = articles | "Route" >> beam.ParDo(_RouteTooLateFn(self._settings)).with_outputs(
            DEAD_LETTER_TAG, main="articles"
        )
        return Routed(routed.articles, routed[DEAD_LETTER_TAG])


def _at_rejection_time(letter: DeadLetter, timestamp=beam.DoFn.TimestampParam) -> Iterable:
    yield beam_window.TimestampedValue(
        letter, Timestamp.from_utc_datetime(letter.time) if letter.time is not None else timestamp
    )


class WindowDeadLetters(beam.PTransform):
    """DeadLetters -> the same, in fixed windows of their rejection time, ready for a windowed write.

    Fixed windows rather than the global window with a processing-time trigger: they close as the watermark passes,
    which TestStream drives in tests and a drained job completes, and a dead letter is rejected after its poll, so it
    is on time. Should one arrive late all the same, it gets a late pane of its own (allowed lateness as articles').
    """

    def __init__(self, size_seconds: int = 300, window: WindowSettings = WindowSettings()):
        super().__init__()
        self._size = size_seconds
        self._lateness = window.allowed_lateness_seconds + window.late_margin_seconds

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        return (
            letters
            | "RejectionTime" >> beam.FlatMap(_at_rejection_time)
            | "FixedWindows"
            >> beam.WindowInto(
                beam_window.FixedWindows(self._size),
                trigger=beam_trigger.AfterWatermark(late=beam_trigger.AfterCount(1)),
                accumulation_mode=beam_trigger.AccumulationMode.DISCARDING,
                allowed_lateness=Duration(seconds=self._lateness),
            )
        )
