"""What a run keeps beside its data in the output directory, and how it commits.

    <output>/articles/, dead_letter/   the data: what readers see
    <output>/_staging/<run_id>/        where a run's pipeline writes; moved into place only after it succeeded
    <output>/_runs/<run_id>.json       the run record, written last: which files the run committed, every count
    <output>/_state/feeds.parquet      feed health and conditional-GET validators (pipeline.schedule.FeedHealth)
    <output>/_state/signatures/        near-duplicate signatures of written articles, by published date
    <output>/_state/lock               held while a run or a compaction changes the output

Crash safety: every file becomes visible through one atomic rename, and only after the pipeline has finished. A
run killed at any point leaves at most a `_staging/<run_id>` directory (removed by the next run) and some of its
files already committed; the next run reads those as part of the dataset and writes only what is missing, so every
article ends up present exactly once. Readers skip directories whose names start with `_` or `.`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from apache_beam.io.filesystems import FileSystems

from transforms.health import FeedReport
from transforms.sink import ARTICLES_DIR, DEAD_LETTER_DIR

_LOG = logging.getLogger("newsbeam")

STAGING_DIR = "_staging"
RUNS_DIR = "_runs"
STATE_DIR = "_state"
REPORTS_DIR = "feed_reports"
SIGNATURES_DIR = "signatures"
FEED_STATE_FILE = "feeds.parquet"


def staging_path(output: str, run_id: str) -> str:
    """Where a run's pipeline writes its files before they are committed."""
    return FileSystems.join(output, STAGING_DIR, run_id)


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _mkdirs(path: str) -> None:
    try:
        FileSystems.mkdirs(path)
    except IOError:
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
        self._path = Path(output) / STATE_DIR / "lock"
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
    for parent in (STAGING_DIR, "_temp"):
        root = FileSystems.join(output, parent)
        try:
            files = [m.path for m in FileSystems.match([FileSystems.join(root, "**")])[0].metadata_list]
        except Exception:  # nothing there yet
            files = []
        stale = {}
        for path in files:
            run_dir = path[len(root):].lstrip("/").split("/", 1)[0]
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
    pattern = FileSystems.join(staging_path(output, run_id), kind, "**")
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def commit(output: str, run_id: str) -> tuple[list[str], list[str]]:
    """Move the run's staged files into place, one atomic rename each: the run state's signatures first, then the
    dead letters, then the articles. Returns the committed article and dead-letter paths. Files keep their relative
    path (the partition directory) and their run-unique name."""
    committed: dict[str, list[str]] = {}
    stage = staging_path(output, run_id)
    destinations = {
        SIGNATURES_DIR: FileSystems.join(output, STATE_DIR, SIGNATURES_DIR),
        DEAD_LETTER_DIR: FileSystems.join(output, DEAD_LETTER_DIR),
        ARTICLES_DIR: FileSystems.join(output, ARTICLES_DIR),
    }
    for kind, destination in destinations.items():
        moved = []
        source_root = FileSystems.join(stage, kind)
        for source in staged_files(output, run_id, kind):
            relative = source[len(source_root):].lstrip("/")
            target = FileSystems.join(destination, relative)
            _mkdirs(target.rsplit("/", 1)[0])
            FileSystems.rename([source], [target])
            moved.append(target)
        committed[kind] = moved
    return committed[ARTICLES_DIR], committed[DEAD_LETTER_DIR]


def finish(output: str, run_id: str) -> None:
    """Remove what is left of the run's staging (its feed reports, empty directories)."""
    for path in (staging_path(output, run_id), FileSystems.join(output, "_temp", run_id)):
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
    for path in staged_files(output, run_id, REPORTS_DIR):
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


def run_record_path(output: str, run_id: str) -> str:
    """`<output>/_runs/<run_id>.json`."""
    return FileSystems.join(output, RUNS_DIR, f"{run_id}.json")
