"""WindowByEventTime: put each article in the fixed event-time window of its `published_at`.

The event time itself is settled by ParseEntries (published, else updated, else fetch time; see `date_source`).
Here each article is timestamped with it, assigned to a FixedWindows window of the configured size, and stamped
with the window's bounds (`window_start`, `window_end`), which name its output partition.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Iterable

import apache_beam as beam
from apache_beam.transforms import window as beam_window

from transforms.article import UTC, Article


@dataclasses.dataclass(frozen=True)
class WindowSettings:
    """`size_seconds`: the width of a window (and so of an output partition); one hour by default."""

    size_seconds: int = dataclasses.field(default=3600, metadata={"unit": "seconds"})

    def __post_init__(self) -> None:
        if self.size_seconds <= 0:
            raise ValueError("size_seconds must be positive")


def event_timestamp(article: Article) -> float:
    """The article's event time as Unix seconds (Beam's timestamp unit)."""
    return article.published_at.timestamp()


class _StampWindowFn(beam.DoFn):
    def process(self, article: Article, window=beam.DoFn.WindowParam) -> Iterable[Article]:
        start = dt.datetime.fromtimestamp(float(window.start), UTC)
        end = dt.datetime.fromtimestamp(float(window.end), UTC)
        yield dataclasses.replace(article, window_start=start, window_end=end)


class WindowByEventTime(beam.PTransform):
    """Articles -> the same articles, timestamped by `published_at` and windowed in fixed windows."""

    def __init__(self, settings: WindowSettings = WindowSettings()):
        super().__init__()
        self._settings = settings

    def expand(self, articles: beam.PCollection) -> beam.PCollection:
        return (
            articles
            | "Timestamp" >> beam.Map(lambda a: beam_window.TimestampedValue(a, event_timestamp(a)))
            | "FixedWindows" >> beam.WindowInto(beam_window.FixedWindows(self._settings.size_seconds))
            | "StampWindow" >> beam.ParDo(_StampWindowFn())
        )
