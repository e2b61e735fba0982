"""WriteParquetPartitions / WriteDeadLetters: every row written is read back, in its partition, sorted."""

import datetime as dt

import apache_beam as beam
import duckdb
import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from tests.conftest import T0, art
from transforms.article import ARTICLE_SCHEMA
from transforms.clock import UTC
from transforms.dead_letter import DEAD_LETTER_SCHEMA, reject
from transforms.sink import SinkSettings, WriteDeadLetters, WriteParquetPartitions, partition_depth, partition_path
from transforms.window import WindowByEventTime, WindowSettings


@pytest.mark.parametrize(
    "seconds, expected",
    [(86400, "date=2026-11-20"), (3600, "date=2026-11-20/hour=07"), (900, "date=2026-11-20/hour=07/minute=45")],
)
def test_partition_path(seconds, expected):
    start = dt.datetime(2026, 11, 20, 7, 45, tzinfo=UTC)
    assert partition_path(start, seconds) == expected
    assert partition_depth(seconds) == expected.count("/") + 1


def articles(n, hours):
    # Published times deliberately out of order within each hour, to check the sort.
    return [
        art(
            f"{i:05d}",
            (7 * i) % 60,
            hours=i % hours,
            title=f"t{i}",
            text="x",
            language="en",
            topic="World",
        )
        for i in range(n)
    ]


def write(tmp_path, items, window_seconds=3600, run_id="run1"):
    with TestPipeline() as p:
        (
            p
            | beam.Create(items)
            | WindowByEventTime(WindowSettings(window_seconds))
            | WriteParquetPartitions(SinkSettings(str(tmp_path), run_id, window_seconds))
        )


def test_every_row_is_read_back_from_its_partition(tmp_path):
    # 30 hourly partitions: more than WriteToFiles keeps open per bundle (20), so its spill path is used too.
    items = articles(900, 30)
    write(tmp_path, items)
    base = tmp_path / "articles"
    files = sorted(base.rglob("*.parquet"))
    assert len({f.parent for f in files}) == 30
    assert all(f.name.startswith("part-run1-") for f in files)
    assert not [p for p in base.rglob("*") if p.name.startswith(".temp")]

    table = ds.dataset(str(base), format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 900
    assert sorted(table.column("article_id").to_pylist()) == sorted(a.article_id for a in items)
    for f in files:
        t = pq.read_table(f)
        assert t.schema.equals(ARTICLE_SCHEMA, check_metadata=False)
        published = t.column("published_at").to_pylist()
        assert published == sorted(published)
        hour = int(f.parent.name.split("=")[1])
        assert {p.hour for p in published} == {hour}
    assert pq.ParquetFile(files[0]).metadata.row_group(0).column(0).compression == "ZSTD"

    con = duckdb.connect()
    rows = con.execute(
        f"select date, cast(hour as int) as h, count(*) from read_parquet('{base}/**/*.parquet', hive_partitioning=true) "
        "group by all order by date, h"
    ).fetchall()
    assert len(rows) == 30 and sum(r[2] for r in rows) == 900
    assert rows[0][:2] == (dt.date(2026, 11, 20), 0)


def test_two_runs_add_files_never_overwrite(tmp_path):
    items = articles(10, 2)
    write(tmp_path, items, run_id="run1")
    write(tmp_path, items, run_id="run2")
    table = ds.dataset(str(tmp_path / "articles"), format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 20
    # The sink stamps each row with its own run's id (the articles carry none).
    assert sorted(table.column("run_id").to_pylist()) == ["run1"] * 10 + ["run2"] * 10


def test_dead_letters_are_written_with_their_schema_and_the_run_id(tmp_path):
    letters = [reject("fetch", "timeout", feed_url=f"https://f{i}.test", time=T0) for i in range(3)]
    letters.append(reject("clean", "empty_after_cleaning", article=art("k", 0), raw="<p></p>" + "x" * 5000, time=T0))
    with TestPipeline() as p:
        p | beam.Create(letters) | WriteDeadLetters(SinkSettings(str(tmp_path), "run1"))
    table = pq.read_table(tmp_path / "dead_letter")
    assert table.schema.equals(DEAD_LETTER_SCHEMA, check_metadata=False)
    assert sorted(table.column("reason").to_pylist()) == ["empty_after_cleaning", "timeout", "timeout", "timeout"]
    assert set(table.column("run_id").to_pylist()) == {"run1"}
    [clean] = table.filter(pa.compute.equal(table.column("stage"), "clean")).to_pylist()
    assert (clean["feed_url"], clean["entry_key"], len(clean["raw_excerpt"])) == ("https://f.test/rss", "k", 4096)
