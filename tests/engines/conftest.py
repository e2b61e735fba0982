"""What the engine tests share: where the job servers and Prism are, Beam's Python worker pool, `newsbeam run` as a
subprocess, and an output's rows.

Each engine's tests skip, saying why, when its jar or binary (or Java) is missing. `.ci/engines.sh --fetch-only`
fetches and builds them into ~/.cache/newsbeam-engines ($NEWSBEAM_ENGINES); NEWSBEAM_FLINK_JOB_SERVER_JAR,
NEWSBEAM_SPARK_JOB_SERVER_JAR and NEWSBEAM_PRISM point elsewhere. docs/engines.md says what runs where and why.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import apache_beam
import pyarrow.dataset as ds
import pytest

from transforms.clock import NOW_ENV

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("NEWSBEAM_ENGINES") or Path.home() / ".cache" / "newsbeam-engines")
# The batch runs' clock, in the driver (--now) and in the workers (the pool's environment: see worker_pool).
NOW = "2026-12-07T12:00:00Z"


def engine_file(variable: str, default: Path, what: str) -> str:
    """The path in $variable, else `default`; the test skips when there is nothing there."""
    path = Path(os.environ.get(variable) or default)
    if not path.exists():
        pytest.skip(f"{what} not found at {path}: run .ci/engines.sh --fetch-only, or set {variable}")
    return str(path)


def job_server_jar(variable: str, name: str, what: str) -> str:
    """A job server jar (see engine_file); the test skips without Java, which runs it."""
    if shutil.which("java") is None:
        pytest.skip(f"no `java` on PATH: the {what} is a Java program")
    return engine_file(variable, CACHE / name / "job-server.jar", what)


def prism_binary() -> str:
    """The Prism binary built at the installed apache-beam's version."""
    return engine_file("NEWSBEAM_PRISM", CACHE / f"prism-v{apache_beam.__version__}" / "prism", "the Prism binary")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def worker_pool(log: Path, now: str | None = NOW) -> Iterator[str]:
    """Beam's Python worker pool (`python -m apache_beam.runners.worker.worker_pool_main`), stopped afterwards; yields
    its address for `--environment_type=EXTERNAL --environment_config=ADDRESS`.

    The runner asks the pool for SDK workers, and it starts each as a process of its own (`python` on its PATH, here
    this venv's) that gets the pipeline over gRPC. Workers take their environment from the pool, not from the
    process that launched the pipeline: a fixed clock (`--now`, which sets NEWSBEAM_NOW in the launching process)
    reaches them only through the pool's environment. `log`: the pool's log (it names each worker it starts)."""
    port = _free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop(NOW_ENV, None)
    if now:
        env[NOW_ENV] = now
    with open(log, "wb") as handle:
        # A session of its own, so that stopping it stops the workers it started too.
        pool = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert pool.poll() is None, f"the worker pool exited: {log.read_text()[-2000:]}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert time.monotonic() < deadline, "the worker pool did not listen within 120 s"
            time.sleep(0.2)
        yield f"localhost:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pool.pid, signal.SIGTERM)
        pool.wait(timeout=60)


def workers_started(log: Path) -> int:
    """How many SDK worker processes the pool started (it logs each command)."""
    return log.read_text(errors="replace").count("Starting worker with command")


def newsbeam(*args: str) -> subprocess.CompletedProcess:
    """`newsbeam run --quiet ARGS` from the checkout, as a subprocess; fails the test (with its output) unless it
    exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--quiet", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def run_record(output: Path, run_id: str) -> dict:
    """The record of run `run_id` in `output`."""
    return json.loads((output / "_runs" / f"{run_id}.json").read_text())


def rows(output: Path, kind: str = "articles") -> list[str]:
    """Every row under `output/kind` (articles, dead_letter) but its run_id, each as a sorted repr, sorted."""
    if not (output / kind).exists():
        return []
    table = ds.dataset(output / kind, format="parquet", partitioning=None).to_table().drop_columns(["run_id"])
    return sorted(repr(sorted(row.items())) for row in table.to_pylist())


@pytest.fixture(scope="session")
def samples_reference(tmp_path_factory) -> Path:
    """The bundled samples run by newsbeam's local runner (the in-process FnApiRunner) at NOW: the rows every
    engine must write."""
    output = tmp_path_factory.mktemp("local") / "out"
    newsbeam("--output", str(output), "--now", NOW, "--run_id", "local")
    assert run_record(output, "local")["reconciled"]
    return output


def assert_same_output(reference: Path, output: Path) -> None:
    """The same article and dead-letter rows (all columns but run_id), compared row by row."""
    assert rows(output) == rows(reference)
    assert rows(output, "dead_letter") == rows(reference, "dead_letter")


def check_batch_on_samples(engine: list[str], pool_log: Path, reference: Path, output: Path, runner: str) -> None:
    """The bundled samples through `engine` (runner options): the reference's rows, the counts reconciled, the
    Python work done by the pool's worker processes; then a second run over every feed adds no article."""
    newsbeam("--output", str(output), "--now", NOW, "--run_id", "first", *engine)
    first = run_record(output, "first")
    assert (first["runner"], first["state"], first["reconciled"]) == (runner, "DONE", True)
    assert first["articles_written"] == run_record(reference, "local")["articles_written"] == len(rows(output))
    assert_same_output(reference, output)
    assert workers_started(pool_log) >= 1

    newsbeam("--output", str(output), "--now", NOW, "--run_id", "again", "--all", *engine)
    again = run_record(output, "again")
    assert (again["reconciled"], again["articles_written"], again["article_files"]) == (True, 0, [])
    assert again["entries_read"] == first["entries_read"]
    assert rows(output) == rows(reference)  # exactly once: the articles are those of the first run, no more
