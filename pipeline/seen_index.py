"""The key index: what was written and is still seen in a feed (see "Scheduled runs" in README.md).

    _state/seen/gen-<seq>-<run_id>.parquet    one generation of the index per run; it counts only once the run's
                                              record exists (or it was written by `newsbeam reindex`)
    _state/seen/pending-<run_id>.parquet      the run's journal: the keys of the articles it is about to commit,
                                              written before the first rename, removed after the run record

A run killed after some of its article files were renamed into place leaves a journal and no record; the next run
keeps the journal's rows whose article ids are in the partitions the journal names (it reads only those), so the
index never says "written" for a file not committed, and never misses one that was.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline import storage
from pipeline.commit import staged_files
from pipeline.layout import STAGED_ARTICLES, STAGED_SEEN, STAGED_SEEN_KEYS, OutputLayout
from transforms.article import INDEX_KEY_COLUMNS, key_hash

_LOG = logging.getLogger("newsbeam")

_TS = pa.timestamp("us", tz="UTC")
REINDEX_PREFIX = "reindex-"
SEEN_SCHEMA = pa.schema(
    [
        pa.field("id_key", pa.int64(), nullable=False),
        pa.field("url_key", pa.int64()),
        pa.field("content_key", pa.int64()),
        pa.field("feed_url", pa.string()),
        pa.field("first_seen", _TS),
        pa.field("last_seen", _TS),
    ]
)
JOURNAL_SCHEMA = SEEN_SCHEMA.append(pa.field("article_id", pa.string())).append(pa.field("partition", pa.string()))
_WRITTEN_AT = b"newsbeam.written_at"


@dataclasses.dataclass
class SeenIndex:
    """The key index in force for one run: `table` (SEEN_SCHEMA) with expired rows dropped and the articles of
    crashed runs added; `seq` numbers the generation it came from; `journals` are the crashed runs' journals folded
    in (removed once this run is recorded); `base_path` is the file the pipeline reads ('' when the index is empty)."""

    table: pa.Table
    seq: int = 0
    journals: list[str] = dataclasses.field(default_factory=list)
    base_path: str = ""
    rebuilt: bool = False


def _committed(output: str, run_id: str) -> bool:
    return run_id.startswith(REINDEX_PREFIX) or storage.exists(OutputLayout(output).run_record(run_id))


def _generation(path: str) -> tuple[int, str]:
    """(seq, run_id) of `.../gen-<seq>-<run_id>.parquet`."""
    seq, run_id = path.rsplit("/", 1)[-1][len("gen-") : -len(".parquet")].split("-", 1)
    return int(seq), run_id


def _empty_index() -> pa.Table:
    return SEEN_SCHEMA.empty_table()


def _key_columns(article_ids, urls, hashes) -> dict[str, pa.Array]:
    def hashed(values):
        return pa.array([key_hash(v) if v else None for v in values], pa.int64())

    return {"id_key": hashed(article_ids), "url_key": hashed(urls), "content_key": hashed(hashes)}


def _dedupe_ids(table: pa.Table) -> pa.Table:
    """One row per id_key (the first)."""
    if table.num_rows == 0:
        return table
    _, first = np.unique(table.column("id_key").to_numpy(), return_index=True)
    return table.take(pa.array(np.sort(first)))


def _rows_of_files(paths: list[str], now: dt.datetime, root: str = "") -> pa.Table:
    """Index rows (and, with `root`, the journal's article_id and partition) of the articles in `paths`."""
    columns = ["article_id", "url", "content_hash", "feed_url", "fetched_at"]
    schema = JOURNAL_SCHEMA if root else SEEN_SCHEMA
    parts = []
    for path in paths:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            parquet = pq.ParquetFile(handle)
            for batch in parquet.iter_batches(columns=columns, batch_size=65536):
                n = batch.num_rows
                ids, urls, hashes = (batch.column(c).to_pylist() for c in ("article_id", "url", "content_hash"))
                stamp = pa.scalar(now, _TS)
                fetched = pc.fill_null(batch.column("fetched_at").cast(_TS), stamp)
                data = {
                    **_key_columns(ids, urls, hashes),
                    "feed_url": batch.column("feed_url"),
                    "first_seen": pc.if_else(pc.less(fetched, stamp), fetched, stamp),
                    "last_seen": pa.array([now] * n, _TS),
                }
                if root:
                    partition = path[len(root) :].lstrip("/").rsplit("/", 1)[0]
                    data.update(article_id=batch.column("article_id"), partition=pa.array([partition] * n, pa.string()))
                parts.append(pa.table(data).cast(schema))
    return _dedupe_ids(pa.concat_tables(parts)) if parts else schema.empty_table()


def rebuild_seen_index(output: str, now: dt.datetime) -> pa.Table:
    """The index rebuilt from every article file of the output (this one read does grow with the output): each
    article last seen `now`, so it is remembered for `dedup.forget_after` from the rebuild."""
    return _rows_of_files(storage.match(FileSystems.join(OutputLayout(output).articles, "**.parquet")), now)


def _has_articles(output: str) -> bool:
    return storage.has_files(OutputLayout(output).articles)


def _current_generation(output: str) -> tuple[int, str, list[str]]:
    """(seq, path) of the index generation in force ((0, '') when none) and every generation file there is."""
    paths = storage.match(OutputLayout(output).seen("gen-*.parquet"))
    valid = [(_generation(p)[0], p) for p in paths if _committed(output, _generation(p)[1])]
    seq, path = max(valid) if valid else (0, "")
    return seq, path, paths


def _reconcile(output: str, journal: pa.Table) -> pa.Table:
    """The rows of a crashed run's journal whose article is in the dataset (in the partition the journal names)."""
    present: set[str] = set()
    for partition in set(journal.column("partition").to_pylist()):
        for path in storage.match(FileSystems.join(OutputLayout(output).articles, partition, "*.parquet")):
            present.update(storage.read_parquet(path, columns=["article_id"]).column("article_id").to_pylist())
    kept = pc.is_in(journal.column("article_id"), value_set=pa.array(sorted(present), pa.string()))
    return journal.filter(kept).select(SEEN_SCHEMA.names).cast(SEEN_SCHEMA)


def load_seen_index(output: str, run_id: str, now: dt.datetime, forget_after_seconds: float) -> SeenIndex:
    """The key index for a run at `now`: the generation in force, plus what crashed runs committed, minus the rows
    not seen in a feed for `forget_after_seconds`, staged in the run's staging directory for the pipeline to read.

    A missing index (over an output that has articles) or an unreadable one is rebuilt from the dataset, with a
    warning. The time away is counted up to the previous run, not up to `now`, so a scheduler that stopped for
    weeks does not make its output forget what the feeds still carry."""
    seq, path, _ = _current_generation(output)
    table, previous_run, rebuilt = None, now, False
    if path:
        try:
            table = storage.read_parquet(path)
            stamp = (table.schema.metadata or {}).get(_WRITTEN_AT)
            previous_run = min(now, dt.datetime.fromisoformat(stamp.decode())) if stamp else now
            table = table.select(SEEN_SCHEMA.names).cast(SEEN_SCHEMA)
        except Exception as err:
            _LOG.warning(
                "the key index %s is unreadable (%s: %s); rebuilding it from the dataset", path, type(err).__name__, err
            )
            table = None
    elif _has_articles(output):
        _LOG.warning(
            "the output has articles but no key index (%s); rebuilding it from the dataset", OutputLayout(output).seen()
        )
    if table is None:
        table = rebuild_seen_index(output, now) if _has_articles(output) else _empty_index()
        rebuilt = table.num_rows > 0
    journals = []
    for journal_path in storage.match(OutputLayout(output).seen("pending-*.parquet")):
        journal_run = journal_path.rsplit("/", 1)[-1][len("pending-") : -len(".parquet")]
        if journal_run == run_id or _committed(output, journal_run):
            continue  # a recorded run's rows are in its generation; it was killed before removing its journal
        journals.append(journal_path)
        if rebuilt:
            continue  # the rebuild read every committed file already
        try:
            found = _reconcile(output, storage.read_parquet(journal_path))
        except Exception as err:  # a journal is written atomically; unreadable means a damaged disk: rebuild
            _LOG.warning(
                "the journal %s is unreadable (%s: %s); rebuilding the key index from the dataset",
                journal_path,
                type(err).__name__,
                err,
            )
            table, rebuilt = rebuild_seen_index(output, now), True
            continue
        fresh = pc.invert(pc.is_in(found.column("id_key"), value_set=table.column("id_key")))
        table = pa.concat_tables([table, found.filter(fresh)])
    cutoff = previous_run - dt.timedelta(seconds=forget_after_seconds)
    table = table.filter(pc.greater_equal(table.column("last_seen"), pa.scalar(cutoff, _TS)))
    index = SeenIndex(table.combine_chunks(), seq, journals, rebuilt=rebuilt)
    if table.num_rows:
        index.base_path = FileSystems.join(OutputLayout(output).staged(run_id, STAGED_SEEN), "base.parquet")
        storage.write_parquet(index.base_path, index.table)
    return index


def next_seen_index(
    index: SeenIndex, now: dt.datetime, seen_keys: pa.Table, written: pa.Table, unread_feeds: Iterable[str]
) -> pa.Table:
    """The index after a run at `now`: rows whose keys the run saw again (`seen_keys`: column, key) or whose feed it
    did not read (not due, failed, not modified: nothing says the entry left it) are last seen `now`; the rows of
    the articles it wrote (`written`, JOURNAL_SCHEMA) are added."""
    table = index.table
    touched = pc.is_in(table.column("feed_url"), value_set=pa.array(sorted(set(unread_feeds)), pa.string()))
    touched = pc.fill_null(touched, False)
    for column in INDEX_KEY_COLUMNS:
        keys = seen_keys.filter(pc.equal(seen_keys.column("column"), column)).column("key")
        if len(keys):
            touched = pc.or_(touched, pc.fill_null(pc.is_in(table.column(column), value_set=keys), False))
    last_seen = pc.if_else(touched, pa.scalar(now, _TS), table.column("last_seen"))
    table = table.set_column(table.schema.get_field_index("last_seen"), "last_seen", last_seen)
    new = written.select(SEEN_SCHEMA.names).cast(SEEN_SCHEMA)
    new = new.filter(pc.invert(pc.is_in(new.column("id_key"), value_set=table.column("id_key"))))
    return pa.concat_tables([table, new]).combine_chunks()


SEEN_KEYS_SCHEMA = pa.schema([pa.field("column", pa.string()), pa.field("key", pa.int64())])


def write_seen_index(output: str, run_id: str, index: SeenIndex, now: dt.datetime, unread_feeds: Iterable[str]) -> str:
    """Before the run's files are committed: write its journal (the keys of the articles it staged, before any is
    renamed into place) and the next index generation (which counts only once the run record exists). Returns the
    generation's file name, for the run record."""
    seen_files = staged_files(output, run_id, STAGED_SEEN_KEYS)
    seen_keys = (
        pa.concat_tables([storage.read_parquet(p) for p in seen_files])
        if seen_files
        else SEEN_KEYS_SCHEMA.empty_table()
    )
    root = OutputLayout(output).staged(run_id, STAGED_ARTICLES)
    written = _rows_of_files(staged_files(output, run_id, STAGED_ARTICLES), now, root=root)
    if written.num_rows:
        storage.write_parquet(OutputLayout(output).seen(f"pending-{run_id}.parquet"), written)
    table = next_seen_index(index, now, seen_keys, written, unread_feeds)
    name = f"gen-{index.seq + 1:012d}-{run_id}.parquet"
    storage.write_parquet(
        OutputLayout(output).seen(name), table.replace_schema_metadata({_WRITTEN_AT: now.isoformat().encode()})
    )
    return name


def settle_seen_index(output: str, keep: str) -> None:
    """After the run record (or a reindex): remove every other index generation and every journal (all are in `keep`)."""
    storage.delete([p for p in storage.match(OutputLayout(output).seen("*")) if p.rsplit("/", 1)[-1] != keep])


def reindex(output: str, now: dt.datetime) -> tuple[str, int]:
    """`newsbeam reindex`: rebuild the key index from the dataset and put it in force. Returns (file name, rows)."""
    table = rebuild_seen_index(output, now)
    seqs = [_generation(p)[0] for p in storage.match(OutputLayout(output).seen("gen-*.parquet"))]
    name = f"gen-{max(seqs, default=0) + 1:012d}-{REINDEX_PREFIX}{now:%Y%m%dT%H%M%SZ}.parquet"
    storage.write_parquet(
        OutputLayout(output).seen(name), table.replace_schema_metadata({_WRITTEN_AT: now.isoformat().encode()})
    )
    settle_seen_index(output, name)
    return name, table.num_rows
