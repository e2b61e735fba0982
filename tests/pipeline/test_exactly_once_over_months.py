"""Scheduled runs over months on a settable clock: every article exactly once, however long it stays in its feed,
whatever its event time (undated, backdated by a year), with SIGKILLs in the middle of runs; the bundled samples;
a deleted or corrupt key index."""

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import time
from email.utils import format_datetime
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.cli import main
from tests.feed_server import FeedServer
from tests.pipeline.test_scheduled_runs import REPO, entry, exactly_once, write_config

START = dt.datetime(2027, 1, 10, 6, tzinfo=dt.timezone.utc)
DAYS = 90
# Days between runs: 31 runs across the 90 days (each run costs a few seconds of Beam, so 91 daily runs would take
# most of the suite's budget). Every entry is seen by several runs while it stays, and the come-and-go entries are
# seen leaving and coming back.
RUN_EVERY = 3
# Run day -> the file whose appearance gets the run SIGKILLed: its pipeline has staged its articles (nothing
# committed); its journal is written (the commit begins); one of its article files is renamed into place.
KILLED = {
    30: "_staging/{run_id}/articles/**/*.parquet",
    60: "_state/seen/pending-{run_id}.parquet",
    75: "articles/**/part-{run_id}-*.parquet",
}
LONG_LIVED, COME_AND_GO, OTHER = range(3)


def schedule(day: int) -> dict[str, list[dict]]:
    """The feeds' entries on `day`. Three entries are born each day: one stays 60 days; one stays 8 days, leaves for
    12 (less than dedup.forget_after) and comes back for 6; one is, in turn, undated (20 days), backdated by a year
    (40 days) or an ordinary short-lived entry (5 days)."""
    feeds: dict[str, list[dict]] = {"/long.xml": [], "/mixed.xml": []}
    for born in range(max(0, day - 60), day + 1):
        age = day - born
        published = START + dt.timedelta(days=born)
        if age < 60:
            feeds["/long.xml"].append(entry(3 * born + LONG_LIVED, published))
        if age < 8 or 20 <= age < 26:
            feeds["/mixed.xml"].append(entry(3 * born + COME_AND_GO, published))
        kind, stays = [("undated", 20), ("backdated", 40), ("short", 5)][born % 3]
        if age < stays:
            story = entry(3 * born + OTHER, published - dt.timedelta(days=365) if kind == "backdated" else published)
            if kind == "undated":
                story["published"] = None
            feeds["/mixed.xml"].append(story)
    return feeds


def rss(entries: list[dict]) -> bytes:
    items = "".join(
        f"<item><title>{e['title']}</title><link>https://local.test/story/{e['id']}</link><guid>story-{e['id']}</guid>"
        + (f"<pubDate>{format_datetime(e['published'])}</pubDate>" if e["published"] else "")
        + f"<description>{e['text']}</description></item>"
        for e in entries
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Local</title><link>https://local.test/</link>'
        f"<language>en</language>{items}</channel></rss>"
    ).encode()


def run_at(config: Path, output: Path, now: dt.datetime, *extra: str) -> dict:
    run_id = f"r{time.monotonic_ns()}"
    status = main(
        ["run", "--config", str(config), "--output", str(output), "--run_id", run_id, "--now", now.isoformat(), *extra]
    )
    record = json.loads((output / "_runs" / f"{run_id}.json").read_text())
    assert status == 0 and record["reconciled"], record
    return record


def test_ninety_days_of_runs_with_three_killed_are_exactly_once(tmp_path):
    out = tmp_path / "out"
    served: set[int] = set()
    with FeedServer() as server:
        config = write_config(tmp_path, [server.url("/long.xml"), server.url("/mixed.xml")])
        command = [sys.executable, "-m", "pipeline", "run", "--config", str(config), "--output", str(out), "--all"]
        killed_before_record = 0
        for day in range(0, DAYS + 1, RUN_EVERY):
            now = START + dt.timedelta(days=day, minutes=7)
            feeds = schedule(day)
            for path, entries in feeds.items():
                server.add(path, rss(entries), content_type="application/rss+xml")
            served |= {e["id"] for entries in feeds.values() for e in entries}
            if day in KILLED:
                run_id = f"killed-{day}"
                process = subprocess.Popen(
                    [*command, "--now", now.isoformat(), "--run_id", run_id],
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=lambda: os.nice(10),
                )  # widens the window on a busy machine
                marker = KILLED[day].format(run_id=run_id)
                while process.poll() is None and not list(out.glob(marker)):
                    time.sleep(0.002)
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                killed_before_record += not (out / "_runs" / f"{run_id}.json").exists()
                rows, distinct = exactly_once(out)
                assert rows == distinct, day  # at most once, even mid-commit
                run_at(config, out, now)  # the rerun
            else:
                record = run_at(config, out, now)
                assert record["already_written"] > 0 or day == 0
            assert exactly_once(out) == (len(served), len(served)), day
    # Not every kill is sure to land before the run record (a run's last steps take milliseconds), but one must.
    assert killed_before_record >= 1
    # The index holds what the feeds carried within dedup.forget_after of the last run, not all that was written.
    [generation] = (out / "_state" / "seen").glob("gen-*.parquet")
    assert 0 < pq.read_table(generation).num_rows < len(served)


def test_bundled_samples_forty_days_later_add_nothing(tmp_path):
    out = tmp_path / "out"
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)
    first = run_sample(out, now)
    later = run_sample(out, now + dt.timedelta(days=40))
    assert first["articles_written"] > 0
    assert later["articles_written"] == 0 and later["already_written"] > 0
    assert exactly_once(out) == (first["articles_written"],) * 2


def run_sample(out: Path, now: dt.datetime) -> dict:
    run_id = f"s{time.monotonic_ns()}"
    assert main(["run", "--output", str(out), "--run_id", run_id, "--now", now.isoformat()]) == 0
    return json.loads((out / "_runs" / f"{run_id}.json").read_text())


def test_deleted_or_corrupt_index_is_rebuilt_with_a_warning_and_nothing_is_duplicated(tmp_path, caplog):
    out = tmp_path / "out"
    with FeedServer() as server:
        server.add(
            "/a.xml",
            rss([entry(i, START - dt.timedelta(days=100 + i)) for i in range(6)]),
            content_type="application/rss+xml",
        )
        config = write_config(tmp_path, [server.url("/a.xml")])
        assert run_at(config, out, START)["articles_written"] == 6
        seen = out / "_state" / "seen"
        [generation] = seen.glob("gen-*.parquet")
        generation.write_bytes(b"PAR1 this is not an index PAR1")
        with caplog.at_level(logging.WARNING, logger="newsbeam"):
            corrupt = run_at(config, out, START + dt.timedelta(days=20))
        assert "unreadable" in caplog.text
        for path in seen.iterdir():
            path.unlink()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="newsbeam"):
            deleted = run_at(config, out, START + dt.timedelta(days=40))
        assert "no key index" in caplog.text
        assert main(["reindex", str(out)]) == 0
        reindexed = run_at(config, out, START + dt.timedelta(days=50))
    for record in (corrupt, deleted, reindexed):
        assert (record["articles_written"], record["already_written"]) == (0, 6)
    assert exactly_once(out) == (6, 6)
