"""ReadWrittenKeys + DeduplicateArticles across runs: what the dataset holds is not written again."""

import datetime as dt

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.article import ARTICLE_SCHEMA, UTC, Article, article_row
from transforms.dedup import DeduplicateArticles
from transforms.history import ReadWrittenKeys, lookback_patterns

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=UTC)


def test_lookback_patterns_cover_the_dates():
    patterns = lookback_patterns("/out/articles", NOW, 2 * 86400, future_days=1)
    assert patterns == [f"/out/articles/date=2026-11-{d}/**.parquet" for d in (18, 19, 20, 21)]


def art(article_id, url="", text="t", days_ago=0):
    return Article(article_id=article_id, feed_url="f", source="s", url=url, title="x", text=text,
                   published_at=NOW - dt.timedelta(days=days_ago))


def test_written_articles_are_dropped_by_id_url_or_hash(tmp_path):
    from transforms.dedup import content_hash
    written = [art("a" * 32, url="https://n.test/a", text="a"), art("b" * 32, url="https://n.test/b", text="same body")]
    written = [a.__class__(**{**a.__dict__, "content_hash": content_hash(a.title, a.text)}) for a in written]
    directory = tmp_path / "articles" / "date=2026-11-20" / "hour=11"
    directory.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([article_row(a) for a in written], schema=ARTICLE_SCHEMA),
                   directory / "part-old.parquet")
    old = tmp_path / "articles" / "date=2026-10-01"
    old.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([article_row(art("c" * 32, text="c"))], schema=ARTICLE_SCHEMA), old / "part.parquet")

    incoming = [
        art("a" * 32, text="a, edited"),  # same id
        art("x" * 32, url="https://n.test/b", text="b, edited"),  # same URL
        art("y" * 32, text="same body"),  # same content
        art("c" * 32, text="c"),  # written, but outside the lookback: new again
        art("z" * 32, url="https://n.test/z", text="fresh"),
    ]
    p = TestPipeline()
    history = p | ReadWrittenKeys(str(tmp_path / "articles"), NOW, 14 * 86400)
    kept = p | beam.Create(incoming) | DeduplicateArticles(written=history)
    assert_that(kept | beam.Map(lambda a: a.article_id[0]), equal_to(["c", "z"]))
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query()["counters"]}
    assert counters["already_written"] == 3


def test_no_history_yet(tmp_path):
    with TestPipeline() as p:
        history = p | ReadWrittenKeys(str(tmp_path / "nothing"), NOW, 14 * 86400)
        kept = p | beam.Create([art("a" * 32)]) | DeduplicateArticles(written=history)
        assert_that(kept | beam.Map(lambda a: a.article_id), equal_to(["a" * 32]))
