"""`newsbeam compact OUTPUT [--older-than 1d]`: merge the small files of each partition into one.

Many short incremental runs leave many small files per partition; readers pay per file. Compaction reads every file
of a partition, sorts the rows (published_at, article_id) and writes them as one file, then swaps it in:

- On Linux, the new partition directory is exchanged with the live one in one `renameat2(RENAME_EXCHANGE)` call, so a
  reader listing the partition sees either all the old files or the one new file, never both, never neither.
- Elsewhere (object stores, other systems), the new file is renamed in and the old files deleted; a reader in that
  instant may see the rows twice.

Either way a journal in `_staging/compact-<id>/journal.json` says what is being replaced, and `recover_compactions`
(run at the start of every run and compaction) finishes or rolls back one that was killed, so every row is present
exactly once afterwards. The output lock keeps runs from adding files to a partition while it is compacted.
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
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.layout import OutputLayout
from pipeline.state import OutputLock
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
    base = Path(OutputLayout(output).articles)
    with OutputLock(output, "compact"):
        recover_compactions(output)
        for directory in sorted({p.parent for p in base.rglob("*.parquet")}):
            relative = directory.relative_to(base).as_posix()
            end = partition_end(relative)
            files = sorted(p for p in directory.glob("*.parquet") if not p.name.startswith((".", "_")))
            if end is None or end > now - older_than or len(files) < 2:
                continue
            rows, swapped = _compact_partition(OutputLayout(output), directory, files)
            result.partitions_compacted += 1
            result.files_before += len(files)
            result.files_after += 1
            result.rows += rows
            result.atomic_swaps += swapped
    return result


def _compact_partition(layout: OutputLayout, directory: Path, files: list[Path]) -> tuple[int, bool]:
    job = Path(layout.compaction(f"compact-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"))
    table = pa.concat_tables([pq.read_table(f, schema=ARTICLE_SCHEMA) for f in files])
    table = table.sort_by([("published_at", "ascending"), ("article_id", "ascending")])
    name = f"part-compacted-{job.name[len('compact-') :]}-00000-of-00001.parquet"
    fresh = job / "new"
    fresh.mkdir(parents=True)
    pq.write_table(table, fresh / name, compression="zstd")
    only_files = all(p.is_file() for p in directory.iterdir())
    journal = {"partition": str(directory), "inputs": [str(f) for f in files], "output": str(directory / name)}
    (job / "journal.json").write_text(json.dumps(journal))
    swapped = only_files and _exchange(fresh, directory)
    if not swapped:
        os.rename(fresh / name, directory / name)  # the new rows are visible; the old files go next
        for f in files:
            f.unlink(missing_ok=True)
    shutil.rmtree(job)  # after a swap it holds the old files
    _LOG.info("compacted %s: %d files, %d rows", directory, len(files), table.num_rows)
    return table.num_rows, swapped


def recover_compactions(output: str) -> None:
    """Finish or roll back compactions that were killed, by their journals. Every row ends up present once."""
    staging = Path(OutputLayout(output).staging)
    if not staging.is_dir():
        return
    for job in sorted(staging.glob("compact-*")):
        journal_path = job / "journal.json"
        if journal_path.is_file():
            journal = json.loads(journal_path.read_text())
            if Path(journal["output"]).exists():  # the new file is live: the old ones must go
                for name in journal["inputs"]:
                    Path(name).unlink(missing_ok=True)
                _LOG.warning("finished interrupted compaction of %s", journal["partition"])
            else:
                _LOG.warning("rolled back interrupted compaction of %s", journal["partition"])
        shutil.rmtree(job, ignore_errors=True)
