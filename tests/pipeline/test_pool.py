"""Feeds finished in forked processes (pipeline/plane/pool.py): same outputs and counters as one process, a dead
child costs nothing, and no child outlives a killed run."""

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import apache_beam as beam
import pytest
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from pipeline import runners
from pipeline.plane.pool import ForkingDoFn, ForkPool, server_started, start_server, stop_server
from tests.pipeline.test_plane import NOW, _rows

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forking needs a POSIX system")

# Inherited by the server's children, which import this module afresh (their own pid would not tell them apart).
PARENT = int(os.environ.setdefault("NEWSBEAM_POOL_TEST_PARENT", str(os.getpid())))


def _square(n: int):
    Metrics.counter("pool-test", "seen").inc()
    Metrics.counter("pool-test", "total").inc(n)
    if n == 7 and os.getpid() != PARENT:
        os._exit(1)  # a child dies in the middle of an element (as the kernel's OOM killer would kill it)
    yield n * n


class _PooledFn(ForkingDoFn):
    def process(self, n):
        yield from self.run(n)

    def work(self, n):
        return _square(n)


class _ServedFn(_PooledFn):
    def from_server(self) -> bool:
        return True


@pytest.fixture
def server():
    start_server([__name__])
    yield
    stop_server()


@pytest.mark.parametrize("numbers", [range(6), range(20)], ids=["children-live", "a-child-dies"])
@pytest.mark.parametrize("served", [False, True], ids=["forked", "from-the-server"])
def test_outputs_and_counters_come_back_from_the_children(numbers, served, request):
    if served:
        request.getfixturevalue("server")
    pipeline = beam.Pipeline(runner=runners.local_runner(PipelineOptions([])))
    squares = pipeline | beam.Create(list(numbers)) | beam.ParDo((_ServedFn if served else _PooledFn)(processes=3))
    assert_that(squares, equal_to([n * n for n in numbers]))
    result = pipeline.run()
    result.wait_until_finish()
    # The server's children, then the server, end with the bundle.
    assert not server_started() and not multiprocessing.active_children()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("pool-test"))["counters"]
    }
    # Element 7's child died after counting it, and the elements queued to the broken pool were run again here:
    # the counts of a lost child never arrive, those of every finished element do, once.
    assert counters == {"seen": len(numbers), "total": sum(numbers)}


def _cube(n: int):
    yield n**3


@pytest.mark.parametrize("served", [False, True], ids=["forked", "from-the-server"])
def test_a_child_killed_between_elements_costs_nothing(served, request):
    # The executor refuses new work once a child has died, even when no element was lost with it.
    if served:
        request.getfixturevalue("server")
    pool = ForkPool(2, _cube, server=served)
    first = [out for outputs in [*pool.submit(1), *pool.drain()] for out in outputs]
    for child in multiprocessing.active_children():
        # The executor terminates the others once it sees the first one dead: one may be gone already.
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    later = [out for n in (2, 3) for outputs in pool.submit(n) for out in outputs]
    later += [out for outputs in pool.drain() for out in outputs]
    pool.close()
    assert first == [1] and sorted(later) == [8, 27]


def test_the_children_end_with_the_bundle():
    # The runner keeps a DoFn until the pipeline ends; idle children beside the next stage would hold their memory.
    pipeline = beam.Pipeline(runner=runners.local_runner(PipelineOptions([])))
    squares = pipeline | beam.Create(list(range(6))) | beam.ParDo(_PooledFn(processes=3))
    after = squares | beam.Reshuffle() | beam.Map(lambda n: (n, len(multiprocessing.active_children())))
    assert_that(after, equal_to([(n * n, 0) for n in range(6)]))
    pipeline.run().wait_until_finish()


def test_forked_feed_processes_write_the_same_rows_and_counts(tmp_path):
    records = []
    outputs = []
    for processes in (1, 3):
        out = tmp_path / f"p{processes}"
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "run", "--output", str(out), "--now", NOW, "--quiet"]
            + [f"--feed_processes={processes}"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(_rows(out))
        (record_file,) = (out / "_runs").glob("*.json")
        record = json.loads(record_file.read_text())
        # Every count of the run, Beam's counters among them: a child's counters must all reach the parent.
        records.append({k: v for k, v in record.items() if isinstance(v, (int, dict)) and k != "feeds"})
    assert outputs[0] and outputs[0] == outputs[1]
    assert records[0]["entries_read"] > 0 and records[0] == records[1]


@pytest.mark.parametrize("served", [False, True], ids=["forked", "from-the-server"])
def test_no_child_outlives_a_killed_parent(tmp_path, served):
    pids = tmp_path / "pids"
    # The server's children get `work` pickled: it must live in a module they can import.
    (tmp_path / "poolwork.py").write_text(
        textwrap.dedent(
            f"""
            import os, time

            def work(n):
                with open({str(pids)!r}, "a") as f:
                    f.write(f"{{os.getpid()}}\\n")
                time.sleep(60)
                yield n
            """
        )
    )
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(tmp_path)!r})
        from multiprocessing import forkserver
        from pipeline.plane.pool import ForkPool, start_server
        import poolwork

        if {served}:
            start_server(["poolwork"])
            with open({str(pids)!r}, "a") as f:
                f.write(f"{{forkserver._forkserver._forkserver_pid}}\\n")
        pool = ForkPool(2, poolwork.work, server={served})
        list(pool.submit(1)), list(pool.submit(2))
        time.sleep(60)
        """
    )
    expected = 3 if served else 2  # the server too
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while time.time() < deadline and len(pids.read_text().split() if pids.exists() else ()) < expected:
        time.sleep(0.1)
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == expected
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_feed_processes_only_on_the_local_runner_in_memory():
    assert runners.feed_processes(PipelineOptions([]), feeds=100, cores=2) == 2
    assert runners.feed_processes(PipelineOptions([]), feeds=1, cores=8) == 1
    assert runners.feed_processes(PipelineOptions(["--feed_processes=3"]), feeds=100, cores=2) == 3
    for args in (
        ["--runner=PortableRunner"],
        ["--streaming"],
        ["--direct_running_mode=multi_processing"],
    ):
        assert runners.feed_processes(PipelineOptions(args), feeds=100, cores=8) == 1
