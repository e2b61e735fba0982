"""Stage B of the batch graph: every decision of the run, on the compact key columns stage A staged.

    decided = staged.chunks | "Decide" >> Decide(DecideSettings(...))

One step reads the decision columns of all chunks (ids, 64-bit key hashes, times, sizes: about 100 bytes an article,
never a body or a signature) into numpy and pyarrow arrays and decides, in this order, as the stages it replaces did:

1. exact duplicates (transforms.dedup.exact_duplicates): passes by URL, then (feed, GUID), then content hash; the
   earliest copy kept (ties: the smaller id), `duplicate_count` summed on the keeper;
2. articles an earlier run wrote (the key index streamed past this run's keys: transforms.dedup.written_matches),
   dropped, and the index keys seen again kept for the driver;
3. near duplicates (pipeline/plane/near.py): the staged bucket keys of this run's signatures and of the prior
   signatures that share one, spilled to local files by shard and sorted a shard at a time, verification of the
   candidates only, star clusters, verdicts.

It writes, into the run's staging: the seen keys, the signatures later runs match against, and for each shard of
windows (consecutive windows of about equal bytes, at most about `shard_bytes`, in a multiple of stage C's processes:
what a process of stage C takes at a time) the table of rows to write (`uid` and the columns the decisions set). It emits one WindowShard per shard, and (feed URL,
articles written) for feed health. The counters are the stages' own names, so the run summary reconciles as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from typing import Literal, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from pipeline.plane.memory import release_memory
from pipeline.plane.near import RECORD_COLUMNS, NearDuplicates, by_chunk
from pipeline.plane.pool import start_server
from pipeline.plane.staging import StagedChunk, hash_encoding, read_parquet, write_parquet
from pipeline.seen_index import SEEN_KEYS_SCHEMA
from transforms.article import INDEX_KEY_COLUMNS
from transforms.counters import (
    ALREADY_WRITTEN,
    DUPLICATES,
    NEAR_CLUSTERS,
    NEAR_COPIES_DROPPED,
    NEAR_COPIES_MARKED,
    NEAR_MATCHED_PRIOR,
    NEAR_REVISIONS,
    counter,
)
from transforms.dedup import DedupSettings, exact_duplicates, written_matches
from transforms.neardup import SIGNATURE_SCHEMA, NearDedupSettings
from transforms.neardup.prior import read_prior_signatures

NEW_ENTRIES_TAG = "new_entries"

# Signature rows held before they are written (a row group per date each time): about 700 bytes an article.
SIGNATURE_FLUSH_BYTES = 32 << 20
# Min-hash signatures do not compress: written as they are, without a dictionary; the rest zstd.
_SIGNATURE_ENCODING = hash_encoding(SIGNATURE_SCHEMA.names, ("signature",), "zstd")

# The rows of a shard to write: `uid` (sorted) and what the decisions set.
KEEP_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.int64(), nullable=False),
        pa.field("duplicate_count", pa.int32()),
        pa.field("cluster_id", pa.string()),
        pa.field("cluster_size", pa.int32()),
        pa.field("duplicate_of", pa.string()),
        pa.field("window_us", pa.int64(), nullable=False),  # the row's window start: stage C reads a window at a time
    ]
)


class WindowShard(NamedTuple):
    """What stage C writes: windows [first, last] (start times, microseconds), the staged row files that hold them,
    and the file of rows to write."""

    index: int
    first_window_us: int
    last_window_us: int
    rows_paths: tuple[str, ...]
    keep_path: str
    articles: int


@dataclasses.dataclass(frozen=True)
class DecideSettings:
    """Where the decisions read and write, and the stages' settings. `prior_patterns`: file patterns of the prior
    signatures inside the lookback (transforms.neardup.prior.lookback_patterns); `written_index`: the key index file
    ('' when empty)."""

    work_dir: str
    seen_keys_dir: str
    signatures_dir: str
    run_id: str
    dedup: DedupSettings = DedupSettings()
    neardup: NearDedupSettings = NearDedupSettings()
    written_index: str = ""
    prior_patterns: tuple[str, ...] = ()
    # The most rows (row_bytes) of the windows a process of stage C writes in one go: a shard's kept rows are what
    # it holds (a million-article run has about 90 shards). Stage C holds one window's copy at a time besides.
    shard_bytes: int = 64 << 20
    # The processes of stage C (pipeline/plane/finalize.py WriteWindows): the shards come in a multiple of this
    # many, of about equal bytes, so that none of them waits for another's last shard.
    writers: int = 1
    # Runs staging this many bytes of rows or more write them in processes forked from a small server rather than
    # from the driver (pipeline/plane/pool.py start_server): each fork of the driver counts its hundreds of MiB
    # again. Below, a fork costs less than the server's imports (about 1 s of CPU).
    server_bytes: int = 256 << 20


# What the decisions read of every key file: neither signatures nor bucket keys (pipeline/plane/near.py reads those
# a chunk at a time).
_DECISION_COLUMNS = [
    "uid",
    "article_id",
    "feed_url",
    "id_key",
    "url_key",
    "guid_key",
    "content_key",
    "published_at",
    "window_start",
    "word_count",  # 0: no signature
    "row_bytes",
]


def _ints(column: pa.ChunkedArray | pa.Array, fill: int = 0) -> np.ndarray:
    if column.type != pa.int64():
        column = column.cast(pa.int64())
    return pc.fill_null(column, fill).to_numpy(zero_copy_only=False)


def _ranks(strings: pa.ChunkedArray) -> np.ndarray:
    """The rank of each string in sorted order (equal strings get different ranks, in row order)."""
    order = pc.sort_indices(strings).to_numpy()
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


def read_keys(chunks: Iterable[StagedChunk]) -> pa.Table:
    """The decision columns of every staged chunk, in one table (chunk after chunk, in the given order)."""
    # Feed URLs repeat: read as a dictionary, a few bytes an article.
    tables = [read_parquet(c.keys_path, _DECISION_COLUMNS, read_dictionary=["feed_url"]) for c in chunks]
    return pa.concat_tables(tables) if tables else pa.schema([]).empty_table()


def read_index_batches(index_path: str) -> Iterator[pa.RecordBatch]:
    """The key index's key columns, a record batch at a time."""
    if not index_path:
        return
    with FileSystems.open(index_path, compression_type="uncompressed") as handle:
        yield from pq.ParquetFile(handle).iter_batches(batch_size=65536, columns=list(INDEX_KEY_COLUMNS))


class _Decisions:
    """The decisions over one run's key table; `run()` fills the counters and the outputs."""

    def __init__(self, keys: pa.Table, settings: DecideSettings):
        self.keys = keys
        self.settings = settings
        self.n = len(keys)

    def exact(self) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        keys, dedup = self.keys, self.settings.dedup
        passes = []
        for kind, enabled, column in (
            ("url", dedup.by_url, "url_key"),
            ("guid", dedup.by_guid, "guid_key"),
            ("content", dedup.by_content, "content_key"),
        ):
            if enabled:
                values = keys.column(column)
                has = pc.is_valid(values).to_numpy(zero_copy_only=False)
                passes.append((kind, _ints(values), has))
        published = _ints(keys.column("published_at"), np.iinfo(np.int64).max)
        found = exact_duplicates(passes, published, _ranks(keys.column("article_id")))
        return found.keep, found.duplicate_count, found.dropped

    def written(self, keep: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The rows of `keep` an earlier run wrote, and the index keys they matched."""
        if not self.settings.written_index:
            return np.zeros(self.n, dtype=bool), {}
        run_keys, valid = {}, {}
        for column in INDEX_KEY_COLUMNS:
            values = self.keys.column(column)
            valid[column] = pc.is_valid(values).to_numpy(zero_copy_only=False) & keep
            run_keys[column] = _ints(values)[valid[column]]
        found = written_matches(run_keys, read_index_batches(self.settings.written_index))
        hit = np.zeros(self.n, dtype=bool)
        for column, keys in found.items():
            hit |= valid[column] & np.isin(_ints(self.keys.column(column)), keys)
        return hit, found


class Decide(beam.PTransform):
    """StagedChunks -> Decided(shards, new entries per feed); writes the seen keys and signatures to staging."""

    def __init__(self, settings: DecideSettings):
        super().__init__()
        self._settings = settings

    def expand(self, chunks: beam.PCollection):
        decided = (
            chunks
            | "AllChunks" >> beam.combiners.ToList()
            | "Decide" >> beam.ParDo(_DecideFn(self._settings)).with_outputs(NEW_ENTRIES_TAG, main="shards")
        )
        return Decided(decided.shards, decided[NEW_ENTRIES_TAG])


class Decided(NamedTuple):
    shards: beam.PCollection
    new_entries: beam.PCollection


class _DecideFn(beam.DoFn):
    def __init__(self, settings: DecideSettings):
        self._settings = settings
        self._duplicates = counter(DUPLICATES)
        self._already = counter(ALREADY_WRITTEN)
        self._copies = counter(NEAR_COPIES_DROPPED if settings.neardup.mode == "drop" else NEAR_COPIES_MARKED)
        self._revisions = counter(NEAR_REVISIONS)
        self._matched_prior = counter(NEAR_MATCHED_PRIOR)
        self._clusters = counter(NEAR_CLUSTERS)

    def process(
        self, chunks: list[StagedChunk]
    ) -> Iterator[WindowShard | TaggedOutput[Literal[NEW_ENTRIES_TAG], tuple[str, int]]]:
        settings = self._settings
        keys = read_keys(chunks)
        if not len(keys):
            return
        if settings.writers > 1 and (pc.sum(keys.column("row_bytes")).as_py() or 0) >= settings.server_bytes:
            # Stage C's processes need no models: they fork from a small process, whose imports run now, on the core
            # this one step leaves idle (pipeline/plane/pool.py).
            start_server(["pipeline.plane.finalize"])
        decisions = _Decisions(keys, settings)
        keep, duplicate_count, dropped = decisions.exact()
        for kind, count in dropped.items():
            if count:
                self._duplicates.inc(count)
                Metrics.counter("dedup", f"duplicates_by_{kind}").inc(count)
        hit, seen = decisions.written(keep)
        if hit.any():
            self._already.inc(int(hit.sum()))
            keep &= ~hit
        self._write_seen(seen)
        cluster_id = np.full(len(keys), "", dtype=object)
        cluster_size = np.ones(len(keys), dtype=np.int32)
        duplicate_of = np.full(len(keys), "", dtype=object)
        if settings.neardup.enabled:
            keep = self._near(keys, keep, cluster_id, cluster_size, duplicate_of, chunks)
        yield from self._shards(keys, keep, duplicate_count, cluster_id, cluster_size, duplicate_of, chunks)
        feeds = pc.value_counts(keys.column("feed_url").filter(pa.array(keep))).to_pylist()
        del keys, keep, duplicate_count, cluster_id, cluster_size, duplicate_of
        release_memory()  # this worker writes windows next
        for entry in feeds:
            yield beam.pvalue.TaggedOutput(NEW_ENTRIES_TAG, (entry["values"], entry["counts"]))

    def _write_seen(self, seen: dict[str, np.ndarray]) -> None:
        columns = [c for c, k in seen.items() for _ in range(len(k))]
        if not columns:
            return
        table = pa.table(
            {"column": pa.array(columns, pa.string()), "key": pa.array(np.concatenate(list(seen.values())))},
            schema=SEEN_KEYS_SCHEMA,
        )
        write_parquet(self._file(self._settings.seen_keys_dir, "", "seen"), table)

    def _file(self, directory: str, partition: str, what: str) -> str:
        # A name fixed by what it holds, so a retried bundle writes over the same file.
        token = hashlib.blake2b(f"{what}/{partition}".encode(), digest_size=4).hexdigest()
        name = f"part-{self._settings.run_id}-{token}-00000-of-00001.parquet"
        return FileSystems.join(directory, partition, name) if partition else FileSystems.join(directory, name)

    def _near(
        self,
        keys: pa.Table,
        keep: np.ndarray,
        cluster_id: np.ndarray,
        cluster_size: np.ndarray,
        duplicate_of: np.ndarray,
        chunks: list[StagedChunk],
    ) -> np.ndarray:
        """Near-duplicate verdicts for the rows still kept (pipeline/plane/near.py); returns the rows to write."""
        settings = self._settings.neardup
        signed_rows = np.flatnonzero(keep & (_ints(keys.column("word_count")) > 0))
        signed_ids = keys.column("article_id").take(pa.array(signed_rows)).combine_chunks()
        prior, kept, other = read_prior_signatures(self._settings.prior_patterns, settings.scheme)
        _count("prior_signatures", kept)
        _count("prior_signatures_other_scheme", other)
        prior = prior.filter(pc.invert(pc.is_in(prior.column("article_id"), value_set=signed_ids)))
        found = NearDuplicates(settings, chunks, prior).decide(signed_ids, signed_rows)
        counts = found.counts
        _count("candidate_pairs", counts["candidate_pairs"])
        _count("pairs_verified", counts["pairs_verified"])
        _count("pairs_rejected", counts["candidate_pairs"] - counts["pairs_verified"])
        _count("buckets_capped", counts["buckets_capped"])
        if counts["clusters"]:
            self._clusters.inc(counts["clusters"])
        canonical: dict[int, str] = {}  # position in signed_rows -> the article its cluster kept
        keep = keep.copy()
        for j, verdict in zip(found.positions.tolist(), found.verdicts):
            row = signed_rows[j]
            cluster_id[row] = verdict.cluster_id
            cluster_size[row] = verdict.cluster_size
            canonical[j] = verdict.canonical_id
            if verdict.is_canonical:
                continue
            self._copies.inc()
            if verdict.revision:
                self._revisions.inc()
            if verdict.matched_prior:
                self._matched_prior.inc()
            if settings.mode == "drop":
                self._duplicates.inc()  # the run summary reconciles read = written + duplicates + dead letters
                keep[row] = False
            else:
                duplicate_of[row] = verdict.canonical_id
        self._write_signatures(chunks, signed_rows, canonical)
        return keep

    def _write_signatures(self, chunks: list[StagedChunk], signed_rows: np.ndarray, canonical: dict[int, str]) -> None:
        """The signatures later runs match against: the articles written (in drop mode the copies point at them
        anyway), one file per published date. Chunks are gathered by date and written SIGNATURE_FLUSH_BYTES at a
        time: a write per chunk and date made a row group of a few rows each (at 10,000 articles in 100 feeds,
        thousands of them), and writing them was a third of stage B."""
        settings = self._settings.neardup
        bounds = np.cumsum([0] + [c.articles for c in chunks])
        writers: dict[str, tuple] = {}
        pending: dict[str, list[pa.Table]] = {}
        held = 0

        def flush() -> None:
            for date, tables in sorted(pending.items()):
                if date not in writers:
                    path = self._file(self._settings.signatures_dir, f"date={date}", "signatures")
                    handle = FileSystems.create(path)
                    writers[date] = (handle, pq.ParquetWriter(handle, SIGNATURE_SCHEMA, **_SIGNATURE_ENCODING))
                writers[date][1].write_table(pa.concat_tables(tables))
            pending.clear()

        try:
            for chunk, rows, at in by_chunk(chunks, bounds, signed_rows):
                part = read_parquet(chunk.keys_path, columns=RECORD_COLUMNS).take(pa.array(rows))
                ids = part.column("article_id").to_pylist()
                canonical_ids = [canonical.get(j, article_id) for j, article_id in zip(at.tolist(), ids)]
                table = pa.table(
                    {
                        **{name: part.column(name) for name in ("article_id", "language", "signature", "published_at")},
                        **{name: part.column(name) for name in ("text_length", "word_count")},
                        "facts": pc.fill_null(part.column("facts"), b""),
                        "outlet": part.column("outlet"),
                        "canonical_id": pa.array(canonical_ids, pa.string()),
                        "scheme": pa.array([settings.scheme] * len(part), pa.string()),
                        "lead": pc.fill_null(part.column("lead"), b""),
                    },
                    schema=SIGNATURE_SCHEMA,
                )
                if settings.mode == "drop":
                    table = table.filter(pc.equal(table.column("canonical_id"), table.column("article_id")))
                dates = pc.strftime(table.column("published_at"), format="%Y-%m-%d").to_numpy(zero_copy_only=False)
                for date in sorted(set(dates.tolist())):
                    pending.setdefault(date, []).append(table.filter(pa.array(dates == date)))
                held += table.nbytes
                if held >= SIGNATURE_FLUSH_BYTES:
                    flush()
                    held = 0
            flush()
        finally:
            for handle, writer in writers.values():
                writer.close()
                handle.close()

    def _shards(
        self,
        keys: pa.Table,
        keep: np.ndarray,
        duplicate_count: np.ndarray,
        cluster_id: np.ndarray,
        cluster_size: np.ndarray,
        duplicate_of: np.ndarray,
        chunks: list[StagedChunk],
    ) -> Iterator[WindowShard]:
        """Consecutive windows of about equal bytes of kept rows (_shard_of), and their rows."""
        rows = np.flatnonzero(keep)
        if not len(rows):
            return
        windows = _ints(keys.column("window_start"))[rows]
        uids = _ints(keys.column("uid"))[rows]
        sizes = _ints(keys.column("row_bytes"))[rows]
        order = np.lexsort((uids, windows))
        rows, windows, uids, sizes = rows[order], windows[order], uids[order], sizes[order]
        starts, first_of = np.unique(windows, return_index=True)
        window_bytes = np.add.reduceat(sizes, first_of)
        groups = np.split(starts, np.flatnonzero(np.diff(_shard_of(window_bytes, self._settings))) + 1)
        for index, group in enumerate(groups):
            first, last = int(group[0]), int(group[-1])
            lo, hi = np.searchsorted(windows, first, "left"), np.searchsorted(windows, last, "right")
            part_rows, part_uids, part_windows = rows[lo:hi], uids[lo:hi], windows[lo:hi]
            by_uid = np.argsort(part_uids)
            part_rows, part_uids, part_windows = part_rows[by_uid], part_uids[by_uid], part_windows[by_uid]
            table = pa.table(
                {
                    "uid": part_uids,
                    "duplicate_count": duplicate_count[part_rows].astype(np.int32),
                    "cluster_id": pa.array(cluster_id[part_rows].tolist(), pa.string()),
                    "cluster_size": cluster_size[part_rows],
                    "duplicate_of": pa.array(duplicate_of[part_rows].tolist(), pa.string()),
                    "window_us": part_windows,
                },
                schema=KEEP_SCHEMA,
            )
            keep_path = FileSystems.join(self._settings.work_dir, "keep", f"shard-{index:05d}.parquet")
            write_parquet(keep_path, table)
            paths = tuple(c.rows_path for c in chunks if c.first_window_us <= last and c.last_window_us >= first)
            yield WindowShard(index, first, last, paths, keep_path, len(table))


# A shard's rows cost stage C a read of every rows file that holds its windows (a file's record batches are a few
# hundred KB: a small shard decompresses much it does not keep), so a run is cut for its writers only where each
# shard would have this much.
MIN_SHARD_BYTES = 8 << 20


def _shard_of(window_bytes: np.ndarray, settings: DecideSettings) -> np.ndarray:
    """The shard of each window (windows in time order, `window_bytes` the kept rows of each): the fewest shards of
    at most about `shard_bytes`, made a multiple of `writers` (each at least MIN_SHARD_BYTES, so a small run stays in
    one shard), cut where the running total crosses a multiple of the total over that count. A window goes to the
    shard its middle byte falls in: a shard holds at most its share and a window more (a window is never split)."""
    total = int(window_bytes.sum())
    count = max(1, -(-total // settings.shard_bytes))
    writers = max(1, min(settings.writers, total // MIN_SHARD_BYTES))
    count = -(-count // writers) * writers
    middles = np.cumsum(window_bytes) - window_bytes / 2
    return np.minimum((middles * count / max(total, 1)).astype(np.int64), count - 1)


def _count(name: str, value: int) -> None:
    # Counted only when there is something to count, as the per-element steps did.
    if value:
        Metrics.counter("neardup", name).inc(value)
