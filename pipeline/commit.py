"""How a run's files become visible: staged first, moved into place after the pipeline succeeded, recorded last.

Where each thing lives is `pipeline.layout.OutputLayout`: the data (articles/, dead_letter/), a run's staging
(_staging/<run_id>/), its record (_runs/<run_id>.json, written last: the commit point), the key index (_state/seen/,
pipeline.seen_index).

Every file becomes visible whole, in one step, and only after the pipeline has finished: a rename on a local disk;
on an object store, where Beam's rename is a copy and then a delete, the copy (an object appears whole when it is
complete). A run killed at any point leaves at most its staging (removed by the next run, with copies already in
place still in it), a journal of the articles it was committing, and some of those files in place; the next run adds
the ones in place to the key index (from the journal) and writes only what is missing, so every article ends up
present exactly once. Readers skip directories whose names start with `_` or `.`.
"""

from __future__ import annotations

import logging

from apache_beam.io.filesystems import FileSystems

from pipeline import storage
from pipeline.layout import STAGED_ARTICLES, STAGED_DEAD_LETTERS, STAGED_SIGNATURES, OutputLayout

_LOG = logging.getLogger("newsbeam")


def clean_leftovers(output: str, keep: str = "") -> list[str]:
    """Remove what runs that did not finish left in `_staging/` and `_temp/` (never the run `keep`).

    Works on files, so object stores (which have no directories) are cleaned too; on a local disk the emptied
    directories are removed as well. Returns the removed run directories.
    """
    removed: set[str] = set()
    layout = OutputLayout(output)
    for root in (layout.staging, layout.temp):
        stale: dict[str, list[str]] = {}
        for path in storage.match(FileSystems.join(root, "**")):
            run_dir = path[len(root) :].lstrip("/").split("/", 1)[0]
            if run_dir != keep:
                stale.setdefault(FileSystems.join(root, run_dir), []).append(path)
        for files_of_run in stale.values():
            storage.delete(files_of_run)
        removed.update(stale)
        local_root = storage.local_path(root)
        if storage.is_local(output) and local_root.is_dir():
            for child in local_root.iterdir():
                if child.name == keep:
                    continue
                if child.is_dir():
                    storage.delete_tree(str(child))
                else:
                    child.unlink(missing_ok=True)
                removed.add(str(child))
    if removed:
        _LOG.warning("removed leftovers of unfinished runs: %s", sorted(removed))
    return sorted(removed)


def staged_files(output: str, run_id: str, kind: str) -> list[str]:
    """The files a run staged under `kind` (articles, dead_letter, feed_reports, ...)."""
    return storage.match(FileSystems.join(OutputLayout(output).staged(run_id, kind), "**"))


def commit(output: str, run_id: str) -> tuple[list[str], list[str]]:
    """Move the run's staged files into place: the run state's signatures first, then the dead letters, then the
    articles. Returns the committed article and dead-letter paths. Files keep their relative path (the partition
    directory) and their run-unique name, so a file moved twice (by a run killed between a copy and its delete, and
    then by nobody: its staging is removed) cannot become two files."""
    committed: dict[str, list[str]] = {}
    layout = OutputLayout(output)
    destinations = {
        STAGED_SIGNATURES: layout.signatures,
        STAGED_DEAD_LETTERS: layout.dead_letters,
        STAGED_ARTICLES: layout.articles,
    }
    for kind, destination in destinations.items():
        source_root = layout.staged(run_id, kind)
        sources = staged_files(output, run_id, kind)
        targets = [FileSystems.join(destination, source[len(source_root) :].lstrip("/")) for source in sources]
        if storage.is_local(output):
            for directory in sorted({target.rsplit("/", 1)[0] for target in targets}):
                storage.mkdirs(directory)
        if sources:  # one call: an object store copies them all, then deletes the staged copies in batches
            FileSystems.rename(sources, targets)
        committed[kind] = targets
    return committed[STAGED_ARTICLES], committed[STAGED_DEAD_LETTERS]


def finish(output: str, run_id: str) -> None:
    """Remove what is left of the run's staging (its feed reports, the index it read, empty directories)."""
    layout = OutputLayout(output)
    for path in (layout.run_staging(run_id), layout.run_temp(run_id)):
        storage.delete_tree(path)
