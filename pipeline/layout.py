"""Every path of an output directory, in one place: `OutputLayout(root)`.

    <root>/articles/, dead_letter/          the data: what readers see (partitions by window; transforms.sink)
    <root>/_staging/<run_id>/<kind>/        where a run's pipeline writes; moved into place only after it succeeded
    <root>/_staging/<run_id>/work/          the batch graph's staged articles and decisions (never committed)
    <root>/_staging/compact-<id>/           a compaction's new files and its journal (pipeline.compact)
    <root>/_temp/<run_id>/<kind>/           where a batch run's writers stage files before renaming them
    <root>/_streaming/<run_id>/<kind>/      the same for a streaming run (a batch run's clean-up leaves it alone)
    <root>/_runs/<run_id>.json              the run record, written last: the run's commit point
    <root>/_state/feeds.parquet             feed health and conditional-GET validators (pipeline.schedule)
    <root>/_state/signatures/               near-duplicate signatures of written articles, by published date
    <root>/_state/seen/                     the key index of what was written (pipeline.seen_index)
    <root>/_state/lock                      held while a run or a compaction changes the output
    <root>/_report/index.html               the HTML report (pipeline.report)

Readers of the data skip directories whose names start with `_` or `.`. transforms/ never imports this module:
the graph builders pass it the paths it needs.
"""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems

from transforms.sink import ARTICLES_DIR, DEAD_LETTER_DIR

# What a run stages under `_staging/<run_id>/`, one directory each.
STAGED_ARTICLES = ARTICLES_DIR
STAGED_DEAD_LETTERS = DEAD_LETTER_DIR
STAGED_FEED_REPORTS = "feed_reports"
STAGED_SIGNATURES = "signatures"
STAGED_SEEN_KEYS = "seen_keys"
STAGED_SEEN = "seen"  # the key index the run's pipeline reads (base.parquet)
STAGED_WORK = "work"  # the batch graph's staged articles, keys and decisions (pipeline/plane/), never committed


class OutputLayout:
    """The paths of the output directory `root` (a local path or an object-store URL)."""

    def __init__(self, root: str):
        self.root = str(root)

    def __repr__(self) -> str:
        return f"OutputLayout({self.root!r})"

    def _join(self, *parts: str) -> str:
        return FileSystems.join(self.root, *parts)

    # The data
    @property
    def articles(self) -> str:
        return self._join(ARTICLES_DIR)

    @property
    def dead_letters(self) -> str:
        return self._join(DEAD_LETTER_DIR)

    # A run's work in progress
    @property
    def staging(self) -> str:
        """`_staging/`: one directory per unfinished run or compaction."""
        return self._join("_staging")

    def run_staging(self, run_id: str) -> str:
        """`_staging/<run_id>/`: where the run's pipeline writes its files before they are committed."""
        return self._join("_staging", run_id)

    def staged(self, run_id: str, kind: str) -> str:
        """`_staging/<run_id>/<kind>/`, kind one of the STAGED_* names."""
        return self._join("_staging", run_id, kind)

    def compaction(self, job: str) -> str:
        """`_staging/<job>/`: a compaction's work directory."""
        return self._join("_staging", job)

    @property
    def temp(self) -> str:
        """`_temp/`: where a batch run's writers stage files before renaming them (per run below it)."""
        return self._join("_temp")

    def run_temp(self, run_id: str, kind: str = "") -> str:
        """`_temp/<run_id>[/<kind>]`."""
        return self._join("_temp", run_id, kind) if kind else self._join("_temp", run_id)

    @property
    def streaming_temp(self) -> str:
        """`_streaming/`: the writers' staging for streaming runs, out of reach of a batch run's clean-up."""
        return self._join("_streaming")

    # Runs and state
    @property
    def runs(self) -> str:
        return self._join("_runs")

    def run_record(self, run_id: str) -> str:
        """`_runs/<run_id>.json`."""
        return self._join("_runs", f"{run_id}.json")

    @property
    def state(self) -> str:
        return self._join("_state")

    @property
    def lock(self) -> str:
        return self._join("_state", "lock")

    @property
    def feed_state(self) -> str:
        """`_state/feeds.parquet`."""
        return self._join("_state", "feeds.parquet")

    @property
    def signatures(self) -> str:
        """`_state/signatures/`: committed near-duplicate signatures."""
        return self._join("_state", "signatures")

    def seen(self, name: str = "") -> str:
        """`_state/seen/[<name>]`: the key index's generations and journals."""
        return self._join("_state", "seen", name) if name else self._join("_state", "seen")

    @property
    def report_page(self) -> str:
        """`_report/index.html`."""
        return self._join("_report", "index.html")
