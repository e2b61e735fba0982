"""What a run keeps beside its data in the output directory, and how it commits. Where each thing lives is
`pipeline.layout.OutputLayout`: the data (articles/, dead_letter/), a run's staging (_staging/<run_id>/), its
record (_runs/<run_id>.json, written last), the feed health, signatures and key index (_state/), the lock.

Crash safety: every file becomes visible through one atomic rename, and only after the pipeline has finished. A
run killed at any point leaves at most a `_staging/<run_id>` directory (removed by the next run), a journal of the
articles it was committing and some of its files already committed; the next run adds the committed ones to the key
index (from the journal) and writes only what is missing, so every article ends up present exactly once. Readers
skip directories whose names start with `_` or `.`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.layout import (
    STAGED_ARTICLES,
    STAGED_DEAD_LETTERS,
    STAGED_FEED_REPORTS,
    STAGED_SEEN,
    STAGED_SEEN_KEYS,
    STAGED_SIGNATURES,
    OutputLayout,
)
from transforms.article import INDEX_KEY_COLUMNS, key_hash
from transforms.feed_report import FeedReport

_LOG = logging.getLogger("newsbeam")

_TS = pa.timestamp("us", tz="UTC")


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _mkdirs(path: str) -> None:
    try:
        FileSystems.mkdirs(path)
    except OSError:
        pass  # it exists


def _delete(paths: list[str]) -> None:
    if paths:
        try:
            FileSystems.delete(paths)
        except Exception as err:  # best effort: leftovers are ignored by readers and retried next run
            _LOG.warning("could not delete %s: %s", paths, err)


class LockHeld(RuntimeError):
    """Another live process is changing this output."""


class OutputLock:
    """An exclusive lock on an output directory (local filesystems), so two runs never interleave.

    A lock left by a process that no longer exists (killed with SIGKILL, say) is taken over. On object stores there
    is no atomic create-if-absent here; one writer at a time is then the scheduler's job (Airflow: max_active_runs=1).
    """

    def __init__(self, output: str, owner: str):
        self._path = Path(OutputLayout(output).lock)
        self._owner = owner
        self._held = False
        self._local = _is_local(output)

    def __enter__(self) -> OutputLock:
        if not self._local:
            return self
        self._path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._stale():
                    _LOG.warning("removing stale lock %s", self._path)
                    self._path.unlink(missing_ok=True)
                    continue
                raise LockHeld(f"{self._path} is held by {self._path.read_text(errors='replace').strip()}") from None
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "owner": self._owner}))
            self._held = True
            return self
        raise LockHeld(f"cannot take {self._path}")

    def _stale(self) -> bool:
        try:
            holder = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return True  # unreadable: a writer died mid-write
        if holder.get("host") != socket.gethostname():
            return False  # cannot tell whether a process on another host lives
        try:
            os.kill(int(holder.get("pid", -1)), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False
        return False

    def __exit__(self, *exc_info) -> None:
        if self._held:
            self._path.unlink(missing_ok=True)
            self._held = False


def clean_leftovers(output: str, keep: str = "") -> list[str]:
    """Remove what runs that did not finish left in `_staging/` and `_temp/` (never the run `keep`).

    Works on files, so object stores (which have no directories) are cleaned too; on a local disk the emptied
    directories are removed as well. Returns the removed run directories.
    """
    removed: set[str] = set()
    layout = OutputLayout(output)
    for root in (layout.staging, layout.temp):
        try:
            files = [m.path for m in FileSystems.match([FileSystems.join(root, "**")])[0].metadata_list]
        except Exception:  # nothing there yet
            files = []
        stale = {}
        for path in files:
            run_dir = path[len(root) :].lstrip("/").split("/", 1)[0]
            if run_dir != keep:
                stale.setdefault(FileSystems.join(root, run_dir), []).append(path)
        for files_of_run in stale.values():
            _delete(files_of_run)
        removed.update(stale)
        if _is_local(output) and Path(root).is_dir():
            for child in Path(root).iterdir():
                if child.name == keep:
                    continue
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
                removed.add(str(child))
    if removed:
        _LOG.warning("removed leftovers of unfinished runs: %s", sorted(removed))
    return sorted(removed)


def staged_files(output: str, run_id: str, kind: str) -> list[str]:
    """The files a run staged under `kind` (articles, dead_letter, feed_reports)."""
    pattern = FileSystems.join(OutputLayout(output).staged(run_id, kind), "**")
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def commit(output: str, run_id: str) -> tuple[list[str], list[str]]:
    """Move the run's staged files into place, one atomic rename each: the run state's signatures first, then the
    dead letters, then the articles. Returns the committed article and dead-letter paths. Files keep their relative
    path (the partition directory) and their run-unique name."""
    committed: dict[str, list[str]] = {}
    layout = OutputLayout(output)
    destinations = {
        STAGED_SIGNATURES: layout.signatures,
        STAGED_DEAD_LETTERS: layout.dead_letters,
        STAGED_ARTICLES: layout.articles,
    }
    for kind, destination in destinations.items():
        moved = []
        source_root = layout.staged(run_id, kind)
        for source in staged_files(output, run_id, kind):
            relative = source[len(source_root) :].lstrip("/")
            target = FileSystems.join(destination, relative)
            _mkdirs(target.rsplit("/", 1)[0])
            FileSystems.rename([source], [target])
            moved.append(target)
        committed[kind] = moved
    return committed[STAGED_ARTICLES], committed[STAGED_DEAD_LETTERS]


def finish(output: str, run_id: str) -> None:
    """Remove what is left of the run's staging (its feed reports, empty directories)."""
    layout = OutputLayout(output)
    for path in (layout.run_staging(run_id), layout.run_temp(run_id)):
        if FileSystems.exists(path):
            _delete([path])


def write_atomically(path: str, data: bytes) -> None:
    """Write a file so that readers see the old content or the new, never a part: a temporary name, then a rename
    over the target (os.rename replaces atomically on POSIX; object stores replace whole objects)."""
    _mkdirs(path.rsplit("/", 1)[0])
    temporary = f"{path}.tmp-{os.getpid()}"
    with FileSystems.create(temporary) as handle:
        handle.write(data)
    FileSystems.rename([temporary], [path])


def write_json(path: str, document: Any) -> None:
    """Write a JSON document atomically."""
    write_atomically(path, json.dumps(document, indent=2, sort_keys=True, default=str).encode("utf-8"))


def read_reports(output: str, run_id: str) -> list[FeedReport]:
    """The FeedReports the run's pipeline staged (JSON lines)."""
    reports = []
    for path in staged_files(output, run_id, STAGED_FEED_REPORTS):
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            for line in handle.read().decode("utf-8").splitlines():
                if line.strip():
                    reports.append(report_from_json(line))
    return reports


def report_to_json(report: FeedReport) -> str:
    """One FeedReport as a JSON line."""
    return json.dumps(dataclasses.asdict(report), default=lambda v: v.isoformat(), sort_keys=True)


def report_from_json(line: str) -> FeedReport:
    """The inverse of report_to_json."""
    data = json.loads(line)
    if data.get("fetched_at"):
        data["fetched_at"] = dt.datetime.fromisoformat(data["fetched_at"])
    return FeedReport(**data)


# The key index: what was written and is still seen in a feed (see "Scheduled runs" in README.md).
#
#     _state/seen/gen-<seq>-<run_id>.parquet    one generation of the index per run; it counts only once the run's
#                                               record exists (or it was written by `newsbeam reindex`)
#     _state/seen/pending-<run_id>.parquet      the run's journal: the keys of the articles it is about to commit,
#                                               written before the first rename, removed after the run record
#
# A run killed after some of its article files were renamed into place leaves a journal and no record; the next run
# keeps the journal's rows whose article ids are in the partitions the journal names (it reads only those), so the
# index never says "written" for a file not committed, and never misses one that was.
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


def _match(pattern: str) -> list[str]:
    try:
        return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    except Exception:  # nothing there yet
        return []


def _committed(output: str, run_id: str) -> bool:
    return run_id.startswith(REINDEX_PREFIX) or FileSystems.exists(OutputLayout(output).run_record(run_id))


def _generation(path: str) -> tuple[int, str]:
    """(seq, run_id) of `.../gen-<seq>-<run_id>.parquet`."""
    seq, run_id = path.rsplit("/", 1)[-1][len("gen-") : -len(".parquet")].split("-", 1)
    return int(seq), run_id


def _read_parquet(path: str) -> pa.Table:
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return pq.read_table(handle)


def _write_parquet(path: str, table: pa.Table) -> None:
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="zstd")
    write_atomically(path, buffer.getvalue().to_pybytes())


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
    return _rows_of_files(_match(FileSystems.join(OutputLayout(output).articles, "**.parquet")), now)


def _has_articles(output: str) -> bool:
    try:
        return bool(
            FileSystems.match([FileSystems.join(OutputLayout(output).articles, "**.parquet")], limits=[1])[
                0
            ].metadata_list
        )
    except Exception:
        return False


def _current_generation(output: str) -> tuple[int, str, list[str]]:
    """(seq, path) of the index generation in force ((0, '') when none) and every generation file there is."""
    paths = _match(OutputLayout(output).seen("gen-*.parquet"))
    valid = [(_generation(p)[0], p) for p in paths if _committed(output, _generation(p)[1])]
    seq, path = max(valid) if valid else (0, "")
    return seq, path, paths


def _reconcile(output: str, journal: pa.Table) -> pa.Table:
    """The rows of a crashed run's journal whose article is in the dataset (in the partition the journal names)."""
    present: set[str] = set()
    for partition in set(journal.column("partition").to_pylist()):
        for path in _match(FileSystems.join(OutputLayout(output).articles, partition, "*.parquet")):
            with FileSystems.open(path, compression_type="uncompressed") as handle:
                present.update(pq.read_table(handle, columns=["article_id"]).column("article_id").to_pylist())
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
            table = _read_parquet(path)
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
    for journal_path in _match(OutputLayout(output).seen("pending-*.parquet")):
        journal_run = journal_path.rsplit("/", 1)[-1][len("pending-") : -len(".parquet")]
        if journal_run == run_id or _committed(output, journal_run):
            continue  # a recorded run's rows are in its generation; it was killed before removing its journal
        journals.append(journal_path)
        if rebuilt:
            continue  # the rebuild read every committed file already
        try:
            found = _reconcile(output, _read_parquet(journal_path))
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
        _write_parquet(index.base_path, index.table)
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
        pa.concat_tables([_read_parquet(p) for p in seen_files]) if seen_files else SEEN_KEYS_SCHEMA.empty_table()
    )
    root = OutputLayout(output).staged(run_id, STAGED_ARTICLES)
    written = _rows_of_files(staged_files(output, run_id, STAGED_ARTICLES), now, root=root)
    if written.num_rows:
        _write_parquet(OutputLayout(output).seen(f"pending-{run_id}.parquet"), written)
    table = next_seen_index(index, now, seen_keys, written, unread_feeds)
    name = f"gen-{index.seq + 1:012d}-{run_id}.parquet"
    _write_parquet(
        OutputLayout(output).seen(name), table.replace_schema_metadata({_WRITTEN_AT: now.isoformat().encode()})
    )
    return name


def settle_seen_index(output: str, keep: str) -> None:
    """After the run record (or a reindex): remove every other index generation and every journal (all are in `keep`)."""
    _delete([p for p in _match(OutputLayout(output).seen("*")) if p.rsplit("/", 1)[-1] != keep])


def reindex(output: str, now: dt.datetime) -> tuple[str, int]:
    """`newsbeam reindex`: rebuild the key index from the dataset and put it in force. Returns (file name, rows)."""
    table = rebuild_seen_index(output, now)
    seqs = [_generation(p)[0] for p in _match(OutputLayout(output).seen("gen-*.parquet"))]
    name = f"gen-{max(seqs, default=0) + 1:012d}-{REINDEX_PREFIX}{now:%Y%m%dT%H%M%SZ}.parquet"
    _write_parquet(
        OutputLayout(output).seen(name), table.replace_schema_metadata({_WRITTEN_AT: now.isoformat().encode()})
    )
    settle_seen_index(output, name)
    return name, table.num_rows
