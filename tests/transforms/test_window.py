"""WindowByEventTime: fixed windows on published_at, window bounds stamped on the article."""

import datetime as dt

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to, equal_to_per_window
from apache_beam.transforms.window import IntervalWindow

from transforms.article import UTC, Article
from transforms.window import WindowByEventTime, WindowSettings


def art(article_id, hour, minute):
    return Article(article_id=article_id, feed_url="f", source="s",
                   published_at=dt.datetime(2026, 11, 20, hour, minute, tzinfo=UTC))


def ts(hour):
    return dt.datetime(2026, 11, 20, hour, tzinfo=UTC).timestamp()


def test_articles_land_in_their_hour_with_bounds():
    articles = [art("a", 10, 59), art("b", 10, 0), art("c", 11, 0), art("d", 13, 30)]
    with TestPipeline() as p:
        out = p | beam.Create(articles) | WindowByEventTime(WindowSettings(3600))
        ids = out | beam.Map(lambda a: a.article_id)
        assert_that(ids, equal_to_per_window({
            IntervalWindow(ts(10), ts(11)): ["a", "b"],
            IntervalWindow(ts(11), ts(12)): ["c"],
            IntervalWindow(ts(13), ts(14)): ["d"],
        }))
        bounds = out | beam.Map(lambda a: (a.article_id, a.window_start.hour, a.window_end.hour))
        assert_that(bounds, equal_to([("a", 10, 11), ("b", 10, 11), ("c", 11, 12), ("d", 13, 14)]), label="bounds")


def test_daily_windows():
    with TestPipeline() as p:
        out = p | beam.Create([art("a", 0, 1), art("b", 23, 59)]) | WindowByEventTime(WindowSettings(86400))
        assert_that(out | beam.Map(lambda a: (a.window_start.isoformat(), a.window_end.isoformat())),
                    equal_to([("2026-11-20T00:00:00+00:00", "2026-11-21T00:00:00+00:00")] * 2))
