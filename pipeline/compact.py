"""`newsbeam compact OUTPUT [--older-than 1d]`: merge the small files of each partition into one.

Many short incremental runs leave many small files per partition; readers pay per file (on an object store, one
request or more each). Compaction reads every file of a partition, sorts the rows (published_at, article_id) and
writes them as one file, then swaps it in:

- On Linux, the new partition directory is exchanged with the live one in one `renameat2(RENAME_EXCHANGE)` call, so a
  reader listing the partition sees either all the old files or the one new file, never both, never neither.
- Elsewhere (object stores, other systems), the new file is moved in (on an object store: copied, then its staged
  copy deleted) and the old files deleted; a reader listing the partition in that instant may see the rows twice.

Either way a journal in `_staging/compact-<id>/journal.json` says what is being replaced, and `recover_compactions`
(run at the start of every run and compaction) finishes or rolls back one that was killed, so every row is present
exactly once afterwards. The output lock keeps runs from adding files to a partition while it is compacted. Object
stores are reached with the command's pipeline options (pipeline.storage).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import datetime as dt
import json
import logging
import os
import re
import secrets
from pathlib import Path

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from pipeline import storage
from pipeline.layout import OutputLayout
from pipeline.lock import OutputLock
from transforms.article import ARTICLE_SCHEMA

_LOG = logging.getLogger("newsbeam")

_PARTITION_PART = re.compile(r"^(date|hour|minute)=(\d+(?:-\d+-\d+)?)$")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclasses.dataclass
class CompactionResult:
    """What one compaction did."""

    partitions_compacted: int = 0
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    atomic_swaps: int = 0


def partition_end(relative: str) -> dt.datetime | None:
    """The end of the window a partition directory holds (`date=2026-11-20/hour=07` -> 2026-11-20T08:00Z)."""
    values = {}
    for part in relative.split("/"):
        match = _PARTITION_PART.match(part)
        if not match:
            return None
        values[match.group(1)] = match.group(2)
    if "date" not in values:
        return None
    start = dt.datetime.strptime(values["date"], "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    if "minute" in values:
        return start + dt.timedelta(hours=int(values["hour"]), minutes=int(values["minute"]) + 1)
    if "hour" in values:
        return start + dt.timedelta(hours=int(values["hour"]) + 1)
    return start + dt.timedelta(days=1)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2); False where the system cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def compact(output: str, older_than: dt.timedelta, now: dt.datetime | None = None) -> CompactionResult:
    """Compact every partition of `output` whose window ended before `now - older_than` and has 2+ files."""
    now = now or dt.datetime.now(dt.timezone.utc)
    result = CompactionResult()
    layout = OutputLayout(output)
    with OutputLock(output, "compact"):
        recover_compactions(output)
        partitions: dict[str, list[str]] = {}
        for path in storage.match(FileSystems.join(layout.articles, "**.parquet")):
            relative, _, name = path[len(layout.articles) :].lstrip("/").rpartition("/")
            if not name.startswith((".", "_")):
                partitions.setdefault(relative, []).append(path)
        for relative, files in sorted(partitions.items()):
            end = partition_end(relative)
            if end is None or end > now - older_than or len(files) < 2:
                continue
            rows, swapped = _compact_partition(layout, relative, files)
            result.partitions_compacted += 1
            result.files_before += len(files)
            result.files_after += 1
            result.rows += rows
            result.atomic_swaps += swapped
    return result


def _compact_partition(layout: OutputLayout, relative: str, files: list[str]) -> tuple[int, bool]:
    job_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    job = layout.compaction(f"compact-{job_id}")
    table = pa.concat_tables([storage.read_parquet(f, schema=ARTICLE_SCHEMA) for f in files])
    table = table.sort_by([("published_at", "ascending"), ("article_id", "ascending")])
    name = f"part-compacted-{job_id}-00000-of-00001.parquet"
    directory = FileSystems.join(layout.articles, relative)
    fresh = FileSystems.join(job, "new")
    storage.mkdirs(fresh)
    storage.write_parquet(FileSystems.join(fresh, name), table)
    journal = {"partition": directory, "inputs": files, "output": FileSystems.join(directory, name)}
    storage.write_json(FileSystems.join(job, "journal.json"), journal)
    swapped = False
    if storage.is_local(directory):
        local = storage.local_path(directory)
        swapped = all(p.is_file() for p in local.iterdir()) and _exchange(storage.local_path(fresh), local)
    if not swapped:
        FileSystems.rename([FileSystems.join(fresh, name)], [journal["output"]])  # the new rows are visible
        FileSystems.delete(files)  # raises on failure: the journal stays, and the next run finishes the job
    storage.delete_tree(job)  # after a swap it holds the old files
    _LOG.info("compacted %s: %d files, %d rows", directory, len(files), table.num_rows)
    return table.num_rows, swapped


def recover_compactions(output: str) -> None:
    """Finish or roll back compactions that were killed, by their journals. Every row ends up present once."""
    staging = OutputLayout(output).staging
    jobs = {p[len(staging) :].lstrip("/").split("/", 1)[0] for p in storage.match(f"{staging}/compact-*/**")}
    if storage.is_local(staging) and storage.local_path(staging).is_dir():
        jobs.update(p.name for p in storage.local_path(staging).glob("compact-*"))  # empty job directories too
    for job_name in sorted(jobs):
        job = FileSystems.join(staging, job_name)
        journal_path = FileSystems.join(job, "journal.json")
        if storage.exists(journal_path):
            journal = json.loads(storage.read_bytes(journal_path))
            if storage.exists(journal["output"]):  # the new file is live: the old ones must go
                storage.delete([name for name in journal["inputs"] if storage.exists(name)])
                _LOG.warning("finished interrupted compaction of %s", journal["partition"])
            else:
                _LOG.warning("rolled back interrupted compaction of %s", journal["partition"])
        storage.delete_tree(job)
