"""Progress of a running batch pipeline, on stderr: feeds fetched of the total, articles through each stage, the
time elapsed. A tqdm bar on a terminal; elsewhere (cron, Airflow logs) one plain line a minute at most, so a run
shorter than a minute prints nothing.

Where the counts come from: the DirectRunner runs the pipeline inside `pipeline.run()` and gives no metrics until
it returns, so `tap()` adds a counting step after each stage that tallies into this process. That sees everything
when the workers are threads of this process (the DirectRunner's default); with worker processes
(`--direct_running_mode=multi_processing`) it stays at zero. Runners whose `run()` returns at once (Dataflow,
Flink, Prism) are followed through the pipeline result's own Beam counters instead (`follow()`).
"""

from __future__ import annotations

import collections
import itertools
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import apache_beam as beam
from tqdm import tqdm

from pipeline.summary import counter_values
from transforms import counters as n

# (what is shown, the full label of the step of pipeline/build.py whose output is counted, its output tag; None:
# the main output, which Beam keys by None whatever name `with_outputs(main=...)` gave it). Elements are counted by their `articles` when they have one (the staged chunks, the shards to write).
STAGES = (
    ("feeds", "Stage/Feeds", "reports"),
    ("staged", "Stage/Feeds", None),
    ("kept", "Decide/Decide", None),
    ("dead letters", "Stage/Feeds", "dead_letters"),
)
# The same numbers from Beam's counters, for runners that report them while running.
_COUNTERS = {
    "feeds": (n.FEEDS_OK, n.FEEDS_FAILED),
    "staged": (n.ARTICLES_CLASSIFIED,),
    "kept": (n.ARTICLES_WRITTEN,),
    "dead letters": (n.DEAD_LETTER_ENTRIES, n.DEAD_LETTER_FEEDS),
}

_TALLIES: collections.Counter = collections.Counter()
_LOCK = threading.Lock()
_TOKENS = itertools.count(1)


class _Tally(beam.DoFn):
    """Counts the elements of one stage's output (or the articles they stand for) into this process (no output)."""

    def __init__(self, token: int, key: str):
        self._key = (token, key)

    def process(self, element: Any):
        with _LOCK:
            _TALLIES[self._key] += getattr(element, "articles", 1)
        return ()


def tap(pipeline: beam.Pipeline) -> int:
    """Count the outputs of the stages in STAGES (found by their labels; a missing one is not counted). Call after
    the graph is built; returns the token that `local_counts` reads."""
    token = next(_TOKENS)
    steps, parts = {}, list(pipeline.transforms_stack[0].parts)
    while parts:
        part = parts.pop()
        steps[part.full_label] = part
        parts.extend(part.parts)
    for key, label, tag in STAGES:
        step = steps.get(label)
        if step is None:
            continue
        for out_tag, pcoll in step.outputs.items():
            if out_tag == tag:
                pcoll | f"Progress/{key}/{out_tag}" >> beam.ParDo(_Tally(token, key))
    return token


def local_counts(token: int) -> dict[str, int]:
    """What the taps of run `token` have counted so far in this process."""
    with _LOCK:
        return {key: _TALLIES[(token, key)] for key, _, _ in STAGES}


def beam_counts(result: Any) -> dict[str, int]:
    """The same numbers from a pipeline result's Beam counters ({} when the runner has none yet)."""
    try:
        counters = counter_values(result.metrics())
    except Exception:  # a runner that cannot report metrics while running
        return {}
    finally:
        if getattr(result, "_metrics", None) is not None:
            # The portable runner's result keeps its first answer for good; the run summary must get the final one.
            result._metrics = None
    return {key: sum(counters.get(name, 0) for name in names) for key, names in _COUNTERS.items()}


def describe(counts: dict[str, int], total_feeds: int) -> str:
    """One line: 'feeds 5/7 · staged 88 · ...'."""
    parts = [f"feeds {counts.get('feeds', 0)}/{total_feeds}"]
    parts += [f"{key} {counts.get(key, 0):,}" for key, _, _ in STAGES[1:]]
    return " · ".join(parts)


class Progress:
    """Shows a run's progress on `stream` while it is a context manager; `poll()` does one update (the thread calls
    it every `tick` seconds; tests call it with their own clock)."""

    def __init__(
        self,
        total_feeds: int,
        counts: Callable[[], dict[str, int]],
        stream: TextIO | None = None,
        quiet: bool = False,
        log_every: float = 60.0,
        tick: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._stream = stream or sys.stderr
        self._total = total_feeds
        self._counts = counts
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._enabled = not quiet
        self._log_every = log_every
        self._tick = tick
        self._clock = clock
        self._start = clock()
        self._last_line = self._start
        self._bar: tqdm | None = None
        self._result: Any = None
        self._beam: dict[str, int] = {}
        self._beam_at = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self, result: Any) -> None:
        """Read Beam's counters from `result` from now on, where the taps in this process see nothing."""
        self._result = result

    def current(self) -> dict[str, int]:
        """The counts to show: the taps', or the runner's counters when the taps saw nothing."""
        counts = self._counts()
        if self._result is not None and not any(counts.values()):
            now = self._clock()
            if now - self._beam_at >= 10:  # a remote runner's metrics are an API call: every 10 s is enough
                self._beam_at = now
                self._beam = beam_counts(self._result) or self._beam
            counts = self._beam or counts
        return counts

    def poll(self) -> None:
        """Draw the bar (terminal) or print a line if a minute has passed since the last (elsewhere)."""
        if not self._enabled:
            return
        counts = self.current()
        now = self._clock()
        if self._tty:
            if self._bar is None:
                self._bar = tqdm(
                    total=self._total,
                    unit="feed",
                    file=self._stream,
                    dynamic_ncols=True,
                    leave=True,
                    mininterval=0,
                    bar_format="feeds fetched {n_fmt}/{total_fmt} |{bar:12}| {elapsed} · {desc}",
                )
            self._bar.n = min(counts.get("feeds", 0), self._total)
            self._bar.set_description_str(describe(counts, self._total).split(" · ", 1)[1], refresh=False)
            self._bar.refresh()
        elif now - self._last_line >= self._log_every:
            self._last_line = now
            print(
                f"newsbeam: progress after {now - self._start:.0f}s: {describe(counts, self._total)}",
                file=self._stream,
                flush=True,
            )

    def _loop(self) -> None:
        while not self._stop.wait(self._tick):
            self.poll()

    def __enter__(self) -> Progress:
        if self._enabled:
            self._thread = threading.Thread(target=self._loop, name="newsbeam-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self.poll()  # the final counts stay on the terminal
            self._bar.close()
