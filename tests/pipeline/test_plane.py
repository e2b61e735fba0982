"""The batch graph's data plane (pipeline/plane/): no shuffle or side input carries an article, and every runner
writes the same rows."""

import datetime as dt
import subprocess
import sys
import typing

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from apache_beam.transforms.core import GroupByKey

from pipeline.build import build
from pipeline.config import load_config
from pipeline.plane import staging
from pipeline.plane.decide import DecideSettings, WindowShard, _shard_of
from pipeline.plane.staging import StagedChunk
from tests.conftest import T0
from tests.plane import run_plane
from transforms.article import Article
from transforms.dead_letter import DeadLetter
from transforms.feed import FeedSource
from transforms.feed_report import FeedReport

NOW = "2026-12-01T00:00:00Z"
# What may cross a Beam boundary: paths and counts, dead letters, reports, feed configs, keys and counts.
SMALL = {StagedChunk, WindowShard, DeadLetter, FeedReport, FeedSource, int, str, bytes, type(None), None}


def _leaves(hint) -> set:
    """The classes a type hint is made of (Tuple[int, X] -> {int, X})."""
    args = getattr(hint, "tuple_types", None) or getattr(hint, "union_types", None) or typing.get_args(hint)
    if hasattr(hint, "inner_type"):
        args = (hint.inner_type,)
    if args:
        return set().union(*(_leaves(a) for a in args))
    return {hint}


def _typed_sources(pcoll, seen=None) -> set:
    """The element types of `pcoll`, or of its nearest typed ancestors where it is untyped (Any)."""
    seen = seen if seen is not None else set()
    if id(pcoll) in seen:
        return set()
    seen.add(id(pcoll))
    hint = pcoll.element_type
    if hint is not None and "Any" not in str(hint):
        return _leaves(hint)
    producer = pcoll.producer
    found = set()
    for upstream in producer.main_inputs.values() if producer else ():
        found |= _typed_sources(upstream, seen)
    return found


def test_no_shuffle_or_side_input_carries_an_article():
    p = beam.Pipeline()
    build(p, load_config(), "graph", dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc))
    crossings, parts = [], list(p.transforms_stack[0].parts)
    while parts:
        part = parts.pop()
        parts.extend(part.parts)
        if isinstance(part.transform, GroupByKey):
            crossings += [(part.full_label, pcoll) for pcoll in part.main_inputs.values()]
        crossings += [(part.full_label, side.pvalue) for side in part.side_inputs]
    assert len(crossings) >= 5
    for label, pcoll in crossings:
        kinds = _typed_sources(pcoll)
        assert Article not in kinds, label
        assert kinds <= SMALL | {k for k in kinds if getattr(k, "__name__", "") in ("Timestamp", "PaneInfo")}, (
            label,
            kinds,
        )


def _rows(output) -> list[tuple]:
    table = ds.dataset(str(output / "articles"), format="parquet", partitioning="hive").to_table()
    return sorted(tuple(sorted((k, str(v)) for k, v in r.items() if k != "run_id")) for r in table.to_pylist())


@pytest.mark.parametrize(
    "runner_args",
    [
        ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"],
    ],
    ids=["multi_processing", "portable"],
)
def test_every_runner_writes_the_same_rows(tmp_path, runner_args):
    outputs = []
    for name, extra in (("in_memory", ["--direct_running_mode=in_memory"]), ("other", runner_args)):
        out = tmp_path / name
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "run", "--output", str(out), "--now", NOW, "--quiet", *extra],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(_rows(out))
    assert outputs[0] and outputs[0] == outputs[1]


def _article(i: int, minutes: float, text: str, summary: str = "", url: str = "") -> Article:
    return Article(
        article_id=f"a{i:03d}",
        feed_url="https://feed.test/rss",
        source="feed",
        url=url or f"https://feed.test/{i}",
        guid=f"g{i}",
        title=f"Title {i}",
        text=text,
        summary=summary or text,
        tags=(f"t{i % 3}",),
        published_at=T0 + dt.timedelta(minutes=minutes),
        language="en",
    )


def test_windows_in_shards_of_one_give_the_rows_of_one_shard(tmp_path):
    # Stage C holds a shard's kept rows: shards are cut by bytes, down to one window each. The rows written, the
    # decisions they carry and the summary staged once when it is the text must not depend on the cut.
    words = "budget council vote schools roads water parks library taxes housing".split()
    articles = [
        _article(i, minutes=17 * i, text=" ".join(words[(i + j) % 10] + str(i) for j in range(40))) for i in range(30)
    ]
    articles.append(_article(30, minutes=5, text=articles[3].text, url=articles[3].url))  # an exact copy
    articles.append(_article(31, minutes=200, text="Text of a page.", summary="The feed's own summary."))
    whole = run_plane(tmp_path / "whole", articles)
    split = run_plane(tmp_path / "split", articles, shard_bytes=1)
    windows = {r["window_start"] for r in whole.rows}
    assert len(windows) >= 8 and len(whole.rows) == 31
    assert sorted(whole.rows, key=lambda r: r["article_id"]) == sorted(split.rows, key=lambda r: r["article_id"])
    assert whole.counters == split.counters
    summaries = {r["article_id"]: r["summary"] for r in whole.rows}
    assert summaries["a031"] == "The feed's own summary." and summaries["a005"] == articles[5].text


def test_signatures_are_written_a_date_at_a_time_whatever_is_held(tmp_path, monkeypatch):
    # The signatures later runs match against are gathered by date and written SIGNATURE_FLUSH_BYTES at a time: the
    # rows kept must not depend on when they are flushed, and with room to hold them a date's file is one row group
    # (a write per chunk and date made a row group of a few rows each).
    import pyarrow.parquet as pq

    from pipeline.plane import decide

    words = "budget council vote schools roads water parks library taxes housing".split()
    articles = [
        _article(i, minutes=97 * i, text=" ".join(words[(i + j) % 10] + str(i) for j in range(40))) for i in range(60)
    ]
    held = run_plane(tmp_path / "held", articles, chunk_size=7)
    monkeypatch.setattr(decide, "SIGNATURE_FLUSH_BYTES", 1)
    flushed = run_plane(tmp_path / "flushed", articles, chunk_size=7)
    dates = {r["published_at"].date() for r in held.signatures}
    assert len(dates) >= 3 and len(held.signatures) == 60
    key = lambda r: r["article_id"]  # noqa: E731
    assert sorted(held.signatures, key=key) == sorted(flushed.signatures, key=key)
    files = sorted((tmp_path / "held" / "out" / "signatures").rglob("*.parquet"))
    assert len(files) == len(dates)
    assert all(pq.ParquetFile(f).metadata.num_row_groups == 1 for f in files)
    flushed_files = (tmp_path / "flushed" / "out" / "signatures").rglob("*.parquet")
    assert sum(pq.ParquetFile(f).metadata.num_row_groups for f in flushed_files) > len(files)


def test_a_rows_file_gives_back_exactly_the_rows_of_the_windows_asked_for(tmp_path, monkeypatch):
    # Batches end at window ends once they hold BATCH_BYTES: a range may start or end inside a batch, and the rows
    # outside it must not come back (stage C would write them in two shards).
    monkeypatch.setattr(staging, "BATCH_BYTES", 2_000)
    words = "budget council vote schools roads water parks library taxes housing".split()
    articles = [
        _article(i, minutes=23 * i, text=" ".join(words[(i * j) % 10] + str(i) for j in range(30))) for i in range(40)
    ]
    settings = staging.StageSettings(str(tmp_path), window_seconds=3600)
    rows, keys, first, last = staging.chunk_tables(articles, 0, settings)
    path = str(tmp_path / "rows.arrow")
    staging.write_rows(path, rows, keys.column("row_bytes").to_numpy())
    assert pa.ipc.open_file(path).num_record_batches > 2  # cut, and not a batch per window
    starts = rows.column("window_start").cast(pa.int64()).to_pylist()
    windows = sorted(set(starts))
    assert len(windows) > pa.ipc.open_file(path).num_record_batches
    for lo, hi in [
        (windows[0], windows[-1]),
        (windows[1], windows[1]),
        (windows[2], windows[-3]),
        (last + 1, last + 9),
    ]:
        got = pa.Table.from_batches(list(staging.read_rows(path, lo, hi)), rows.schema)
        assert got.column("uid").to_pylist() == [
            u for u, s in zip(rows.column("uid").to_pylist(), starts) if lo <= s <= hi
        ]
    assert (first, last) == (windows[0], windows[-1])


def test_shards_are_cut_for_every_writer_of_stage_c():
    # Stage C's processes take a shard each: a run of one shard's bytes left all but one idle. Shards come in a
    # multiple of the writers, of about equal bytes, and a small run stays whole.
    mib = 1 << 20

    def shards(window_bytes, **settings):
        cut = _shard_of(np.array(window_bytes), DecideSettings("", "", "", "", **settings))
        assert (np.diff(cut) >= 0).all()  # consecutive windows
        return np.bincount(np.unique(cut, return_inverse=True)[1], weights=window_bytes).tolist()

    assert shards([mib] * 60, writers=2) == [30 * mib, 30 * mib]
    assert shards([mib] * 60, writers=1) == [60 * mib]
    assert shards([mib] * 6, writers=2) == [6 * mib]  # under MIN_SHARD_BYTES a writer: one shard
    assert shards([mib] * 180, writers=2) == [45 * mib] * 4  # three by shard_bytes, made four
    assert max(shards([mib] * 1000, writers=2)) <= 64 * mib
    assert shards([3, 5, 2], writers=2, shard_bytes=1) == [3, 5, 2]  # a window a shard, never split
