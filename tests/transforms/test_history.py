"""Across runs: what the key index holds is not written again (the batch plane's decisions)."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import art
from tests.plane import run_plane
from transforms.article import Article, key_hash
from transforms.clock import UTC
from transforms.dedup import content_hash, written_matches
from transforms.neardup import NearDedupSettings

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
    index = pq.read_table(index_file(tmp_path / "index.parquet", written))
    result = run_plane(tmp_path / "run", incoming, NearDedupSettings(enabled=False), index=index)
    assert [r["article_id"][0] for r in result.rows] == ["z"]
    assert sorted((r["column"], r["key"]) for r in result.seen_keys) == sorted(
        [
            ("id_key", key_hash("a" * 32)),
            ("url_key", key_hash("https://n.test/b")),
            ("content_key", key_hash(content_hash("", "same body"))),
        ]
    )
    assert result.counters["dedup"]["already_written"] == 3


def test_the_index_is_streamed_past_the_run_keys_a_batch_at_a_time():
    run_keys = {"id_key": np.array([5, 1, 9], np.int64), "url_key": np.array([], np.int64)}
    batches = [
        pa.table({"id_key": pa.array([1, 2, None], pa.int64())}),
        pa.table({"id_key": pa.array([9], pa.int64())}),
    ]
    found = written_matches(run_keys, batches)
    assert found["id_key"].tolist() == [1, 9] and found["url_key"].tolist() == []


def test_no_index_yet(tmp_path):
    result = run_plane(tmp_path, [art("a" * 32, 0)], NearDedupSettings(enabled=False))
    assert [r["article_id"] for r in result.rows] == ["a" * 32] and "already_written" not in result.counters["dedup"]
