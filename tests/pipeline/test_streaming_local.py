"""`newsbeam run --streaming` on the Python DirectRunner, as docs/streaming.md tells a user to try streaming mode on a laptop:
PeriodicImpulse polls a real loopback feed for real, each window is written, and `streaming.stop_after` ends the run
by itself. (Streaming runs poll on the wall clock, so the entries are dated a few minutes before it.)"""

import datetime as dt
from email.utils import format_datetime
from xml.sax.saxutils import escape

import duckdb

from pipeline.cli import main
from transforms.clock import UTC

TEXT = "The harbour authority opened the new ferry terminal on Monday after two years of building work and delays."


def rss(now: dt.datetime) -> bytes:
    items = "".join(
        f"<item><title>{escape(f'Ferry story {key}')}</title><link>https://harbour.example/{key}</link>"
        f"<pubDate>{format_datetime(now - dt.timedelta(minutes=3 * i))}</pubDate>"
        f"<description>{escape(f'{TEXT} Part {key}.')}</description></item>"
        for i, key in enumerate(("one", "two", "three"))
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Harbour</title>{items}</channel></rss>'.encode()


def test_streaming_run_on_the_direct_runner_polls_writes_once_and_stops(tmp_path, feed_server):
    feed_server.add("/harbour.xml", body=rss(dt.datetime.now(UTC)), content_type="application/rss+xml")
    output = tmp_path / "out"
    config = tmp_path / "streaming.yaml"
    config.write_text(
        f"output: {output}\n"
        f"feeds:\n  - {{name: Harbour, url: '{feed_server.url('/harbour.xml')}', language: en}}\n"
        "streaming: {poll_interval: 1s, stop_after: 3s}\n"
    )

    assert main(["run", "--streaming", "--config", str(config)]) == 0

    assert feed_server.hits("/harbour.xml") >= 2  # it polled, more than once
    rows = duckdb.sql(
        f"select count(*), count(distinct article_id) from read_parquet('{output}/articles/**/*.parquet')"
    ).fetchall()[0]
    assert rows == (3, 3)  # every poll saw the three entries; each was written once
