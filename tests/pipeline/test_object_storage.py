"""Outputs on object stores, against real protocol servers on 127.0.0.1 (tests/object_stores.py): S3 (moto's server)
and GCS (gcp-storage-emulator). Scheduled runs are exactly once, also after SIGKILLs mid-run; only one run writes an
output at a time; `compact`, `report` and `reindex` work there; what was written is read back with pyarrow's own
filesystems and DuckDB, not through newsbeam."""

import datetime as dt
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

import duckdb
import pyarrow.dataset as ds
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import lock, storage
from pipeline.cli import main
from tests.feed_server import FeedServer
from tests.object_stores import GcsEmulator, MotoServer, Store, environment
from tests.pipeline.test_scheduled_runs import NOW, REPO, entry, rss, write_config


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory):
    pytest.importorskip("moto.server", reason="moto[server] is not installed: pip install -e '.[test]'")
    pytest.importorskip("boto3", reason="Beam's S3 filesystem needs boto3: pip install -e '.[aws]'")
    with MotoServer(tmp_path_factory.mktemp("moto") / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def gcs_emulator(tmp_path_factory):
    pytest.importorskip(
        "gcp_storage_emulator", reason="gcp-storage-emulator is not installed: pip install -e '.[test]'"
    )
    pytest.importorskip(
        "google.cloud.storage", reason="Beam's GCS filesystem is not installed: pip install -e '.[gcp]'"
    )
    with GcsEmulator(tmp_path_factory.mktemp("gcs") / "server.log") as server:
        yield server


@pytest.fixture(params=["s3", "gs"])
def store(request):
    """A fresh bucket on the S3 server, then on the GCS emulator."""
    server = request.getfixturevalue("moto_server" if request.param == "s3" else "gcs_emulator")
    env = server.env if request.param == "gs" else {}
    with environment(env):
        yield server.bucket()


def read_object(store: Store, path: str) -> bytes:
    with store.arrow_fs.open_input_stream(store.arrow_path(path)) as handle:
        return handle.read()


def exactly_once(store: Store, out: str) -> tuple[int, int]:
    """(rows, distinct ids) of the output's articles, as DuckDB reads them from the bucket through pyarrow."""
    articles = ds.dataset(  # noqa: F841 (DuckDB finds it by name)
        store.arrow_path(f"{out}/articles"), filesystem=store.arrow_fs, format="parquet", partitioning="hive"
    )
    return duckdb.connect().execute("select count(*), count(distinct article_id) from articles").fetchone()


def run(store: Store, config, out: str, *extra: str) -> dict:
    run_id = f"r{time.monotonic_ns()}"
    args = ["run", "--config", str(config), "--output", store.url(out), "--run_id", run_id, "--quiet"]
    status = main([*args, *store.beam_args, *extra])
    record = json.loads(read_object(store, f"{out}/_runs/{run_id}.json"))
    assert status == 0 and record["reconciled"], record
    return record


def command(store: Store, config, out: str, run_id: str) -> list[str]:
    return [
        *(sys.executable, "-m", "pipeline", "run", "--config", str(config), "--output", store.url(out), "--all"),
        *("--run_id", run_id, "--quiet", *store.beam_args),
    ]


def leftovers(store: Store, out: str) -> list[str]:
    """What a finished run must not leave: staging, writers' temporary files, the lock."""
    return store.keys(f"{out}/_staging/") + store.keys(f"{out}/_temp/") + store.keys(f"{out}/_state/lock")


def test_two_scheduled_runs_write_each_article_once(store, tmp_path):
    with FeedServer() as server:
        server.add("/a.xml", rss([entry(i) for i in range(12)]), content_type="application/rss+xml")
        config = write_config(tmp_path, [server.url("/a.xml")])
        first = run(store, config, "out", "--all")
        second = run(store, config, "out", "--all")
    assert first["articles_written"] == 12
    assert (second["articles_written"], second["already_written"]) == (0, 12)
    assert exactly_once(store, "out") == (12, 12)
    assert leftovers(store, "out") == []


# The object whose appearance gets a run SIGKILLed: its pipeline has staged its articles (nothing committed); its
# journal is written (the commit's first step); its first article file has been copied into place.
KILL_AT = (
    ("staged", "out/_staging/{run_id}/articles/", r"\.parquet$"),
    ("journal", "out/_state/seen/pending-{run_id}.parquet", r""),
    ("first article in place", "out/articles/", r"part-{run_id}-"),
)


def test_runs_killed_mid_commit_then_rerun_are_exactly_once(store, tmp_path):
    entries = [entry(i) for i in range(30)]
    env = {**os.environ, **store.env}
    killed_before_record = 0
    with FeedServer() as server:
        config = write_config(tmp_path, [server.url("/a.xml"), server.url("/b.xml")])
        for step, (name, prefix, pattern) in enumerate(KILL_AT):
            served = entries[: 10 * (step + 1)]  # each step's feeds carry ten new entries
            server.add("/a.xml", rss(served[::2]), content_type="application/rss+xml")
            server.add("/b.xml", rss(served[1::2]), content_type="application/rss+xml")
            run_id = f"killed-{step}"
            process = subprocess.Popen(
                command(store, config, "out", run_id),
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=lambda: os.nice(10),  # widens the window on a busy machine
            )
            listed, marker = prefix.format(run_id=run_id), re.compile(pattern.format(run_id=run_id))
            while process.poll() is None and not any(marker.search(key) for key in store.keys(listed)):
                time.sleep(0.005)
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            killed_before_record += not store.keys(f"out/_runs/{run_id}.json")
            if store.keys("out/articles/"):  # readers see whole files only, each article at most once
                rows, distinct = exactly_once(store, "out")
                assert rows == distinct, name
            run(store, config, "out", "--all")  # the rerun takes over the dead run's lock
            assert exactly_once(store, "out") == (len(served), len(served)), name
            assert leftovers(store, "out") == [], name
    # A kill may land after the run record (its last steps take milliseconds), but not every one.
    assert killed_before_record >= 2


def test_a_second_run_is_refused_while_one_runs(store, tmp_path, capsys):
    with FeedServer() as server:
        server.add("/a.xml", rss([entry(i) for i in range(6)]), content_type="application/rss+xml")
        config = write_config(tmp_path, [server.url("/a.xml")])
        first = subprocess.Popen(
            command(store, config, "out", "first"),
            cwd=REPO,
            env={**os.environ, **store.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        while first.poll() is None and not store.keys("out/_state/lock"):
            time.sleep(0.005)
        assert first.poll() is None, "the first run ended before its lock was seen"
        second = main(["run", "--config", str(config), "--output", store.url("out"), "--quiet", *store.beam_args])
        assert second == 1
        assert "another run is changing this output" in capsys.readouterr().err
        _, stderr = first.communicate(timeout=600)
        assert first.returncode == 0, stderr.decode()
    assert exactly_once(store, "out") == (6, 6)
    assert leftovers(store, "out") == []


def test_the_lock_is_a_conditional_create(store, caplog):
    """On S3 (moto, like AWS) a second `If-None-Match: *` create is refused and a stale lock is replaced only by
    `If-Match` on its ETag. gcp-storage-emulator ignores `ifGenerationMatch`: the lock says so in a warning."""
    storage.use_options(PipelineOptions(store.beam_args))
    probe = lock._STORES[store.scheme](store.url("probe"))
    honoured = probe.create(b"1") and not probe.create(b"2")
    assert honoured == (store.scheme == "s3")
    if honoured:
        _, version = probe.read()
        assert not probe.replace(b"3", "0" if store.scheme == "gs" else '"not-the-etag"')
        assert probe.replace(b"3", version) and probe.read()[0] == b"3"
    with caplog.at_level(logging.WARNING, logger="newsbeam"), lock.OutputLock(store.url("out"), "test"):
        assert store.keys("out/_state/lock")
    assert ("ignores conditional creates" in caplog.text) != honoured
    assert not store.keys("out/_state/lock")
    # A holder on another host cannot be checked from here: refused, with what to do.
    store.put("out/_state/lock", json.dumps({"pid": 1, "host": "elsewhere", "owner": "run x"}).encode())
    with pytest.raises(lock.LockHeld, match="delete the lock"), lock.OutputLock(store.url("out"), "test"):
        pass
    assert store.keys("out/_state/lock")  # left for its holder


def test_compact_report_and_reindex_work_on_the_store(store, tmp_path, capsys):
    with FeedServer() as server:
        config = write_config(tmp_path, [server.url("/a.xml")])
        for batch in range(3):  # three runs, each adding a file to the same hourly partitions
            published = [entry(i, NOW - dt.timedelta(days=2, minutes=i)) for i in range(batch * 4, batch * 4 + 4)]
            server.add("/a.xml", rss(published), content_type="application/rss+xml")
            run(store, config, "out")
    before = store.keys("out/articles/")
    assert main(["compact", store.url("out"), "--older-than", "1d", *store.beam_args]) == 0
    after = store.keys("out/articles/")
    assert len(after) < len(before)
    partitions = [key.rsplit("/", 1)[0] for key in after]
    assert len(partitions) == len(set(partitions))  # one file each
    assert exactly_once(store, "out") == (12, 12)
    assert leftovers(store, "out") == []

    assert main(["report", store.url("out"), "--since", "0", *store.beam_args]) == 0
    page = read_object(store, "out/_report/index.html").decode()
    assert "12 articles fetched in the period" in page

    capsys.readouterr()
    assert main(["reindex", store.url("out"), *store.beam_args]) == 0
    assert capsys.readouterr().out.startswith("reindexed 12 article(s)")
    assert main(["reindex", store.url("missing"), *store.beam_args]) == 2


def test_beams_s3_clients_are_shared_per_endpoint_and_credentials():
    """Beam's S3 filesystem asks for a boto3 client per file operation; pipeline.storage has one built per set of
    arguments. This fails when Beam stops building them through `boto3.session.Session().client(...)`."""
    pytest.importorskip("boto3", reason="Beam's S3 filesystem needs boto3: pip install -e '.[aws]'")
    from apache_beam.io.aws import s3io

    one = PipelineOptions(["--s3_endpoint_url=http://127.0.0.1:9", "--s3_region_name=us-east-1"])
    other = PipelineOptions(["--s3_endpoint_url=http://127.0.0.1:10", "--s3_region_name=us-east-1"])
    storage.use_options(one)
    first, again, elsewhere = (s3io.S3IO(options=o).client for o in (one, one, other))
    assert first is not again and first.client is again.client  # Beam's wrappers (download state) stay apart
    assert elsewhere.client is not first.client
    assert elsewhere.client.meta.endpoint_url == "http://127.0.0.1:10"
