"""Repeated runs over the same feeds: incremental, idempotent, crash-safe; conditional GET and feed health."""

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from email.utils import format_datetime
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipeline.cli import main
from pipeline.compact import recover_compactions
from pipeline.layout import OutputLayout
from pipeline.schedule import load_feed_health
from tests.feed_server import FeedServer

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

WORDS = (
    "council budget bridge harbour museum festival school hospital railway airport market farmers harvest river "
    "storm police court mayor minister election union strike factory energy prices housing library stadium "
    "tram ferry tunnel forest bakery orchestra theatre pharmacy clinic students teachers nurses drivers"
).split()


def entry(i: int, published: dt.datetime | None = None) -> dict:
    """A story of its own: distinct words, so neither exact nor near-duplicate detection merges two entries."""
    published = published or NOW - dt.timedelta(hours=i % 30, minutes=i)
    rng = random.Random(i)
    sentences = [
        " ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + f" {rng.randint(10, 9999)}." for _ in range(6)
    ]
    return {
        "id": i,
        "title": f"Local story {i}: " + " ".join(rng.choice(WORDS) for _ in range(5)),
        "text": " ".join(sentences),
        "published": published,
    }


def rss(entries: list[dict], ttl: int | None = None) -> bytes:
    items = "".join(
        f"<item><title>{e['title']}</title><link>https://local.test/story/{e['id']}</link>"
        f"<guid>story-{e['id']}</guid><pubDate>{format_datetime(e['published'])}</pubDate>"
        f"<description>{e['text']}</description></item>"
        for e in entries
    )
    ttl_element = f"<ttl>{ttl}</ttl>" if ttl else ""
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Local</title><link>https://local.test/</link>'
        f"<language>en</language>{ttl_element}{items}</channel></rss>"
    ).encode()


def write_config(tmp_path: Path, urls: list[str], extra: str = "") -> Path:
    config = tmp_path / "feeds.yaml"
    feeds = "".join(f'  - {{name: feed{i}, url: "{u}", language: en}}\n' for i, u in enumerate(urls))
    config.write_text(f"feeds:\n{feeds}fetch: {{retries: 0, read_timeout: 5}}\n{extra}")
    return config


def run(config: Path, output: Path, *extra: str) -> dict:
    run_id = f"r{time.monotonic_ns()}"
    status = main(["run", "--config", str(config), "--output", str(output), "--run_id", run_id, *extra])
    record = json.loads((output / "_runs" / f"{run_id}.json").read_text())
    assert status == 0 and record["reconciled"], record
    return record


def article_files(output: Path) -> list[Path]:
    return sorted((output / "articles").rglob("*.parquet"))


def exactly_once(output: Path) -> tuple[int, int]:
    """(rows, distinct ids) as DuckDB reads the dataset."""
    return (
        duckdb.connect()
        .execute(
            f"select count(*), count(distinct article_id) "
            f"from read_parquet('{output}/articles/**/*.parquet', hive_partitioning=true)"
        )
        .fetchone()
    )


def test_second_run_adds_nothing_third_adds_exactly_the_new(tmp_path):
    entries = [entry(i) for i in range(12)]
    with FeedServer() as server:
        server.add("/a.xml", rss(entries[:8]), content_type="application/rss+xml")
        server.add("/b.xml", rss(entries[8:]), content_type="application/rss+xml")
        config = write_config(tmp_path, [server.url("/a.xml"), server.url("/b.xml")])
        out = tmp_path / "out"
        assert run(config, out)["articles_written"] == 12
        files = article_files(out)

        second = run(config, out)
        assert (second["articles_written"], second["already_written"]) == (0, 12)
        assert article_files(out) == files  # no new files, none rewritten

        server.add("/a.xml", rss(entries[:8] + [entry(i) for i in range(100, 103)]), content_type="application/rss+xml")
        third = run(config, out)
        assert third["articles_written"] == 3
    assert exactly_once(out) == (15, 15)


def test_not_modified_is_no_error(tmp_path):
    with FeedServer() as server:
        server.add("/a.xml", rss([entry(i) for i in range(4)]), content_type="application/rss+xml", etag='"v1"')
        config = write_config(tmp_path, [server.url("/a.xml")])
        out = tmp_path / "out"
        run(config, out)
        second = run(config, out)
        assert server.requests_for("/a.xml")[-1].headers["If-None-Match"] == '"v1"'
        assert second["feeds_not_modified"] == 1 and second["feeds_failed"] == 0
        assert second["articles_written"] == 0 and second["entries_read"] == 0
        [feed] = second["feeds"]
        assert feed["status"] == 304 and feed["failures"] == 0


def test_lying_validators_are_detected_and_distrusted(tmp_path):
    with FeedServer() as server:
        # The server's ETag never changes, whatever the feed says: it answers 304 to every conditional request.
        server.add("/lies.xml", rss([entry(1)]), content_type="application/rss+xml", etag='"forever"')
        out = tmp_path / "out"
        trusting = write_config(tmp_path, [server.url("/lies.xml")])
        run(trusting, out)
        server.add("/lies.xml", rss([entry(1), entry(2)]), content_type="application/rss+xml", etag='"forever"')
        missed = run(trusting, out)
        assert missed["feeds_not_modified"] == 1 and missed["articles_written"] == 0  # the lie hides entry 2

        checking = write_config(tmp_path, [server.url("/lies.xml")], "schedule: {validator_check: 0s}\n")
        check = run(checking, out)  # the periodic full GET: same ETag, different body
        assert "If-None-Match" not in server.requests_for("/lies.xml")[-1].headers
        assert check["articles_written"] == 1
        health = load_feed_health(str(out))[server.url("/lies.xml")]
        assert not health.validators_trusted
        assert "body changed under unchanged validators" in health.validators_note

        run(trusting, out)  # distrusted: no conditional request any more
        assert "If-None-Match" not in server.requests_for("/lies.xml")[-1].headers


def test_validators_ignored_by_server_are_distrusted(tmp_path):
    with FeedServer() as server:
        # Sends an ETag but never honours If-None-Match: a conditional GET gets the same body again.
        server.add("/deaf.xml", rss([entry(1)]), content_type="application/rss+xml", headers={"ETag": '"x"'})
        config = write_config(tmp_path, [server.url("/deaf.xml")])
        out = tmp_path / "out"
        run(config, out)
        run(config, out)
        assert server.requests_for("/deaf.xml")[-1].headers["If-None-Match"] == '"x"'
        health = load_feed_health(str(out))[server.url("/deaf.xml")]
        assert not health.validators_trusted and "unchanged body" in health.validators_note


def test_feed_health_backoff_and_hints(tmp_path):
    with FeedServer() as server:
        server.add("/ok.xml", rss([entry(1)], ttl=90), content_type="application/rss+xml")
        server.add("/down.xml", status=500)
        config = write_config(tmp_path, [server.url("/ok.xml"), server.url("/down.xml")])
        out = tmp_path / "out"
        before = dt.datetime.now(dt.timezone.utc)
        first = run(config, out)
        after = dt.datetime.now(dt.timezone.utc)
        health = load_feed_health(str(out))
        ok, down = health[server.url("/ok.xml")], health[server.url("/down.xml")]
        assert ok.next_due_reason == "feed ttl" and ok.next_due_at - before >= dt.timedelta(minutes=89)
        assert down.consecutive_failures == 1 and "http_error" in down.last_error and down.last_status == 500
        # The backoff counts from the failed fetch, somewhere inside the run (which a loaded machine makes slow).
        assert down.next_due_at > before and down.next_due_at - after <= dt.timedelta(minutes=6)

        second = run(config, out)  # neither is due yet: both skipped, nothing fetched
        assert second["feeds_skipped"] == 2 and second["entries_read"] == 0
        third = run(config, out, "--all")
        assert third["feeds_skipped"] == 0
        assert load_feed_health(str(out))[server.url("/down.xml")].consecutive_failures == 2
        assert {f["name"]: f["failures"] for f in third["feeds"]} == {"feed0": 0, "feed1": 2}
        assert first["feeds"][0]["new_entries"] == 1


def test_corrupt_state_runs_as_first_run_without_duplicates(tmp_path, caplog):
    with FeedServer() as server:
        server.add("/a.xml", rss([entry(i) for i in range(5)]), content_type="application/rss+xml")
        config = write_config(tmp_path, [server.url("/a.xml")])
        out = tmp_path / "out"
        run(config, out)
        Path(OutputLayout(str(out)).feed_state).write_bytes(b"this is not parquet")
        again = run(config, out)
    assert again["articles_written"] == 0 and again["already_written"] == 5
    assert any("feeds.parquet" in r.getMessage() for r in caplog.records)
    assert exactly_once(out) == (5, 5)


def test_an_entry_older_than_the_lookback_is_not_written_again(tmp_path):
    """Whatever its event time: the key index remembers what feeds still carry, not what is recent."""
    old = entry(1, published=NOW - dt.timedelta(days=400))
    recent = entry(2, published=NOW - dt.timedelta(days=10))
    with FeedServer() as server:
        server.add("/a.xml", rss([old, recent]), content_type="application/rss+xml")
        config = write_config(tmp_path, [server.url("/a.xml")], "dedup: {lookback: 14d}\n")
        out = tmp_path / "out"
        assert run(config, out)["articles_written"] == 2
        again = run(config, out)
    assert (again["articles_written"], again["already_written"]) == (0, 2)
    assert exactly_once(out) == (2, 2)


def row_multiset(output: Path) -> Counter:
    rows = ds.dataset(str(output / "articles"), partitioning="hive").to_table().to_pylist()
    return Counter(tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(r.items())) for r in rows)


def test_compaction_preserves_every_row(tmp_path):
    with FeedServer() as server:
        config = write_config(tmp_path, [server.url("/a.xml")])
        out = tmp_path / "out"
        for batch in range(3):  # three runs, each adding files to the same hourly partitions
            batch_entries = [entry(i, NOW - dt.timedelta(days=2, minutes=i)) for i in range(batch * 5, batch * 5 + 5)]
            server.add("/a.xml", rss(batch_entries), content_type="application/rss+xml")
            run(config, out)
    before = article_files(out)
    rows_before = row_multiset(out)
    assert main(["compact", str(out), "--older-than", "1d"]) == 0
    after = article_files(out)
    assert len(after) < len(before)
    assert all(len(list(d.glob("*.parquet"))) == 1 for d in {f.parent for f in after})
    rows_after = row_multiset(out)
    assert rows_after == rows_before
    published = pq.read_table(after[0]).column("published_at").to_pylist()
    assert published == sorted(published)
    assert not (out / "_staging").exists() or not any((out / "_staging").iterdir())


def test_interrupted_compaction_is_finished_by_its_journal(tmp_path):
    partition = tmp_path / "articles" / "date=2026-11-20" / "hour=07"
    partition.mkdir(parents=True)
    (partition / "old-1.parquet").write_bytes(b"x")
    (partition / "new.parquet").write_bytes(b"y")
    job = tmp_path / "_staging" / "compact-1"
    job.mkdir(parents=True)
    journal = {
        "partition": str(partition),
        "inputs": [str(partition / "old-1.parquet")],
        "output": str(partition / "new.parquet"),
    }
    (job / "journal.json").write_text(json.dumps(journal))
    recover_compactions(str(tmp_path))
    assert sorted(p.name for p in partition.iterdir()) == ["new.parquet"] and not job.exists()


def test_sigkill_at_any_point_then_rerun_is_exactly_once(tmp_path):
    entries = [entry(i) for i in range(40)]
    with FeedServer() as server:
        for name in ("a", "b", "c"):
            server.add(
                f"/{name}.xml",
                rss(entries[{"a": 0, "b": 15, "c": 30}[name] :][:15]),
                content_type="application/rss+xml",
            )
        config = write_config(tmp_path, [server.url(f"/{n}.xml") for n in "abc"])
        command = [sys.executable, "-m", "pipeline", "run", "--config", str(config), "--all"]

        reference = tmp_path / "reference"
        started = time.monotonic()
        subprocess.run([*command, "--output", str(reference)], check=True, capture_output=True, cwd=REPO)
        duration = time.monotonic() - started
        assert exactly_once(reference) == (40, 40)

        for fraction in (0.3, 0.55, 0.7, 0.8, 0.9, 0.97):
            out = tmp_path / f"killed-{fraction}"
            process = subprocess.Popen(
                [*command, "--output", str(out)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(duration * fraction)
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            if (out / "articles").exists():  # readers see only whole files, each article at most once
                rows, distinct = exactly_once(out)
                assert rows == distinct
                ds.dataset(str(out / "articles"), partitioning="hive").to_table()
            subprocess.run([*command, "--output", str(out)], check=True, capture_output=True, cwd=REPO)
            assert exactly_once(out) == (40, 40), fraction
            assert not list((out / "_staging").glob("*")), fraction


STORY = (
    "Rescue teams in the northern port of Vianna evacuated 1,240 residents on Tuesday after Storm Halvard pushed "
    "waves over the sea wall, the regional civil protection agency said. Mayor Ines Carvalho said 14 streets near "
    "the harbour were flooded and the fish market would stay closed until Friday. Forecasters expect winds of 130 "
    "km/h overnight, and the agency asked drivers to avoid the coastal road between Vianna and Esposende. Schools "
    "in three districts will remain shut, and the national rail operator cancelled 22 regional trains. Engineers "
    "will inspect the breakwater once the sea calms, the agency said, adding that no injuries had been reported."
)


def test_a_syndicated_copy_arriving_later_is_matched_to_the_earlier_original(tmp_path):
    copy = (
        STORY.replace("Rescue teams", "Emergency crews")
        .replace("on Tuesday", "on Tuesday morning")
        .replace("the agency said, adding that no injuries had been reported.", "officials said.")
    )
    first = {
        "id": 1,
        "title": "Storm Halvard floods Vianna harbour",
        "text": STORY,
        "published": NOW - dt.timedelta(hours=3),
    }
    later = {
        "id": 2,
        "title": "Thousands evacuated as Storm Halvard hits Vianna",
        "text": copy,
        "published": NOW - dt.timedelta(hours=1),
    }
    with FeedServer() as server:
        server.add("/wire.xml", rss([first]), content_type="application/rss+xml")
        server.add("/paper.xml", rss([]), content_type="application/rss+xml")
        config = write_config(tmp_path, [server.url("/wire.xml"), server.url("/paper.xml")])
        out = tmp_path / "out"
        assert run(config, out)["articles_written"] == 1
        server.add("/paper.xml", rss([later]), content_type="application/rss+xml")
        second = run(config, out)
    assert second["articles_written"] == 0
    assert second["near_duplicates_dropped"] == 1 and second["near_duplicates_of_earlier_runs"] == 1
