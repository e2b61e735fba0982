"""Stage A of the batch graph: each feed's articles finished in one DoFn and staged, never sent to Beam.

    staged = feeds | "Stage" >> StageFeeds(feed_settings, StageSettings(work_dir, window_seconds, neardup))

For each chunk of a feed (pipeline/plane/feeds.py) it computes what the decisions need (content hash, key hashes,
window, near-duplicate signature and bucket keys) and writes two files under the run's staging (`work_dir`, through
Beam's FileSystems, so gs:// and s3:// work as a local path does):

    rows/feed-<i>-<c>.arrow     the articles' rows (ROW_SCHEMA) as an Arrow IPC file (LZ4) sorted by window,
                                published_at and id, in record batches of whole windows (BATCH_BYTES or more):
                                stage C reads the batches that hold its windows and nothing else (the schema's
                                metadata lists each batch's first and last window)
    keys/feed-<i>-<c>.parquet   KEY_SCHEMA: the ids, key hashes, times, sizes, signature and bucket keys of each row;
                                what stage B reads

Both names are fixed by the feed's index and the chunk's, so a retried bundle writes the same files over again. What
goes on in Beam is small: one StagedChunk per chunk (its paths, count and window range), the dead letters and the
FeedReport.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Literal, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from pipeline.plane.feeds import FeedProcessor, FeedSettings
from pipeline.plane.pool import ForkingDoFn
from transforms.article import ARTICLE_SCHEMA, Article, key_hash
from transforms.dead_letter import DEAD_LETTER_TAG, DeadLetter
from transforms.dedup import content_hash
from transforms.feed import FeedSource
from transforms.feed_report import FeedReport
from transforms.neardup import NearDedupSettings, candidate_key_matrix, signature_records
from transforms.parse import REPORT_TAG
from transforms.window import window_starts_us

_TS = pa.timestamp("us", tz="UTC")

# The article rows as staged: the output schema, `uid` (feed index << 32 | chunk << 16 | row) by which the
# decisions name a row (two rows may share an article id until exact dedup has run), and `summary_is_text`: cleaning
# makes the summary the text itself unless the text came from the article's page, so it is staged once (the
# `summary` column is then null) and stage C puts it back; rows were twice their size with both.
ROW_SCHEMA = ARTICLE_SCHEMA.append(pa.field("uid", pa.int64(), nullable=False)).append(
    pa.field("summary_is_text", pa.bool_(), nullable=False)
)
# LZ4: zstd spent 4x LZ4's time decompressing stage C's small batches; LZ4 files are 1.45x the size.
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
# The first and last window start (microseconds) of each record batch of a rows file, "first:last" comma-separated.
_WINDOWS_META = b"windows"
# A rows file's record batches end at a window's end once they hold this many bytes of rows. A batch per window
# was one read per row when a chunk's articles spread over many hourly windows (12,541 reads, 6.7 s, at 10,000
# articles); a whole chunk per batch would make every shard of stage C that needs one of its windows decompress all
# of it. At about 3 KB a row, a batch holds some 80 rows.
BATCH_BYTES = 256 << 10

KEY_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.int64(), nullable=False),
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("feed_url", pa.string()),
        pa.field("id_key", pa.int64()),  # key_hash of the id, URL and content hash: the key index's columns
        pa.field("url_key", pa.int64()),  # null: no URL
        pa.field("guid_key", pa.int64()),  # key_hash of feed URL + GUID; null: no GUID
        pa.field("content_key", pa.int64()),
        pa.field("published_at", _TS),
        pa.field("window_start", _TS),
        pa.field("language", pa.string()),
        # The near-duplicate signature record's columns (transforms.neardup.SIGNATURE_SCHEMA); null: no words.
        pa.field("signature", pa.binary()),
        pa.field("text_length", pa.int64()),
        pa.field("word_count", pa.int64()),
        pa.field("facts", pa.binary()),
        pa.field("outlet", pa.string()),
        pa.field("lead", pa.binary()),
        # What the row takes in stage C's memory (its strings' bytes and the fixed columns): shards are cut by it.
        pa.field("row_bytes", pa.int64()),
        # The near-duplicate bucket keys (transforms.neardup.candidate_key_arrays: keys_per_record little-endian
        # int64), computed here, where the workers share the work, rather than in the one step of stage B.
        pa.field("bucket_keys", pa.binary()),
    ]
)
# Hashes do not compress: written as they are, without a dictionary.
_RAW_KEY_COLUMNS = ("signature", "bucket_keys")
_FIXED_BYTES = 8 * sum(1 for f in ROW_SCHEMA if not (pa.types.is_string(f.type) or pa.types.is_list(f.type)))


class StagedChunk(NamedTuple):
    """What stage A tells stage B of one staged chunk."""

    rows_path: str
    keys_path: str
    articles: int
    first_window_us: int
    last_window_us: int


@dataclasses.dataclass(frozen=True)
class StageSettings:
    """Where chunks are staged, the window size and the near-duplicate settings (signatures only when enabled)."""

    work_dir: str
    window_seconds: int = 3600
    neardup: NearDedupSettings = NearDedupSettings()
    # Feeds finished at once by forked processes (pipeline/plane/pool.py); 1: in the DoFn's own process. More than 1
    # only on the local runner: a distributed runner's workers already use every core.
    processes: int = 1


def _micros(values: list) -> np.ndarray:
    return pa.array(values, _TS).cast(pa.int64()).to_numpy(zero_copy_only=False)


def chunk_tables(
    articles: list[Article], uid_base: int, settings: StageSettings
) -> tuple[pa.Table, pa.Table, int, int]:
    """(row table, key table, first window, last window) of a chunk of finished articles, both tables sorted by
    (window, published_at, article id)."""
    n = len(articles)
    hashes = [content_hash(a.title, a.text) for a in articles]
    published = _micros([a.published_at for a in articles])
    starts = window_starts_us(published, settings.window_seconds)
    ids = [a.article_id for a in articles]
    order = np.lexsort((np.array(ids, dtype=object).argsort().argsort(), published, starts))
    same = [a.summary is a.text or a.summary == a.text for a in articles]
    columns = {}
    for field in ARTICLE_SCHEMA:
        name = field.name
        if name in ("authors", "tags", "labels"):
            values = [list(getattr(a, name)) for a in articles]
        elif name == "content_hash":
            values = hashes
        elif name == "summary":
            values = [None if s else a.summary for a, s in zip(articles, same)]
        elif name in ("window_start", "window_end", "run_id"):
            continue
        else:
            values = [getattr(a, name) for a in articles]
        columns[name] = pa.array(values, field.type)
    size = settings.window_seconds * 1_000_000
    columns["window_start"] = pa.array(starts, pa.int64()).cast(_TS)
    columns["window_end"] = pa.array(starts + size, pa.int64()).cast(_TS)
    columns["run_id"] = pa.nulls(n, pa.string())
    uids = uid_base + np.arange(n, dtype=np.int64)
    columns["uid"] = pa.array(uids)
    columns["summary_is_text"] = pa.array(same, pa.bool_())
    rows = pa.table([columns[f.name] for f in ROW_SCHEMA], schema=ROW_SCHEMA)

    records = signature_records(articles, settings.neardup) if settings.neardup.enabled else [None] * n
    keys = {
        "uid": uids,
        "article_id": ids,
        "feed_url": [a.feed_url for a in articles],
        "id_key": [key_hash(a.article_id) if a.article_id else None for a in articles],
        "url_key": [key_hash(a.url) if a.url else None for a in articles],
        "guid_key": [key_hash(f"{a.feed_url}\n{a.guid}") if a.guid else None for a in articles],
        "content_key": [key_hash(h) for h in hashes],
        "published_at": columns["published_at"],
        "window_start": columns["window_start"],
        "language": [a.language or "und" for a in articles],
        "signature": [r.signature if r else None for r in records],
        "text_length": [r.text_length if r else 0 for r in records],
        "word_count": [r.word_count if r else 0 for r in records],
        "facts": [r.facts if r else None for r in records],
        "outlet": [r.outlet if r else "" for r in records],
        "lead": [r.lead if r else None for r in records],
        "row_bytes": row_bytes(rows),
        "bucket_keys": _bucket_keys(records, settings.neardup),
    }
    key_table = pa.table({f.name: pa.array(keys[f.name], f.type) for f in KEY_SCHEMA}, schema=KEY_SCHEMA)
    return rows.take(order), key_table.take(order), int(starts.min()), int(starts.max())


def row_bytes(rows: pa.Table) -> np.ndarray:
    """What each row holds: the bytes of its strings (list items included) and 8 per fixed-width column."""
    total = np.full(len(rows), _FIXED_BYTES, dtype=np.int64)
    for field in rows.schema:
        column = rows.column(field.name)
        if pa.types.is_list(field.type):
            items = pc.fill_null(pc.binary_length(pc.list_flatten(column)), 0).to_numpy(zero_copy_only=False)
            owners = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
            total += np.bincount(owners, weights=items, minlength=len(rows)).astype(np.int64)
        elif pa.types.is_string(field.type):
            total += pc.fill_null(pc.binary_length(column), 0).to_numpy(zero_copy_only=False)
    return total


def _bucket_keys(records: list, settings: NearDedupSettings) -> list[bytes | None]:
    """Each signed record's bucket keys as bytes (None for an article without a signature)."""
    signed = [i for i, r in enumerate(records) if r is not None]
    out: list[bytes | None] = [None] * len(records)
    if signed:
        matrix = candidate_key_matrix([records[i] for i in signed], settings).astype("<i8", copy=False)
        for i, keys in zip(signed, matrix):
            out[i] = keys.tobytes()
    return out


def write_rows(path: str, rows: pa.Table, sizes: np.ndarray) -> None:
    """A chunk's rows (sorted by window) as an Arrow IPC file of record batches cut at window boundaries, each
    holding at least BATCH_BYTES of rows (`sizes`: row_bytes) unless it ends the file."""
    rows = rows.combine_chunks()  # one chunk per column: a slice is then one record batch
    starts = rows.column("window_start").cast(pa.int64()).to_numpy()
    edges = np.flatnonzero(np.diff(starts)) + 1  # where a window begins
    filled = np.concatenate(([0], np.cumsum(sizes)))
    bounds, since = [0], 0
    for edge in edges.tolist():
        if filled[edge] - filled[since] >= BATCH_BYTES:
            bounds.append(edge)
            since = edge
    bounds.append(len(rows))
    meta = ",".join(f"{int(starts[lo])}:{int(starts[hi - 1])}" for lo, hi in zip(bounds[:-1], bounds[1:]))
    schema = rows.schema.with_metadata({_WINDOWS_META: meta.encode()})
    with FileSystems.create(path) as handle, pa.ipc.new_file(handle, schema, options=_IPC_OPTIONS) as writer:
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            (batch,) = rows.slice(lo, hi - lo).to_batches()
            writer.write_batch(batch)


def read_rows(path: str, first_us: int, last_us: int) -> Iterator[pa.RecordBatch]:
    """The rows of a staged rows file whose window starts in [first_us, last_us], a record batch at a time: only
    the batches that hold such windows are read."""
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        reader = pa.ipc.open_file(handle)
        windows = (reader.schema.metadata or {}).get(_WINDOWS_META, b"")
        for i, span in enumerate(windows.split(b",") if windows else ()):
            low, high = (int(x) for x in span.split(b":"))
            if low > last_us or high < first_us:
                continue
            batch = reader.get_batch(i)
            if low < first_us or high > last_us:
                start = pc.cast(batch.column("window_start"), pa.int64())
                batch = batch.filter(pc.and_(pc.greater_equal(start, first_us), pc.less_equal(start, last_us)))
            yield batch


def write_parquet(path: str, table: pa.Table) -> None:
    """One Parquet file through Beam's FileSystems (local, gs://, s3://), written whole: a retry overwrites it."""
    with FileSystems.create(path) as handle:
        pq.write_table(table, handle, compression="zstd")


def write_keys(path: str, keys: pa.Table) -> None:
    """A chunk's key table as Parquet: LZ4, but the hash columns as they are, without a dictionary. LZ4 rather than
    zstd: these files live for one run, and a zstd writer cost about 2 ms more per file (setting up its context for
    each column), which a run of many small feeds pays once per feed."""
    with FileSystems.create(path) as handle:
        pq.write_table(keys, handle, **hash_encoding(keys.column_names, _RAW_KEY_COLUMNS, "lz4"))


def hash_encoding(names: list[str], raw: tuple[str, ...], codec: str) -> dict:
    """Parquet writer options for a table of `names`: `codec` and dictionaries, but the columns in `raw` (hashes,
    which neither compress nor repeat) written as they are."""
    return {
        "compression": {name: "none" if name in raw else codec for name in names},
        "use_dictionary": [name for name in names if name not in raw],
    }


def read_parquet(path: str, columns: list[str] | None = None, read_dictionary: list[str] | None = None) -> pa.Table:
    """A Parquet file (or some of its columns) through Beam's FileSystems. ParquetFile.read: pq.read_table's dataset
    machinery cost two to three times as much CPU a file, and stage B reads a thousand key files several times."""
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return pq.ParquetFile(handle, read_dictionary=read_dictionary).read(columns=columns)


class _StageFeedFn(ForkingDoFn):
    """(feed index, FeedSource) -> StagedChunks; dead letters and the FeedReport on their tags."""

    def __init__(self, feed_settings: FeedSettings, settings: StageSettings):
        super().__init__(settings.processes)
        self._processor = FeedProcessor(feed_settings)
        self._settings = settings
        self._signed = Metrics.counter("neardup", "signed")
        self._unsigned = Metrics.counter("neardup", "unsigned")

    def setup(self):
        self._processor.setup()  # before the bundle's forks: each child has the models for free

    def teardown(self):
        super().teardown()
        self._processor.teardown()

    def process(
        self, element: tuple[int, FeedSource]
    ) -> Iterator[
        StagedChunk | TaggedOutput[Literal[DEAD_LETTER_TAG], DeadLetter] | TaggedOutput[Literal[REPORT_TAG], FeedReport]
    ]:
        yield from self.run(element)

    def work(self, element: tuple[int, FeedSource]) -> Iterator[StagedChunk | TaggedOutput]:
        """One feed, fetched to staged: its StagedChunks, dead letters and FeedReport."""
        index, source = element
        chunk_no = 0
        for item in self._processor.process(source):
            if isinstance(item, DeadLetter):
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, item)
            elif isinstance(item, FeedReport):
                yield beam.pvalue.TaggedOutput(REPORT_TAG, item)
            else:
                yield self._stage(item, index, chunk_no)
                chunk_no += 1

    def _stage(self, articles: list[Article], index: int, chunk_no: int) -> StagedChunk:
        chunk, signed = stage_chunk(articles, index, chunk_no, self._settings)
        if self._settings.neardup.enabled:
            self._signed.inc(signed)
            self._unsigned.inc(len(articles) - signed)
        return chunk


def stage_chunk(articles: list[Article], index: int, chunk_no: int, settings: StageSettings) -> tuple[StagedChunk, int]:
    """Write chunk `chunk_no` of feed `index` (at most 65,536 articles) to the staging; (its StagedChunk, how many
    articles have a signature)."""
    rows, keys, first, last = chunk_tables(articles, (index << 32) | (chunk_no << 16), settings)
    name = f"feed-{index:06d}-{chunk_no:05d}"
    rows_path = FileSystems.join(settings.work_dir, "rows", f"{name}.arrow")
    keys_path = FileSystems.join(settings.work_dir, "keys", f"{name}.parquet")
    write_rows(rows_path, rows, keys.column("row_bytes").to_numpy())
    write_keys(keys_path, keys)
    return StagedChunk(rows_path, keys_path, len(articles), first, last), len(keys) - keys.column(
        "signature"
    ).null_count


class Staged(NamedTuple):
    """What StageFeeds returns."""

    chunks: beam.PCollection
    dead_letters: beam.PCollection
    reports: beam.PCollection


class StageFeeds(beam.PTransform):
    """(feed index, FeedSource) -> Staged(chunks, dead letters, feed reports); the articles wait in `work_dir`."""

    def __init__(self, feed_settings: FeedSettings, settings: StageSettings):
        super().__init__()
        self._feed_settings = feed_settings
        self._settings = settings

    def expand(self, feeds: beam.PCollection):
        staged = (
            feeds
            # The feed list comes from one Create; without this, one worker would take every feed.
            | "SpreadFeeds" >> beam.Reshuffle()
            | "Feeds"
            >> beam.ParDo(_StageFeedFn(self._feed_settings, self._settings)).with_outputs(
                DEAD_LETTER_TAG, REPORT_TAG, main="chunks"
            )
        )
        return Staged(staged.chunks, staged[DEAD_LETTER_TAG], staged[REPORT_TAG])
