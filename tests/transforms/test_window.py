"""WindowByEventTime: fixed windows on published_at, window bounds stamped on the article."""

import datetime as dt

import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to, equal_to_per_window
from apache_beam.transforms.window import IntervalWindow

from tests.conftest import art
from transforms.clock import UTC
from transforms.window import WindowByEventTime, WindowSettings, window_bounds, window_starts_us


def ts(hour):
    return dt.datetime(2026, 11, 20, hour, tzinfo=UTC).timestamp()


ARTICLES = [art("a", 59, hours=10), art("b", 0, hours=10), art("c", 0, hours=11), art("d", 30, hours=13)]


def test_articles_land_in_their_hour_with_bounds():
    with TestPipeline() as p:
        out = p | beam.Create(ARTICLES) | WindowByEventTime(WindowSettings(3600))
        ids = out | beam.Map(lambda a: a.article_id)
        assert_that(
            ids,
            equal_to_per_window(
                {
                    IntervalWindow(ts(10), ts(11)): ["a", "b"],
                    IntervalWindow(ts(11), ts(12)): ["c"],
                    IntervalWindow(ts(13), ts(14)): ["d"],
                }
            ),
        )
        bounds = out | beam.Map(lambda a: (a.article_id, a.window_start.hour, a.window_end.hour))
        assert_that(bounds, equal_to([("a", 10, 11), ("b", 10, 11), ("c", 11, 12), ("d", 13, 14)]), label="bounds")


def test_daily_windows():
    with TestPipeline() as p:
        out = p | beam.Create([art("a", 1, hours=0), art("b", 59, hours=23)]) | WindowByEventTime(WindowSettings(86400))
        assert_that(
            out | beam.Map(lambda a: (a.window_start.isoformat(), a.window_end.isoformat())),
            equal_to([("2026-11-20T00:00:00+00:00", "2026-11-21T00:00:00+00:00")] * 2),
        )


def test_window_starts_of_many_times_are_the_windows_beam_assigns():
    rng = np.random.default_rng(5)
    # Around the epoch, far before and after it, and exactly on window edges.
    micros = np.concatenate(
        [rng.integers(-3 * 10**15, 3 * 10**15, 400), np.arange(-3, 4) * 3_600_000_000, [-1, 0, 1, 3_599_999_999]]
    )
    for size in (60, 3600, 86400):
        starts = window_starts_us(micros, size)
        for us, start in zip(micros.tolist(), starts.tolist()):
            when = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=us)
            expected, _ = window_bounds(when, size)
            assert start == (expected - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)
