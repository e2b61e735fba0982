"""The per-feed loop (pipeline/plane/feeds.py) on a big feed over loopback: a body over `fetch.spool_bytes` is read
from its spool file, gives what the same feed gives in memory, and its file is gone when the feed is done, fails or
is abandoned; and a whole `newsbeam run` writes the same rows and counts either way."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from pipeline.config import load_config
from pipeline.ingest import feed_settings
from pipeline.plane.feeds import FeedProcessor
from tests.conftest import open_files_under
from tests.feed_server import FeedServer
from transforms.dead_letter import DeadLetter
from transforms.feed import FetchedFeed
from transforms.feed_report import FeedReport
from transforms.fetch import FetchFeedFn
from transforms.parse import FeedParser
from transforms.spool import SpooledBody

NOW = "2026-12-01T00:00:00Z"
WORDS = (
    "government announced measures support economy league final match storm coast villages research team "
    "discovered species court ruled appeal festival opened city centre election results counted overnight"
).split()


def big_feed(entries: int, cut: bool = False) -> bytes:
    """RSS of `entries` distinct items (no two share a text), in several scripts; `cut`: the body stops inside the
    last entry, as when a server closes the connection early."""
    items = []
    for i in range(entries):
        words = " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(30))
        title = f"{WORDS[i % len(WORDS)].title()} {i}" + (" Правительство" if i % 5 == 0 else "")
        items.append(
            f"<item><title>{title}</title><link>https://big.test/{i}</link>"
            f"<pubDate>Fri, 20 Nov 2026 {i % 24:02d}:{i % 60:02d}:00 GMT</pubDate>"
            f"<description>{words} {i} café {i * 31 % 997}.</description></item>"
        )
    body = '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Big</title>'
    body += "".join(items) + "</channel></rss>"
    data = body.encode()
    return data[: data.rindex(b"<description>") + 20] if cut else data


def processor(tmp_path: Path, url: str, spool_bytes: int, chunk_size: int = 1000) -> FeedProcessor:
    config = tmp_path / f"spool-{spool_bytes}.yaml"
    config.write_text(
        f'feeds:\n  - {{name: big, url: "{url}"}}\nfetch: {{max_bytes: 50000000, spool_bytes: {spool_bytes}}}\n'
    )
    loaded = load_config(config)
    settings = dataclasses.replace(feed_settings(loaded, "test"), chunk_size=chunk_size)
    made = FeedProcessor(settings)
    made.setup()
    return made


def normal(item):
    """An output of the loop without the times that are now (a dead letter's, the report's, the fetch's)."""
    if isinstance(item, DeadLetter):
        return dataclasses.replace(item, time=None)
    if isinstance(item, FeedReport):
        return dataclasses.replace(item, fetched_at=None)
    return [dataclasses.replace(a, fetched_at=None) for a in item]


@pytest.fixture
def fetched_feeds(monkeypatch) -> list[FetchedFeed]:
    """Every FetchedFeed the loop gets, kept: so a spool file can only be freed by the loop closing it, not by the
    garbage collector taking the last reference."""
    kept = []
    original = FetchFeedFn.process

    def keeping(self, source):
        for out in original(self, source):
            kept.append(out)
            yield out

    monkeypatch.setattr(FetchFeedFn, "process", keeping)
    return kept


@pytest.fixture(scope="module")
def served():
    with FeedServer() as server:
        server.add("/big.xml", big_feed(3000), content_type="application/rss+xml; charset=utf-8")
        server.add("/cut.xml", big_feed(3000, cut=True), content_type="application/rss+xml; charset=utf-8")
        yield server


@pytest.mark.parametrize("path", ["/big.xml", "/cut.xml"])
def test_a_spooled_feed_gives_what_it_gives_in_memory(served, tmp_path, spool_dir, fetched_feeds, path):
    url = served.url(path)
    made = processor(tmp_path, url, spool_bytes=0)  # 0: never spooled
    (source,) = load_config(tmp_path / "spool-0.yaml").feeds
    in_memory = [normal(i) for i in made.process(source)]
    made = processor(tmp_path, url, spool_bytes=64 * 1024)
    spooled = []
    stream = made.process(source)
    first = next(stream)
    assert len(open_files_under(spool_dir)) == 1  # the body is in its file while the feed is read
    for item in [first, *stream]:
        spooled.append(item)
    assert open_files_under(spool_dir) == []
    assert [type(f.body) for f in fetched_feeds] == [bytes, SpooledBody] and fetched_feeds[1].body.closed
    assert [normal(i) for i in spooled] == in_memory
    chunks = [i for i in in_memory if isinstance(i, list)]
    letters = [i.reason for i in in_memory if isinstance(i, DeadLetter)]
    assert [len(c) for c in chunks][:2] == [1000, 1000]
    if path == "/cut.xml":
        assert letters == ["malformed_feed"] and sum(map(len, chunks)) >= 2990
    else:
        assert letters == [] and sum(map(len, chunks)) == 3000


def test_the_spool_file_goes_when_the_reader_stops_early_or_the_feed_fails(
    served, tmp_path, spool_dir, fetched_feeds, monkeypatch
):
    made = processor(tmp_path, served.url("/big.xml"), spool_bytes=64 * 1024)
    (source,) = load_config(tmp_path / "spool-65536.yaml").feeds
    stream = made.process(source)
    next(stream)
    assert len(open_files_under(spool_dir)) == 1
    stream.close()  # what happens when the step that consumes the chunks raises
    assert open_files_under(spool_dir) == [] and fetched_feeds[-1].body.closed

    def failing(self, fetched):
        yield from original(self, fetched)
        raise OSError("disk gone")

    original = FeedParser.parse
    monkeypatch.setattr(FeedParser, "parse", failing)
    with pytest.raises(OSError, match="disk gone"):
        for _ in made.process(source):
            pass
    assert open_files_under(spool_dir) == [] and fetched_feeds[-1].body.closed
    assert len(fetched_feeds) == 2


def _run(tmp_path: Path, url: str, spool_bytes: int) -> tuple[list, dict, list]:
    config = tmp_path / f"run-{spool_bytes}.yaml"
    config.write_text(
        f'feeds:\n  - {{name: big, url: "{url}"}}\nfetch: {{max_bytes: 50000000, spool_bytes: {spool_bytes}}}\n'
    )
    out = tmp_path / f"out-{spool_bytes}"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--config", str(config), "--output", str(out)]
        + ["--now", NOW, "--run_id", "spool", "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = ds.dataset(str(out / "articles"), format="parquet", partitioning="hive").to_table()
    rows = sorted(tuple(sorted((k, str(v)) for k, v in r.items() if k != "fetched_at")) for r in table.to_pylist())
    record = json.loads((out / "_runs" / "spool.json").read_text())
    counts = {k: v for k, v in record.items() if isinstance(v, (int, dict)) and k != "feeds"}
    dead = ds.dataset(str(out / "dead_letter"), format="parquet").to_table()
    letters = sorted((r["stage"], r["reason"], r["entry_key"], r["message"]) for r in dead.to_pylist())
    return rows, counts, letters


def test_a_run_writes_the_same_rows_and_counts_spooled_or_not(served, tmp_path):
    url = served.url("/cut.xml")
    in_memory = _run(tmp_path, url, spool_bytes=0)
    spooled = _run(tmp_path, url, spool_bytes=64 * 1024)
    assert in_memory[0] and spooled == in_memory
    assert in_memory[1]["entries_read"] >= 2990
    assert [letter[:3] for letter in in_memory[2]] == [("parse", "malformed_feed", "")]
