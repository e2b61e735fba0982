"""Elements finished in forked processes: how the local runner puts every core to work on stage A (a feed each) and
stage C (a shard of windows each).

    class _StageFeedFn(ForkingDoFn):                  # a DoFn whose work() runs in `processes` forks
        def process(self, element) -> Iterator[...]:
            yield from self.run(element)              # forks at the bundle's first element, after setup()
        def work(self, element): ...                  # one element's outputs (in a child, or here)

Why not Beam's own worker processes (`--direct_running_mode=multi_processing`)? Each of those starts a fresh
interpreter that imports Beam and loads the language models (seconds of CPU per worker), and every element crosses a
gRPC data plane; on 10,000 articles two of them were slower than one process. A fork of the process that already
holds the models costs milliseconds, and what comes back is small (the staged chunks' paths and counts, dead
letters, feed reports, written files' paths). So on the local runner stages A and C fork; on a distributed runner
(Dataflow, Flink, Spark) the runner's own workers already use every core, and `processes` is 1: nothing forks.

Beam counters a child increments would be lost with the child: it records them (`_Recorder`) and the parent adds them
to its own step when the element's outputs come back, so `result.metrics()` is the same with or without forks
(tests/pipeline/test_pool.py runs both).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import multiprocessing
import signal
import sys
from collections.abc import Callable, Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics.cells import CounterCell
from apache_beam.pvalue import TaggedOutput
from apache_beam.runners.worker import statesampler
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

_LOG = logging.getLogger(__name__)

# What a child runs: handed to it at the fork (nothing pickled: the child inherits it, models loaded).
_WORK: Callable[[object], Iterable] | None = None


class _Recorder:
    """Stands in for Beam's state sampler in a child: Beam's metric updaters call `update_metric` on the current
    tracker (apache_beam/metrics/execution.py `MetricUpdater`); this keeps the updates, counters summed, so the
    parent can make the same calls on its own tracker. tests/pipeline/test_pool.py fails if Beam stops routing
    updates this way; then record them with whatever `MetricUpdater.__call__` uses instead."""

    def __init__(self):
        self._counters: dict[object, int] = {}
        self._others: list[tuple[object, object]] = []  # distributions, lineage string sets: each update as made

    def update_metric(self, typed_metric_name, value) -> None:
        if typed_metric_name.cell_type is CounterCell:
            self._counters[typed_metric_name] = self._counters.get(typed_metric_name, 0) + value
        else:
            self._others.append((typed_metric_name, value))

    def updates(self) -> list[tuple[object, object]]:
        return [*self._counters.items(), *self._others]


def _replay(updates: list[tuple[object, object]]) -> None:
    tracker = statesampler.get_current_tracker()
    if tracker is not None:
        for name, value in updates:
            tracker.update_metric(name, value)


def _start_child(work: Callable[[object], Iterable]) -> None:
    global _WORK
    _WORK = work
    # Another thread of the parent (the progress line) may have held stderr's lock at the moment of the fork; that
    # copy of the lock is never released in the child, so the child writes through fresh stream objects.
    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        try:
            new = open(fd, "w", closefd=False, encoding=getattr(old, "encoding", None), errors="backslashreplace")
        except OSError:
            continue
        setattr(sys, name, new)
        for handler in [*logging.getLogger().handlers, *_handlers_of_named_loggers()]:
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.stream = new  # not setStream: it would flush the old stream, taking its lock
    # A run killed with SIGKILL must not leave children writing into its staging directory (the next run removes
    # it). prctl(PR_SET_PDEATHSIG) exists on Linux only; elsewhere a child ends when it next reads its closed pipe.
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


def _handlers_of_named_loggers() -> list[logging.Handler]:
    loggers = [x for x in logging.Logger.manager.loggerDict.values() if isinstance(x, logging.Logger)]
    return [handler for logger in loggers for handler in logger.handlers]


def _run_in_child(element) -> tuple[list, list]:
    recorder = _Recorder()
    previous = statesampler.get_current_tracker()
    statesampler.set_current_tracker(recorder)
    try:
        outputs = list(_WORK(element))
    finally:
        statesampler.set_current_tracker(previous)
    return outputs, recorder.updates()


class ForkPool:
    """Runs `work(element)` (an iterable of outputs) in `processes` forked children, `processes` elements at a time.

    Outputs come back per element, in the order elements finish. A child that dies (killed, out of memory) costs
    nothing: the elements it held are run again in this process, and the pool is not used again."""

    def __init__(self, processes: int, work: Callable[[object], Iterable]):
        self._work = work
        # With the fork context the initializer's arguments are inherited, not pickled.
        self._executor = concurrent.futures.ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("fork"), initializer=_start_child, initargs=(work,)
        )
        self._pending: dict[concurrent.futures.Future, object] = {}
        self._broken = False

    def submit(self, element) -> Iterator[list]:
        """Queue `element`; yield the outputs of elements already finished (without waiting)."""
        queued = False
        if not self._broken:
            try:
                self._pending[self._executor.submit(_run_in_child, element)] = element
                queued = True
            except concurrent.futures.process.BrokenProcessPool:  # a child died since the last element came back
                self._break()
        done = [future for future in self._pending if future.done()]
        yield from self._collect(done)
        if not queued:
            yield list(self._work(element))

    def drain(self) -> Iterator[list]:
        """Wait for every queued element; yield their outputs as they finish."""
        while self._pending:
            done, _ = concurrent.futures.wait(self._pending, return_when=concurrent.futures.FIRST_COMPLETED)
            yield from self._collect(done)

    def drain_windowed(self) -> Iterator[WindowedValue | TaggedOutput]:
        """drain(), each output as finish_bundle must yield it: in the global window (the graph's batch stages run
        in it), a tagged output's value too."""
        for outputs in self.drain():
            for out in outputs:
                if isinstance(out, TaggedOutput):
                    yield TaggedOutput(out.tag, GlobalWindows.windowed_value(out.value))
                else:
                    yield GlobalWindows.windowed_value(out)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _break(self) -> None:
        if not self._broken:
            _LOG.warning("a forked worker process died; finishing the remaining elements in this process")
        self._broken = True

    def _collect(self, done: Iterable[concurrent.futures.Future]) -> Iterator[list]:
        for future in done:
            element = self._pending.pop(future)
            try:
                outputs, updates = future.result()
            except concurrent.futures.process.BrokenProcessPool:
                self._break()
                yield list(self._work(element))
                continue
            _replay(updates)
            yield outputs


class ForkingDoFn(beam.DoFn):
    """A DoFn whose `work(element)` runs in `processes` forked children (1: here). The children are forked at a
    bundle's first element, after setup() has loaded what they need, and end with the bundle: the runner keeps a
    DoFn until the pipeline ends, and the next stage should not run beside idle children (about 570 MiB resident
    each at 100,000 articles). Subclasses define process() as `yield from self.run(element)` with its output types,
    which Beam reads from the annotation."""

    def __init__(self, processes: int = 1):
        self._processes = processes
        self._pool: ForkPool | None = None

    def work(self, element) -> Iterable:
        raise NotImplementedError

    def run(self, element) -> Iterator:
        if self._processes <= 1:
            yield from self.work(element)
            return
        if self._pool is None:
            self._pool = ForkPool(self._processes, self.work)
        for outputs in self._pool.submit(element):
            yield from outputs

    def finish_bundle(self):
        if self._pool is not None:
            yield from self._pool.drain_windowed()
            self._close_pool()

    def teardown(self):
        self._close_pool()

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
