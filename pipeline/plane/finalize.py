"""Stage C of the batch graph: the rows each shard of windows keeps, read back from staging and written as the
output's Parquet partitions.

    paths = decided.shards | "WriteArticles" >> WriteWindows(SinkSettings(...))

For each WindowShard (pipeline/plane/decide.py) it reads, from each staged rows file, the record batches that hold
the shard's windows (nothing else of the file is read), keeps the rows the decisions kept as it reads them, and
then, a window at a time, sorts them by (published_at, article_id), sets the columns the decisions set
(`duplicate_count`, `cluster_id`, `cluster_size`, `duplicate_of`), the run id and the summary (staged once when it
is the text), and writes the window's file: the partition directories, schema and file names of
transforms.sink.WriteParquetPartitions, which the driver's commit (pipeline.state) moves into place. It holds the
shard's kept rows, a window's copy and a slice of that sorted. File names are fixed by the run and the
window, so a retried bundle writes over its own files. It counts what it writes under the sink's counters
(`sink/articles`, by language, by topic).
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
from pipeline.plane.memory import release_memory
from pipeline.plane.pool import ForkingDoFn
from pipeline.plane.staging import read_parquet, read_rows
from transforms.article import ARTICLE_SCHEMA
from transforms.counters import ARTICLES_WRITTEN, BY_LANGUAGE, BY_TOPIC, counter
from transforms.sink import ARTICLES_DIR, SinkSettings, partition_path

# A window's rows are sorted, completed and written this many staged bytes at a time (one Parquet row group each):
# a window of a million-article run holds about 80 MB of rows, which is not copied whole again.
SLICE_BYTES = 16 << 20


def shard_windows(shard: WindowShard) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(kept rows, decisions) of each window of a shard, in window order: the window's staged rows that the
    decisions kept, unsorted, with `keep_row`, their row in the decisions table (the shard's keep file). Each rows
    file is opened once and gives only the batches that hold the shard's windows, so what is held is the shard's kept
    rows (about `shard_bytes`, pipeline/plane/decide.py) and one window's copy of them."""
    keep = read_parquet(shard.keep_path)
    kept_uids = keep.column("uid").to_numpy()
    pieces = []
    for path in shard.rows_paths:
        for batch in read_rows(path, shard.first_window_us, shard.last_window_us):
            uids = batch.column("uid").to_numpy()
            at = np.minimum(np.searchsorted(kept_uids, uids), len(kept_uids) - 1)
            found = kept_uids[at] == uids
            if found.any():
                piece = pa.Table.from_batches([batch.filter(pa.array(found))])
                pieces.append(piece.append_column("keep_row", pa.array(at[found])))
    # Each piece is sorted by window (a rows file is): a window is its slice of each piece, in the pieces' order (the
    # order of their files, as when a window was gathered file by file), copied once into one table. Taking a
    # window's rows out of the shard's many-chunked table instead made pyarrow concatenate the whole shard for each
    # window (1.8 of stage C's 3.6 s at 10,000 articles: 72 windows in one shard).
    by_window: dict[int, list[pa.Table]] = {}
    for piece in pieces:
        windows = piece.column("window_start").cast(pa.int64()).to_numpy()
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(windows)) + 1, [len(windows)])).tolist()
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            by_window.setdefault(int(windows[lo]), []).append(piece.slice(lo, hi - lo))
    del pieces
    for window in sorted(by_window):
        yield pa.concat_tables(by_window.pop(window)).combine_chunks(), keep


def output_slices(rows: pa.Table, keep: pa.Table, run_id: str, slice_bytes: int = SLICE_BYTES) -> Iterator[pa.Table]:
    """A window's output rows, sorted by (published_at, article_id), in slices of about `slice_bytes`: the columns
    the decisions set, the run id and the summary (staged once when it is the text) filled in."""
    # Stable: rows alike in both keep the order of their files (as the concatenation of a shard sorted whole).
    order = pc.sort_indices(rows, [("published_at", "ascending"), ("article_id", "ascending")])
    step = max(1, len(rows) * slice_bytes // max(rows.nbytes, 1))
    for lo in range(0, len(rows), step):
        part = rows.take(order.slice(lo, step))
        decided = keep.take(part.column("keep_row"))
        for name in ("duplicate_count", "cluster_id", "cluster_size", "duplicate_of"):
            part = part.set_column(part.schema.get_field_index(name), name, decided.column(name))
        summary = pc.if_else(part.column("summary_is_text"), part.column("text"), part.column("summary"))
        part = part.set_column(part.schema.get_field_index("summary"), "summary", summary)
        run_ids = pa.array([run_id] * len(part), pa.string())
        part = part.set_column(part.schema.get_field_index("run_id"), "run_id", run_ids)
        yield part.select(ARTICLE_SCHEMA.names).cast(ARTICLE_SCHEMA)


class _WriteShardFn(ForkingDoFn):
    """A WindowShard -> the paths of its window files."""

    def __init__(self, settings: SinkSettings, processes: int = 1):
        super().__init__(processes)
        self._settings = settings
        self._written = counter(ARTICLES_WRITTEN)
        self._files = Metrics.counter("sink", f"files_{ARTICLES_DIR}")

    def process(self, shard: WindowShard) -> Iterator[str]:
        yield from self.run(shard)

    def from_server(self) -> bool:
        return True  # writing needs no models: the children start small when stage B started the server

    def work(self, shard: WindowShard) -> Iterator[str]:
        s = self._settings
        for rows, keep in shard_windows(shard):
            window = rows.column("window_start")[0].as_py()
            partition = partition_path(window, s.window_seconds)
            token = hashlib.blake2b(f"{s.run_id}/{partition}".encode(), digest_size=4).hexdigest()
            path = FileSystems.join(
                s.output_path, ARTICLES_DIR, partition, f"part-{s.run_id}-{token}-00000-of-00001.parquet"
            )
            with (
                FileSystems.create(path) as handle,
                pq.ParquetWriter(handle, ARTICLE_SCHEMA, compression="zstd") as out,
            ):
                for part in output_slices(rows, keep, s.run_id):
                    self._count(part)
                    out.write_table(part)
            del rows, keep  # the window's copy goes before the next window's is taken
            self._files.inc()
            yield path
        release_memory()  # the worker's next shard, or stage A's feeds, need none of this shard's memory

    def _count(self, rows: pa.Table) -> None:
        self._written.inc(len(rows))
        for column, namespace in (("language", BY_LANGUAGE), ("topic", BY_TOPIC)):
            default = "und" if column == "language" else "unknown"
            for entry in pc.value_counts(pc.fill_null(rows.column(column), default)).to_pylist():
                Metrics.counter(namespace, entry["values"] or default).inc(entry["counts"])


class WriteWindows(beam.PTransform):
    """WindowShards -> the paths of the article files written under `<output>/articles/<partition>/`; `processes`
    forked processes write shards at once on the local runner (pipeline/plane/pool.py; 1: none)."""

    def __init__(self, settings: SinkSettings, processes: int = 1):
        super().__init__()
        self._settings = settings
        self._processes = processes

    def expand(self, shards: beam.PCollection) -> beam.PCollection:
        # Spread the shards over the workers: they come out of one step, on one worker.
        write = _WriteShardFn(self._settings, self._processes)
        return shards | "SpreadShards" >> beam.Reshuffle() | "Write" >> beam.ParDo(write)
