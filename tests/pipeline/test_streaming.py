"""The streaming graph end to end on the DirectRunner in streaming mode, with a TestStream of polls in place of
PeriodicImpulse so the test moves the watermark itself (the real PeriodicImpulse runs on the DirectRunner too: see
test_streaming_local.py): real feed files fetched at every poll, real Parquet read back. And the graph itself:
`--streaming` builds the polling source and the stateful dedup, batch has neither."""

import dataclasses
import datetime as dt
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import apache_beam as beam
import apache_beam.testing.test_stream as test_stream
import pyarrow.dataset as ds
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to, equal_to_per_window
from apache_beam.transforms.window import IntervalWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import PaneInfoTiming

from pipeline.build import build
from pipeline.config import Config
from pipeline.streaming import build_streaming
from transforms.article import stable_id
from transforms.clock import NOW_ENV, UTC
from transforms.feed import FeedSource
from transforms.poll import PollOverride, StreamSettings

# FetchFeeds stamps each article with the time it fetched it, and that is what the too-late rule compares with:
# the clock is fixed at NOW (NEWSBEAM_NOW, which transforms.clock.utcnow reads) and the story told around hour H.
NOW = dt.datetime(2026, 11, 20, 12, 20, 30, tzinfo=UTC)
H = NOW.replace(minute=0, second=0, microsecond=0)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    monkeypatch.setenv(NOW_ENV, NOW.isoformat())


TEXT = "The council met on Tuesday to discuss the new bridge, the budget for schools and the winter road plan."


def item(key: str, published: dt.datetime) -> str:
    return (
        f"<item><title>Story {key} about the council</title><link>https://news.example/{key}</link>"
        f"<pubDate>{format_datetime(published, usegmt=True)}</pubDate>"
        f"<description>{escape(TEXT)} Reference {key}.</description></item>"
    )


def write_feed(path: Path, items: list[str]) -> Path:
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Wire</title>'
        "<link>https://news.example/</link><description>d</description>" + "".join(items) + "</channel></rss>",
        encoding="utf-8",
    )
    return path


def article_id(key: str) -> str:
    return stable_id("url", f"https://news.example/{key}")


def streaming_options() -> PipelineOptions:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return options


def seconds(when: dt.datetime) -> float:
    return when.timestamp()


def pane_timing(path: str, pane=beam.DoFn.PaneInfoParam):
    yield PaneInfoTiming.to_string(pane.timing)


# Entries by the window of their event time: W2 = [H-2h, H-1h) and W1 = [H-1h, H). "late" arrives in a poll after
# the watermark has passed W2's end (but well within a day of it), "stale" was published three days ago.
PUBLISHED = {
    "b": H - dt.timedelta(minutes=10),  # W1
    "a": H - dt.timedelta(minutes=110),  # W2
    "c": H - dt.timedelta(minutes=80),  # W2
    "late": H - dt.timedelta(minutes=100),  # W2
    "stale": H - dt.timedelta(days=3),
}
W1 = IntervalWindow(seconds(H - dt.timedelta(hours=1)), seconds(H))
W2 = IntervalWindow(seconds(H - dt.timedelta(hours=2)), seconds(H - dt.timedelta(hours=1)))


def test_polls_become_windows_late_panes_too_late_dead_letters_and_one_copy(tmp_path):
    # Out of order in the feed (b, a, stale, c); every poll repeats them; the last poll adds "late".
    first = [item(k, PUBLISHED[k]) for k in ("b", "a", "stale", "c")]
    feed = write_feed(tmp_path / "wire.xml", first)
    later = write_feed(tmp_path / "wire-later.xml", first + [item("late", PUBLISHED["late"])])
    output = tmp_path / "out"
    config = Config(feeds=(), output=str(output))
    poll_time = Timestamp.from_utc_datetime(NOW)
    polls = (
        test_stream.TestStream()
        .add_elements([FeedSource(name="wire", url=str(feed))] * 3, event_timestamp=poll_time)
        .add_elements([FeedSource(name="wire", url=str(feed))] * 2, event_timestamp=poll_time + 1)
        # The watermark passes both windows' ends: each fires its on-time pane.
        .advance_watermark_to(seconds(H))
        .add_elements([FeedSource(name="wire", url=str(later))], event_timestamp=poll_time + 2)
        .advance_watermark_to_infinity()
    )

    p = TestPipeline(options=streaming_options())
    graph = build_streaming(p, config, "stream-test", source=polls, stream=StreamSettings())
    ids = graph.articles | "Ids" >> beam.Map(lambda a: a.article_id)
    assert_that(
        ids,
        equal_to_per_window(
            {
                W2: [article_id("a"), article_id("c"), article_id("late")],
                W1: [article_id("b")],
            }
        ),
        label="ArticlesPerWindow",
    )
    timings = graph.article_files | "Panes" >> beam.ParDo(pane_timing)
    assert_that(timings, equal_to_per_window({W2: ["ON_TIME", "LATE"], W1: ["ON_TIME"]}), label="FilesPerPane")
    letters = graph.dead_letters | "Letters" >> beam.Map(lambda d: (d.stage, d.reason, d.entry_key))
    assert_that(letters, equal_to([("window", "too_late", "https://news.example/stale")]), label="DeadLetters")
    p.run().wait_until_finish()

    # Two files in W2's partition (the on-time pane, then the late one), one in W1's; each row written once.
    w2_dir = output / "articles" / f"date={H - dt.timedelta(hours=2):%Y-%m-%d}" / f"hour={H - dt.timedelta(hours=2):%H}"
    w2_files = sorted(w2_dir.glob("*.parquet"))
    assert len(w2_files) == 2
    assert sorted(len(ds.dataset(str(f)).to_table()) for f in w2_files) == [1, 2]
    rows = ds.dataset(str(output / "articles"), format="parquet", partitioning="hive").to_table().to_pylist()
    assert sorted(r["article_id"] for r in rows) == sorted(article_id(k) for k in ("a", "b", "c", "late"))
    assert {r["run_id"] for r in rows} == {"stream-test"}
    letters = ds.dataset(str(output / "dead_letter"), format="parquet").to_table().to_pylist()
    assert [(r["reason"], r["entry_key"]) for r in letters] == [("too_late", "https://news.example/stale")]
    assert not (output / "_temp").exists()  # batch clean-up removes what it finds there

    # No counter assertions here: Beam 2.77's streaming DirectRunner keeps only the first bundle's counts per step
    # and thread (its StateSampler caches the first bundle's MetricsContainer). test_stream.py checks the dedup and
    # too-late counters on the same composites in batch.


def _transforms(p: beam.Pipeline) -> list[tuple[str, beam_runner_api_pb2.PTransform]]:
    proto = p.to_runner_api()
    return [(t.unique_name, t) for t in proto.components.transforms.values()]


def _is_stateful(transform: beam_runner_api_pb2.PTransform) -> bool:
    if transform.spec.urn != common_urns.primitives.PAR_DO.urn:
        return False
    payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
    return bool(payload.state_specs) or bool(payload.timer_family_specs)


def test_streaming_graph_has_the_polling_source_and_stateful_dedup_batch_has_neither(tmp_path):
    feeds = (
        FeedSource(name="fast", url="https://news.example/fast.xml"),
        FeedSource(name="slow", url="https://news.example/slow.xml"),
    )
    config = Config(feeds=feeds, output=str(tmp_path / "out"))
    stream = StreamSettings(poll_interval_seconds=300, poll_overrides=(PollOverride("slow", 3600),))

    streaming = beam.Pipeline(options=streaming_options())
    build_streaming(streaming, config, "graph-test", stream=stream)  # built, never run
    names = [name for name, _ in _transforms(streaming)]
    assert any(n.startswith("Poll/Every300s/PeriodicImpulse") for n in names)
    assert any(n.startswith("Poll/Every3600s/PeriodicImpulse") for n in names)
    stateful = sorted(name for name, t in _transforms(streaming) if _is_stateful(t))
    assert "Deduplicate/ById/FirstSeen" in stateful
    assert "Deduplicate/ByContent/FirstSeen" in stateful
    assert not any(n.startswith("NearDuplicates") for n in stateful)  # off unless asked for

    with_near = beam.Pipeline(options=streaming_options())
    build_streaming(with_near, config, "graph-test", stream=dataclasses.replace(stream, near_duplicates=True))
    assert any(n.startswith("NearDuplicates") for n, t in _transforms(with_near) if _is_stateful(t))

    batch = beam.Pipeline()
    build(batch, config, "graph-test", NOW)
    names = [name for name, _ in _transforms(batch)]
    assert not any("PeriodicImpulse" in n for n in names)
    assert not [name for name, t in _transforms(batch) if _is_stateful(t)]


def test_an_override_for_an_unknown_feed_is_an_error(tmp_path):
    config = Config(feeds=(FeedSource(name="wire", url="https://news.example/wire.xml"),), output=str(tmp_path))
    with pytest.raises(ValueError, match="'wirre'"):
        build_streaming(
            beam.Pipeline(options=streaming_options()),
            config,
            "x",
            stream=StreamSettings(poll_overrides=(PollOverride("wirre", 60),)),
        )
