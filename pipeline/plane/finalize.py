"""Stage C of the batch graph: the rows each shard of windows keeps, read back from staging and written as the
output's Parquet partitions.

    paths = decided.shards | "WriteArticles" >> WriteWindows(SinkSettings(...))

For each WindowShard (pipeline/plane/decide.py) it reads the shard's windows from the staged row files (only the row
groups whose `window_start` statistics overlap them), keeps the rows the decisions kept, sets the columns they
decided (`duplicate_count`, `cluster_id`, `cluster_size`, `duplicate_of`) and the run id, and writes one file per
window, rows sorted by (published_at, article_id): the partition directories, schema and file names of
transforms.sink.WriteParquetPartitions, which the driver's commit (pipeline.state) moves into place. File names are
fixed by the run and the window, so a retried bundle writes over its own files. It counts what it writes under the
sink's counters (`sink/articles`, by language, by topic).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipeline.plane.decide import WindowShard
from pipeline.plane.staging import read_parquet, write_parquet
from transforms.article import ARTICLE_SCHEMA
from transforms.counters import ARTICLES_WRITTEN, BY_LANGUAGE, BY_TOPIC, counter
from transforms.sink import ARTICLES_DIR, SinkSettings, partition_path

_TS = pa.timestamp("us", tz="UTC")


def read_windows(path: str, first_us: int, last_us: int) -> pa.Table:
    """The rows of a staged row file whose window starts in [first_us, last_us], reading only the row groups whose
    statistics say they may hold some."""
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        parquet = pq.ParquetFile(handle)
        column = parquet.schema_arrow.get_field_index("window_start")
        groups = []
        for g in range(parquet.num_row_groups):
            stats = parquet.metadata.row_group(g).column(column).statistics
            if stats is None or not stats.has_min_max:
                groups.append(g)
                continue
            low, high = (pa.scalar(v, _TS).cast(pa.int64()).as_py() for v in (stats.min, stats.max))
            if low <= last_us and high >= first_us:
                groups.append(g)
        table = parquet.read_row_groups(groups) if groups else parquet.schema_arrow.empty_table()
    starts = table.column("window_start").cast(pa.int64())
    return table.filter(pc.and_(pc.greater_equal(starts, first_us), pc.less_equal(starts, last_us)))


def shard_rows(shard: WindowShard, run_id: str) -> pa.Table:
    """The output rows of a shard: its windows' staged rows that the decisions kept, with what they decided."""
    keep = read_parquet(shard.keep_path)
    parts = [read_windows(path, shard.first_window_us, shard.last_window_us) for path in shard.rows_paths]
    rows = pa.concat_tables(parts) if parts else None
    if rows is None or not len(rows):
        return ARTICLE_SCHEMA.empty_table()
    kept_uids = keep.column("uid").to_numpy()
    uids = rows.column("uid").to_numpy()
    at = np.clip(np.searchsorted(kept_uids, uids), 0, max(len(kept_uids) - 1, 0))
    found = kept_uids[at] == uids if len(kept_uids) else np.zeros(len(uids), dtype=bool)
    rows = rows.filter(pa.array(found))
    decided = keep.take(pa.array(at[found]))
    for name in ("duplicate_count", "cluster_id", "cluster_size", "duplicate_of"):
        rows = rows.set_column(rows.schema.get_field_index(name), name, decided.column(name))
    rows = rows.set_column(rows.schema.get_field_index("run_id"), "run_id", pa.array([run_id] * len(rows), pa.string()))
    return rows.select(ARTICLE_SCHEMA.names).cast(ARTICLE_SCHEMA)


class _WriteShardFn(beam.DoFn):
    """A WindowShard -> the paths of its window files."""

    def __init__(self, settings: SinkSettings):
        self._settings = settings
        self._written = counter(ARTICLES_WRITTEN)
        self._files = Metrics.counter("sink", f"files_{ARTICLES_DIR}")

    def process(self, shard: WindowShard) -> Iterator[str]:
        s = self._settings
        rows = shard_rows(shard, s.run_id)
        if not len(rows):
            return
        self._written.inc(len(rows))
        for column, namespace in (("language", BY_LANGUAGE), ("topic", BY_TOPIC)):
            default = "und" if column == "language" else "unknown"
            for entry in pc.value_counts(pc.fill_null(rows.column(column), default)).to_pylist():
                Metrics.counter(namespace, entry["values"] or default).inc(entry["counts"])
        rows = rows.sort_by([("window_start", "ascending"), ("published_at", "ascending"), ("article_id", "ascending")])
        starts = rows.column("window_start").cast(pa.int64()).to_numpy()
        bounds = np.flatnonzero(np.diff(starts)) + 1
        for lo, hi in zip(np.concatenate(([0], bounds)).tolist(), np.concatenate((bounds, [len(rows)])).tolist()):
            window = rows.column("window_start")[lo].as_py()
            partition = partition_path(window, s.window_seconds)
            token = hashlib.blake2b(f"{s.run_id}/{partition}".encode(), digest_size=4).hexdigest()
            path = FileSystems.join(
                s.output_path, ARTICLES_DIR, partition, f"part-{s.run_id}-{token}-00000-of-00001.parquet"
            )
            write_parquet(path, rows.slice(lo, hi - lo))
            self._files.inc()
            yield path


class WriteWindows(beam.PTransform):
    """WindowShards -> the paths of the article files written under `<output>/articles/<partition>/`."""

    def __init__(self, settings: SinkSettings):
        super().__init__()
        self._settings = settings

    def expand(self, shards: beam.PCollection) -> beam.PCollection:
        # Spread the shards over the workers: they come out of one step, on one worker.
        return shards | "SpreadShards" >> beam.Reshuffle() | "Write" >> beam.ParDo(_WriteShardFn(self._settings))
