"""The batch and streaming graphs on Apache Flink (embedded: `--flink_master=[local]`), the Python work in Beam's
worker pool's processes (`--environment_type=EXTERNAL`).

    .ci/engines.sh          # fetches the job server, then runs these with the other engines' tests

The job server is Beam 2.62.0's Flink 1.19 runner (the newest Maven Central serves whole; see .ci/engines.sh).
"""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from xml.sax.saxutils import escape

import pyarrow.dataset as ds
import pytest

from benchmarks.corpus import DATA, build_corpus, feed_documents
from tests.engines.conftest import (
    NOW,
    assert_same_output,
    check_batch_on_samples,
    job_server_jar,
    newsbeam,
    run_record,
    worker_pool,
    workers_started,
)
from transforms.clock import UTC

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def flink_jar() -> str:
    return job_server_jar("NEWSBEAM_FLINK_JOB_SERVER_JAR", "flink-1.19-2.62.0", "Flink job server")


def flink(jar: str, pool: str, *more: str) -> list[str]:
    return [
        "--runner=FlinkRunner",
        "--flink_master=[local]",
        f"--flink_job_server_jar={jar}",
        "--environment_type=EXTERNAL",
        f"--environment_config={pool}",
        *more,
    ]


def test_samples_on_flink_give_the_local_rows_once(flink_jar, samples_reference, tmp_path):
    with worker_pool(tmp_path / "pool.log") as pool:
        check_batch_on_samples(
            flink(flink_jar, pool), tmp_path / "pool.log", samples_reference, tmp_path / "out", "FlinkRunner"
        )


@pytest.mark.skipif(not DATA.exists(), reason=f"no real text at {DATA} (benchmarks/corpus.py reads it)")
def test_real_text_on_flink_gives_the_local_rows(flink_jar, feed_server, tmp_path):
    """3,000 articles of real text (11 languages, about 10% syndicated copies) served over loopback HTTP."""
    feeds = 20
    urls = []
    for index, body in enumerate(feed_documents(build_corpus(3000, seed=0, feeds=feeds), feeds=feeds)):
        feed_server.add(f"/corpus/{index}.xml", body, content_type="application/rss+xml; charset=utf-8")
        urls.append(feed_server.url(f"/corpus/{index}.xml"))
    config = tmp_path / "corpus.yaml"
    config.write_text(
        "fetch: {max_bytes: 100000000, read_timeout: 120}\nfeeds:\n"
        + "".join(f'  - {{name: outlet{i}, url: "{url}"}}\n' for i, url in enumerate(urls))
    )
    local, engine = tmp_path / "local", tmp_path / "flink"
    newsbeam("--config", str(config), "--output", str(local), "--now", NOW, "--run_id", "local")
    with worker_pool(tmp_path / "pool.log") as pool:
        newsbeam(
            "--config", str(config), "--output", str(engine), "--now", NOW, "--run_id", "r", *flink(flink_jar, pool)
        )
    record = run_record(engine, "r")
    assert record["reconciled"] and record["entries_read"] == 3000
    assert record["duplicates"] == run_record(local, "local")["duplicates"] > 0  # the copies were found there too
    assert_same_output(local, engine)
    assert workers_started(tmp_path / "pool.log") >= 1


TEXT = "The harbour authority opened the new ferry terminal on Monday after two years of building work and delays."
# Minutes before the wall clock: with 10-minute windows and an hour of allowed lateness, `late` reaches a window the
# watermark has passed (a late pane) and `stale` is past the lateness (a dead letter `too_late`).
AGES = {"fresh": 2, "late": 25, "stale": 200}


def harbour_feed(now: dt.datetime) -> bytes:
    items = "".join(
        f"<item><title>Ferry story {key}</title><link>https://harbour.example/{key}</link>"
        f"<pubDate>{format_datetime(now - dt.timedelta(minutes=minutes))}</pubDate>"
        f"<description>{escape(f'{TEXT} Part {key}.')}</description></item>"
        for key, minutes in AGES.items()
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Harbour</title>{items}</channel></rss>'.encode()


def streamed(output) -> tuple[list, list]:
    """(title, window length in minutes) of each article and (entry, stage, reason) of each dead letter written."""
    articles = ds.dataset(output / "articles", format="parquet", partitioning=None).to_table().to_pylist()
    letters = ds.dataset(output / "dead_letter", format="parquet", partitioning=None).to_table().to_pylist()
    return (
        sorted((a["title"], (a["window_end"] - a["window_start"]).total_seconds() / 60) for a in articles),
        sorted((d["entry_key"], d["stage"], d["reason"]) for d in letters),
    )


def test_streaming_on_flink_fires_windows_and_routes_late_data_as_locally(flink_jar, feed_server, tmp_path):
    feed_server.add("/harbour.xml", body=harbour_feed(dt.datetime.now(UTC)), content_type="application/rss+xml")

    def config(name: str):
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"output: {tmp_path / name}\n"
            f"feeds:\n  - {{name: Harbour, url: '{feed_server.url('/harbour.xml')}', language: en}}\n"
            "window: {size: 10m, allowed_lateness: 1h}\n"
            "streaming: {poll_interval: 2s, stop_after: 6s, dead_letter_window: 1m}\n"
        )
        return str(path)

    newsbeam("--streaming", "--config", config("local"))
    hits = feed_server.hits("/harbour.xml")
    # Streaming runs on the wall clock: no NEWSBEAM_NOW for its workers.
    with worker_pool(tmp_path / "pool.log", now=None) as pool:
        newsbeam("--streaming", "--config", config("flink"), *flink(flink_jar, pool, "--streaming"))
    assert feed_server.hits("/harbour.xml") - hits >= 2  # Flink polled, more than once
    assert streamed(tmp_path / "flink") == streamed(tmp_path / "local")
    assert streamed(tmp_path / "flink") == (
        [("Ferry story fresh", 10), ("Ferry story late", 10)],
        [("https://harbour.example/stale", "window", "too_late")],
    )
    assert workers_started(tmp_path / "pool.log") >= 1
