"""The key index of what was written (pipeline.seen_index, `_state/seen/`): generations, expiry by last seen, journals of
crashed runs, rebuilds. Real Parquet files on disk, a fixed clock; no Beam."""

import datetime as dt
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import seen_index, storage
from pipeline.layout import OutputLayout
from tests.conftest import art
from transforms.article import ARTICLE_SCHEMA, article_row, key_hash
from transforms.clock import UTC

T = dt.datetime(2027, 1, 10, tzinfo=UTC)
DAY = dt.timedelta(days=1)
FORGET = 30 * 86400


def row(article_id: str, last_seen: dt.datetime, feed: str = "https://f.test/rss") -> dict:
    return {
        "id_key": key_hash(article_id),
        "url_key": key_hash(f"https://n.test/{article_id}"),
        "content_key": None,
        "feed_url": feed,
        "first_seen": last_seen,
        "last_seen": last_seen,
    }


def write_generation(out: Path, seq: int, run_id: str, rows: list[dict], written_at: dt.datetime, record=True) -> None:
    table = pa.Table.from_pylist(rows, schema=seen_index.SEEN_SCHEMA)
    name = f"gen-{seq:012d}-{run_id}.parquet"
    storage.write_parquet(
        OutputLayout(str(out)).seen(name),
        table.replace_schema_metadata({b"newsbeam.written_at": written_at.isoformat().encode()}),
    )
    if record:
        (out / "_runs").mkdir(parents=True, exist_ok=True)
        (out / "_runs" / f"{run_id}.json").write_text(json.dumps({"seen_index": name}))


def write_articles(out: Path, partition: str, ids: list[str], name: str = "part-x.parquet") -> None:
    directory = out / "articles" / partition
    directory.mkdir(parents=True, exist_ok=True)
    rows = [
        article_row(
            art(
                i,
                url=f"https://n.test/{i}",
                content_hash=f"h{i}",
                published_at=T - 400 * DAY,
                fetched_at=T - 5 * DAY,
            )
        )
        for i in ids
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=ARTICLE_SCHEMA), directory / name)


def ids_in(index: seen_index.SeenIndex) -> set[int]:
    return set(index.table.column("id_key").to_pylist())


def test_a_key_is_forgotten_by_last_seen_counted_to_the_previous_run(tmp_path):
    rows = [row("gone", T - 31 * DAY), row("recent", T - 29 * DAY)]
    write_generation(tmp_path, 1, "r1", rows, written_at=T)
    # 40 days with no run at all: the time away counts up to the previous run, so nothing more is forgotten.
    index = seen_index.load_seen_index(str(tmp_path), "r2", T + 40 * DAY, FORGET)
    assert ids_in(index) == {key_hash("recent")} and index.seq == 1
    assert pq.read_table(index.base_path).num_rows == 1


def test_only_a_generation_whose_run_was_recorded_counts(tmp_path):
    write_generation(tmp_path, 1, "r1", [row("a", T)], written_at=T)
    write_generation(tmp_path, 2, "r2", [row("a", T), row("never-committed", T)], written_at=T, record=False)
    index = seen_index.load_seen_index(str(tmp_path), "r3", T + DAY, FORGET)
    assert ids_in(index) == {key_hash("a")} and index.seq == 1


def test_next_generation_moves_last_seen_of_seen_keys_and_unread_feeds_and_adds_the_written():
    index = seen_index.SeenIndex(
        pa.Table.from_pylist(
            [
                row("seen", T - 9 * DAY),
                row("unseen", T - 9 * DAY),
                row("quiet", T - 9 * DAY, feed="https://q.test/rss"),
            ],
            schema=seen_index.SEEN_SCHEMA,
        )
    )
    seen = pa.table(
        {"column": ["url_key"], "key": [key_hash("https://n.test/seen")]}, schema=seen_index.SEEN_KEYS_SCHEMA
    )
    written = pa.Table.from_pylist(
        [{**row("new", T), "article_id": "new", "partition": "date=2027-01-10"}], schema=seen_index.JOURNAL_SCHEMA
    )
    table = seen_index.next_seen_index(index, T, seen, written, unread_feeds={"https://q.test/rss"})
    last_seen = dict(zip(table.column("id_key").to_pylist(), table.column("last_seen").to_pylist()))
    assert last_seen == {key_hash("seen"): T, key_hash("unseen"): T - 9 * DAY, key_hash("quiet"): T, key_hash("new"): T}


def test_a_crashed_runs_journal_adds_exactly_the_articles_it_committed(tmp_path):
    write_generation(tmp_path, 1, "r1", [row("old", T)], written_at=T)
    # r2 was killed while renaming: "committed" reached its partition (since compacted into another file name),
    # "staged-only" never did.
    write_articles(tmp_path, "date=2026-01-01/hour=07", ["committed"], name="part-compacted.parquet")
    journal = [
        {**row(i, T + DAY), "article_id": i, "partition": "date=2026-01-01/hour=07"}
        for i in ("committed", "staged-only")
    ]
    storage.write_parquet(
        OutputLayout(str(tmp_path)).seen("pending-r2.parquet"),
        pa.Table.from_pylist(journal, schema=seen_index.JOURNAL_SCHEMA),
    )
    index = seen_index.load_seen_index(str(tmp_path), "r3", T + 2 * DAY, FORGET)
    assert ids_in(index) == {key_hash("old"), key_hash("committed")}
    assert [Path(p).name for p in index.journals] == ["pending-r2.parquet"]
    seen_index.settle_seen_index(str(tmp_path), "gen-000000000002-r3.parquet")
    assert not list((tmp_path / "_state" / "seen").glob("pending-*"))


def test_missing_or_corrupt_index_is_rebuilt_from_the_dataset_with_a_warning(tmp_path, caplog):
    write_articles(tmp_path, "date=2025-12-01/hour=10", ["a", "b"])
    write_articles(tmp_path, "date=2026-12-30/hour=10", ["a", "c"], name="part-y.parquet")  # an old duplicate row
    with caplog.at_level(logging.WARNING, logger="newsbeam"):
        missing = seen_index.load_seen_index(str(tmp_path), "r1", T, FORGET)
    assert "no key index" in caplog.text and missing.rebuilt
    assert ids_in(missing) == {key_hash(i) for i in "abc"} and missing.table.num_rows == 3
    assert set(missing.table.column("last_seen").to_pylist()) == {T}  # remembered for forget_after from now

    write_generation(tmp_path, 1, "r1", [row("a", T)], written_at=T)
    Path(OutputLayout(str(tmp_path)).seen("gen-000000000001-r1.parquet")).write_bytes(b"PAR1 not really")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="newsbeam"):
        corrupt = seen_index.load_seen_index(str(tmp_path), "r2", T, FORGET)
    assert "unreadable" in caplog.text and ids_in(corrupt) == {key_hash(i) for i in "abc"}


def test_reindex_puts_a_rebuilt_generation_in_force(tmp_path):
    write_articles(tmp_path, "date=2025-12-01/hour=10", ["a", "b"])
    write_generation(tmp_path, 7, "r1", [row("a", T)], written_at=T)
    name, rows = seen_index.reindex(str(tmp_path), T)
    assert rows == 2 and name.startswith("gen-000000000008-reindex-")
    assert [p.name for p in (tmp_path / "_state" / "seen").iterdir()] == [name]
    assert ids_in(seen_index.load_seen_index(str(tmp_path), "r2", T, FORGET)) == {key_hash("a"), key_hash("b")}
