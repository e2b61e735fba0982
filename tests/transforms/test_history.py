"""ReadWrittenKeys + DeduplicateArticles across runs: what the key index holds is not written again."""

import datetime as dt

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import art, counter
from transforms.article import Article, key_hash
from transforms.clock import UTC
from transforms.counters import ALREADY_WRITTEN
from transforms.dedup import DeduplicateArticles, content_hash
from transforms.history import ReadWrittenKeys

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=UTC)


def index_file(path, written: list[Article]):
    """An index file as pipeline.seen_index writes it (only the key columns matter here)."""

    def hashed(values):
        return pa.array([key_hash(v) if v else None for v in values], pa.int64())

    pq.write_table(
        pa.table(
            {
                "id_key": hashed([a.article_id for a in written]),
                "url_key": hashed([a.url for a in written]),
                "content_key": hashed([content_hash(a.title, a.text) for a in written]),
            }
        ),
        path,
    )
    return str(path)


def test_written_articles_are_dropped_by_id_url_or_hash_and_their_keys_reported_seen(tmp_path):
    written = [
        art("a" * 32, 0, url="https://n.test/a", text="a"),
        art("b" * 32, 0, url="https://n.test/b", text="same body"),
    ]
    incoming = [
        art("a" * 32, 0, text="a, edited"),  # same id
        art("x" * 32, 0, url="https://n.test/b", text="b, edited"),  # same URL
        art("y" * 32, 0, text="same body"),  # same content
        art("z" * 32, 0, url="https://n.test/z", text="fresh"),
    ]
    p = TestPipeline()
    history = p | ReadWrittenKeys(index_file(tmp_path / "index.parquet", written))
    result = p | beam.Create(incoming) | DeduplicateArticles(written=history)
    assert_that(result.articles | beam.Map(lambda a: a.article_id[0]), equal_to(["z"]))
    assert_that(
        result.seen_keys,
        equal_to(
            [
                ("id_key", key_hash("a" * 32)),
                ("url_key", key_hash("https://n.test/b")),
                ("content_key", key_hash(content_hash("", "same body"))),
            ]
        ),
        label="Seen",
    )
    run = p.run()
    run.wait_until_finish()
    assert counter(run, ALREADY_WRITTEN) == 3


def test_no_index_yet():
    with TestPipeline() as p:
        history = p | ReadWrittenKeys("")
        result = p | beam.Create([art("a" * 32, 0)]) | DeduplicateArticles(written=history)
        assert_that(result.articles | beam.Map(lambda a: a.article_id), equal_to(["a" * 32]))
