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

A child forked from the driver starts with all of the driver's resident pages, and each counts them in its own RSS:
at a million articles stage C's two forks were about 800 MiB each, most of it the driver's (models, Beam, what stage B
left). A stage that needs no models can fork from a small process instead (`start_server`: a fresh interpreter that
imports only the modules named, started while the driver still works on the stage before; multiprocessing's
forkserver). Its children get the work pickled (a DoFn is picklable: Beam pickles it too) and start at that
process's size.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import io
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import context, forkserver, popen_forkserver, reduction, spawn, util

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
    # A child of the server has the server for its parent, and the server lives while any of its children does: such
    # a child watches the pipe its pool's process holds (multiprocessing's parent sentinel) and ends at its EOF.
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid != os.getppid():
        threading.Thread(target=_end_with, args=(parent.sentinel,), daemon=True).start()


def _end_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os.kill(os.getpid(), signal.SIGKILL)


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


class _ServerPopen(popen_forkserver.Popen):
    """multiprocessing's forkserver child, without the parent's main module: a child runs the parent's `__main__`
    again before it starts (the `newsbeam` script imports pipeline.cli, hence everything), which would make it as
    big as the driver. The rest is popen_forkserver.Popen._launch as it is."""

    def _launch(self, process_obj):
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            context.set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _ServerProcess(context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj):
        return _ServerPopen(process_obj)


class _ServerContext(context.ForkServerContext):
    Process = _ServerProcess


_SERVER = _ServerContext()
_server_started = False


def start_server(modules: list[str]) -> None:
    """Start the process that pools with `server=True` fork their children from: a fresh interpreter importing only
    `modules` (about 160 MiB and 1 s of CPU with Beam and pyarrow in a plain install). It returns at once: the
    imports run beside what this process does next, and the first child waits for them. It ends with this process
    (it reads EOF from a pipe this process holds), or at stop_server()."""
    global _server_started
    forkserver._forkserver.set_forkserver_preload(list(modules))
    forkserver.ensure_running()
    _server_started = True


def server_started() -> bool:
    return _server_started


def stop_server() -> None:
    """End the server (and the resource tracker's pipe stays): the next start_server() starts a new one."""
    global _server_started
    if _server_started:
        forkserver._forkserver._stop()
        _server_started = False


class ForkPool:
    """Runs `work(element)` (an iterable of outputs) in `processes` forked children, `processes` elements at a time;
    forked from this process (`server=False`: the children inherit `work` and all this process holds) or from the
    server (start_server: `work` is pickled).

    Outputs come back per element, in the order elements finish. A child that dies (killed, out of memory) costs
    nothing: the elements it held are run again in this process, and the pool is not used again."""

    def __init__(self, processes: int, work: Callable[[object], Iterable], server: bool = False):
        self._work = work
        # With the fork context the initializer's arguments are inherited, not pickled.
        self._executor = concurrent.futures.ProcessPoolExecutor(
            processes,
            mp_context=_SERVER if server else multiprocessing.get_context("fork"),
            initializer=_start_child,
            initargs=(work,),
        )
        # Start every child at the first element, as with fork. Started one per element instead (the executor's way
        # beside a server), a child started while another's death was being handled was never terminated, and
        # close() waited for it forever (CPython 3.11; test_a_child_killed_between_elements_costs_nothing).
        self._executor._safe_to_dynamically_spawn_children = False
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
    each at 100,000 articles). They fork from the server when one was started (start_server) and `from_server()`
    says so; the server then ends with them. Subclasses define process() as `yield from self.run(element)` with its
    output types, which Beam reads from the annotation."""

    def __init__(self, processes: int = 1):
        self._processes = processes
        self._pool: ForkPool | None = None
        self._served = False

    def __getstate__(self):
        # A child forked from the server gets this DoFn pickled: without the pool it is being run by.
        return {**self.__dict__, "_pool": None, "_served": False}

    def work(self, element) -> Iterable:
        raise NotImplementedError

    def from_server(self) -> bool:
        """Whether the children fork from a started server rather than from this process."""
        return False

    def run(self, element) -> Iterator:
        if self._processes <= 1:
            yield from self.work(element)
            return
        if self._pool is None:
            self._served = self.from_server() and server_started()
            self._pool = ForkPool(self._processes, self.work, server=self._served)
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
            if self._served:
                stop_server()  # its imports' 160 MiB need not stay beside the commit
                self._served = False
