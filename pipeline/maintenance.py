"""The commands that work on an existing output, beside runs: `newsbeam compact` (merge each old partition's small
files into one), `newsbeam report` (the HTML report) and `newsbeam reindex` (rebuild the key index from the articles).
Each works on a local directory and on an object store alike, reached with the Beam options given after the output
(pipeline.cli passes them to pipeline.storage.use_options first).
"""

from __future__ import annotations

import datetime as dt
import sys

from pipeline import storage
from pipeline.compact import compact
from pipeline.config import parse_duration
from pipeline.layout import OutputLayout
from pipeline.lock import LockHeld, OutputLock
from pipeline.seen_index import reindex
from transforms.clock import utcnow


def _is_output(output: str) -> bool:
    """Whether `output` is there: a directory, or an object-store prefix with files under it (which has no
    `exists`: an object store has no directories)."""
    if storage.is_local(output):
        return storage.local_path(output).is_dir()
    return storage.has_files(output)


def compact_command(output: str, older_than: str) -> int:
    """`newsbeam compact`: merge each old-enough partition's files into one. Returns the exit status."""
    try:
        age = dt.timedelta(seconds=parse_duration(older_than))
    except ValueError as err:
        print(f"newsbeam: error: --older-than: {err}", file=sys.stderr)
        return 2
    try:
        result = compact(output, age)
    except LockHeld as err:
        print(f"newsbeam: error: another run is changing this output: {err}", file=sys.stderr)
        return 1
    print(
        f"compacted {result.partitions_compacted} partition(s): {result.files_before} files -> "
        f"{result.files_after}, {result.rows} rows ({result.atomic_swaps} swapped atomically)"
    )
    return 0


def report_command(output: str, out: str | None, since: str) -> int:
    """`newsbeam report`: write the HTML report of an output. Returns the exit status."""
    from pipeline.report import write_report

    try:
        since_seconds = parse_duration(since)
    except ValueError as err:
        print(f"newsbeam: error: --since: {err}", file=sys.stderr)
        return 2
    if not _is_output(output):
        print(f"newsbeam: error: {output}: no such output", file=sys.stderr)
        return 2
    print(f"wrote {write_report(output, out, since_seconds)}")
    return 0


def reindex_command(output: str) -> int:
    """`newsbeam reindex`: rebuild the key index from the dataset. Returns the exit status."""
    if not _is_output(output):
        print(f"newsbeam: error: {output}: no such output directory", file=sys.stderr)
        return 2
    try:
        with OutputLock(output, "reindex"):
            name, rows = reindex(output, utcnow())
    except LockHeld as err:
        print(f"newsbeam: error: another run is changing this output: {err}", file=sys.stderr)
        return 1
    print(f"reindexed {rows} article(s) into {OutputLayout(output).seen(name)}")
    return 0
