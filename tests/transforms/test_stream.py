"""The streaming-only stages: the poll schedule, DeduplicateWithState, DropNearCopiesWithState, RouteTooLate,
WindowByEventTime and WindowDeadLetters. Pure functions first, then the composites on a TestStream in
streaming mode (the watermark driven by hand), then the counters in batch (Beam 2.77's streaming DirectRunner keeps
only the first bundle's)."""

import dataclasses
import datetime as dt

import apache_beam as beam
import apache_beam.testing.test_stream as test_stream
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to, equal_to_per_window
from apache_beam.transforms.window import GlobalWindow, IntervalWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import PaneInfoTiming

from tests.conftest import art as base_art
from tests.conftest import counter
from tests.transforms import neardup_texts as texts
from transforms.article import Article
from transforms.clock import UTC
from transforms.dead_letter import DeadLetter
from transforms.dedup import DeduplicateWithState, DedupSettings
from transforms.expiry import forget_at
from transforms.feed import FeedSource
from transforms.neardup import NearDedupSettings
from transforms.neardup.streaming import DropNearCopiesWithState
from transforms.poll import PollOverride, StreamSettings, at_fetch_time, poll_schedule
from transforms.window import (
    RouteTooLate,
    WindowByEventTime,
    WindowDeadLetters,
    WindowSettings,
    is_too_late,
    lateness_deadline,
    window_bounds,
)

T0 = dt.datetime(2026, 11, 20, 12, tzinfo=UTC)
HOURLY = WindowSettings(size_seconds=3600, allowed_lateness_seconds=86400)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def ts(minutes: float) -> Timestamp:
    return Timestamp.from_utc_datetime(at(minutes))


def art(key: str, published: float, fetched: float, text: str = "") -> Article:
    """Article `key`, published and fetched so many minutes after T0; given a `text`, its title is the same too."""
    return base_art(
        f"id-{key}",
        feed_url="https://news.example/feed",
        url=f"https://news.example/{key}",
        title="Wire story" if text else f"Story {key}",
        text=text or f"The text of story {key}.",
        published_at=at(published),
        fetched_at=at(fetched),
    )


def streaming() -> TestPipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return TestPipeline(options=options)


def hour(start_minutes: float) -> IntervalWindow:
    return IntervalWindow(ts(start_minutes), ts(start_minutes + 60))


# Pure functions.


def test_poll_schedule_groups_feeds_by_interval_with_overrides_by_name_or_url():
    a, b, c = (FeedSource(name=n, url=f"https://news.example/{n}.xml") for n in "abc")
    settings = StreamSettings(
        poll_interval_seconds=300, poll_overrides=(PollOverride("b", 60), PollOverride(c.url, 3600))
    )
    assert poll_schedule([a, b, c], settings) == [(60.0, (b,)), (300.0, (a,)), (3600.0, (c,))]
    assert poll_schedule([a, b], StreamSettings()) == [(300.0, (a, b))]
    with pytest.raises(ValueError, match="'d'"):
        poll_schedule([a], StreamSettings(poll_overrides=(PollOverride("d", 60),)))
    with pytest.raises(ValueError):
        PollOverride("a", 0)


def test_window_bounds_and_the_lateness_deadline():
    assert window_bounds(at(59.99), 3600) == (T0, at(60))
    assert window_bounds(at(60), 3600) == (at(60), at(120))
    assert lateness_deadline(at(30), HOURLY) == at(60) + dt.timedelta(days=1)


def test_too_late_once_fetched_at_or_after_window_end_plus_lateness():
    deadline = at(60) + dt.timedelta(days=1)
    article = art("x", 30, 0)
    tick = dt.timedelta(microseconds=1)
    assert not is_too_late(dataclasses.replace(article, fetched_at=deadline - tick), HOURLY)
    assert is_too_late(dataclasses.replace(article, fetched_at=deadline), HOURLY)
    assert not is_too_late(art("y", 30, 90), HOURLY)  # late for its window, but by far less than a day


def test_forget_at_counts_from_the_later_of_publication_and_fetch():
    assert forget_at(art("x", 0, 10), 3600) == ts(70)
    assert forget_at(art("x", 30, 10), 3600) == ts(90)  # dated ahead of the fetch
    undated = base_art("u")
    assert forget_at(undated, 3600) == GlobalWindow().max_timestamp()
    assert forget_at(art("x", 0, 0), 1e13) == GlobalWindow().max_timestamp()


# Composites on a TestStream.


def _pane(keyed, pane=beam.DoFn.PaneInfoParam):
    yield PaneInfoTiming.to_string(pane.timing), sorted(keyed[1])


def test_out_of_order_articles_land_in_their_windows_late_ones_in_a_late_pane_too_late_ones_in_dead_letters():
    polls = (
        test_stream.TestStream()
        .advance_watermark_to(ts(0))
        # One poll at 13:10, entries out of order: 12:50, 12:10, 13:05, 12:40.
        .add_elements([art("c", 50, 70), art("a", 10, 70), art("d", 65, 70), art("b", 40, 70)], event_timestamp=ts(70))
        .advance_watermark_to(ts(60))  # the 12:00 window fires: a, b, c
        # The next poll, at 13:20: one more entry for 12:00 (late, well within a day) and one from two days ago.
        .add_elements([art("e", 20, 80), art("z", -2 * 1440, 80)], event_timestamp=ts(80))
        .advance_watermark_to_infinity()
    )
    with streaming() as p:
        routed = p | polls | "PollTime" >> beam.Map(at_fetch_time) | RouteTooLate(HOURLY)
        windowed = routed.articles | WindowByEventTime(HOURLY)
        assert_that(
            windowed | "Ids" >> beam.Map(lambda a: a.article_id),
            equal_to_per_window(
                {
                    hour(0): ["id-a", "id-b", "id-c", "id-e"],
                    hour(60): ["id-d"],
                }
            ),
            label="Windows",
        )
        panes = windowed | "Key" >> beam.Map(lambda a: ("all", a.article_id)) | beam.GroupByKey() | beam.ParDo(_pane)
        assert_that(
            panes,
            equal_to_per_window(
                {
                    hour(0): [
                        ("ON_TIME", ["id-a", "id-b", "id-c"]),
                        ("LATE", ["id-e"]),
                    ],  # discarding: the late pane is new
                    hour(60): [("ON_TIME", ["id-d"])],
                }
            ),
            label="Panes",
        )
        bounds = windowed | "Bounds" >> beam.Map(lambda a: (a.article_id, a.window_start, a.window_end))
        assert_that(
            bounds,
            equal_to(
                [
                    ("id-a", at(0), at(60)),
                    ("id-b", at(0), at(60)),
                    ("id-c", at(0), at(60)),
                    ("id-e", at(0), at(60)),
                    ("id-d", at(60), at(120)),
                ]
            ),
            label="Bounds",
        )
        letters = routed.dead_letters | "Letters" >> beam.Map(lambda d: (d.stage, d.reason, d.entry_key, d.run_id))
        assert_that(letters, equal_to([("window", "too_late", "https://news.example/z", "")]), label="TooLate")


def test_an_entry_in_every_poll_is_kept_once_and_counts_as_new_after_the_lookback():
    # Lookback one hour. x is in every poll until 13:05; y is polled twice, and y2 is y's text under another URL.
    y_text = "The same wire story, syndicated."
    polls = (
        test_stream.TestStream()
        .advance_watermark_to(ts(0))
        .add_elements([art("x", -10, 0), art("y", -5, 0, y_text)], event_timestamp=ts(0))
        .add_elements([art("x", -10, 10), art("y", -5, 10, y_text), art("y2", -5, 10, y_text)], event_timestamp=ts(10))
        # Past an hour after x was first seen, but not after it was last seen: x is still known.
        .advance_watermark_to(ts(65))
        .add_elements([art("x", -10, 65)], event_timestamp=ts(65))
        # Past an hour after the last copy of each: both are forgotten, and come back as new.
        .advance_watermark_to(ts(130))
        .add_elements([art("x", -10, 131), art("y", -5, 131, y_text)], event_timestamp=ts(131))
        .advance_watermark_to_infinity()
    )
    with streaming() as p:
        unique = p | polls | beam.Map(at_fetch_time) | DeduplicateWithState(DedupSettings(forget_after_seconds=3600))
        kept = unique | beam.Map(lambda a: (a.article_id, a.fetched_at))
        assert_that(kept, equal_to([("id-x", at(0)), ("id-y", at(0)), ("id-x", at(131)), ("id-y", at(131))]))


def test_dead_letters_are_windowed_by_rejection_time():
    def letter(key, minute):
        return DeadLetter(stage="fetch", reason="timeout", feed_url=key, time=at(minute))

    letters = (
        test_stream.TestStream()
        .advance_watermark_to(ts(0))
        .add_elements([letter("a", 1), letter("b", 7), letter("c", 2)], event_timestamp=ts(8))
        .advance_watermark_to_infinity()
    )
    with streaming() as p:
        windowed = p | letters | WindowDeadLetters(300, HOURLY)
        assert_that(
            windowed | beam.Map(lambda d: d.feed_url),
            equal_to_per_window(
                {
                    IntervalWindow(ts(0), ts(5)): ["a", "c"],
                    IntervalWindow(ts(5), ts(10)): ["b"],
                }
            ),
        )


# Near copies on a TestStream.

PORT_STORY = (
    "The harbour authority of Port Alden said on Monday that 14 container ships were stuck outside the port after "
    "a crane failure at the north terminal. Director Maria Okafor told reporters that repairs would take at least "
    "3 days and that the authority had asked the Dunmore terminal to take 6 of the ships. Shipping agents said "
    "the delay could cost importers about 2 million dollars a day, and the union of dock workers called for an "
    "inquiry into the maintenance of the cranes, which were installed in 1998. The port handles about 40 percent "
    "of the country's imports of grain and fuel."
)
# The same event three days on: the same names and much of the wording, other figures. Another story.
PORT_STRIKE = (
    "The harbour authority of Port Alden said on Thursday that 22 container ships were waiting outside the port after "
    "a strike at the south terminal. Director Maria Okafor told reporters that talks would take at least "
    "5 days and that the authority had asked the Keelby terminal to take 9 of the ships. Shipping agents said "
    "the strike could cost exporters about 4 million dollars a day, and the union of dock workers called for a "
    "pay rise of 8 percent, the first since 2019. The port handles about 40 percent "
    "of the country's exports of timber and steel."
)


def syndicated(text: str) -> str:
    """The wire text as an outlet runs it: about one word in ten edited."""
    for old, new in [
        ("said on Monday", "announced on Monday"),
        ("told reporters", "said"),
        ("asked the Dunmore", "requested the Dunmore"),
        ("could cost", "might cost"),
        ("called for an", "demanded an"),
    ]:
        assert old in text
        text = text.replace(old, new)
    return text


def story(key: str, fetched: float, text: str, title: str, language: str = "en") -> Article:
    """Article `key` from outlet `key`.test, published five minutes before its fetch."""
    host = f"{key}.test"
    return base_art(
        f"id-{key}",
        feed_url=f"https://{host}/rss",
        source=host,
        url=f"https://{host}/{key}",
        title=title,
        text=text,
        language=language,
        published_at=at(fetched - 5),
        fetched_at=at(fetched),
    )


def wire(fetched: float) -> Article:
    return story("wire", fetched, PORT_STORY, "Crane failure strands 14 ships at Port Alden")


def copy_of_wire(
    key: str, fetched: float, language: str = "en", title: str = "Ships wait outside Port Alden after crane breaks"
) -> Article:
    return story(key, fetched, syndicated(PORT_STORY), title, language)


class Collected:
    """What a streaming pipeline's last step saw, by test. DropNearCopiesWithState emits from event-time timers, and
    the Python DirectRunner holds no watermark for them: what they emit as the TestStream ends reaches assert_that's
    GroupByKey after its window has closed, and is dropped. So the tests collect as Beam's userstate_test does."""

    rows: dict[str, list] = {}


def _collect(element, test: str) -> None:
    Collected.rows.setdefault(test, []).append(element)


def run_collecting(build, test: str) -> list:
    """Run the streaming pipeline `build(p)` gives the output of; the elements that output saw."""
    Collected.rows[test] = []
    with streaming() as p:
        build(p) | "Collect" >> beam.Map(_collect, test)
    return sorted(Collected.rows.pop(test))


def test_a_syndicated_copy_in_a_later_poll_is_dropped_another_story_and_another_language_are_kept():
    polls = (
        test_stream.TestStream()
        .advance_watermark_to(ts(0))
        .add_elements([wire(0)], event_timestamp=ts(0))
        .advance_watermark_to(ts(5))
        .add_elements(
            [
                wire(10),  # the same entry again: the exact dedup drops it first
                copy_of_wire("daily", 10),
                story("post", 10, PORT_STRIKE, "Strike leaves 22 ships waiting at Port Alden"),
                # Labelled German (and titled so: the exact dedup would drop the same title and text).
                copy_of_wire("zeitung", 10, language="de", title="Kranausfall in Port Alden"),
            ],
            event_timestamp=ts(10),
        )
        .advance_watermark_to_infinity()
    )
    kept = run_collecting(
        lambda p: (
            p
            | polls
            | beam.Map(at_fetch_time)
            | DeduplicateWithState(DedupSettings(forget_after_seconds=3600))
            | DropNearCopiesWithState(NearDedupSettings(), lookback_seconds=3600)
            | beam.Map(lambda a: (a.article_id, a.fetched_at, a.duplicate_of))
        ),
        "syndicated",
    )
    assert kept == [("id-post", at(10), ""), ("id-wire", at(0), ""), ("id-zeitung", at(10), "")]


def test_mark_mode_same_poll_copies_keep_the_smaller_id_and_buckets_forget_after_the_lookback():
    # Copies fetched together are judged in id order in every band, so exactly one of them is kept.
    polls = (
        test_stream.TestStream()
        .advance_watermark_to(ts(0))
        .add_elements([wire(0), copy_of_wire("daily", 0)], event_timestamp=ts(0))
        .advance_watermark_to(ts(15))
        .add_elements([copy_of_wire("gazette", 20)], event_timestamp=ts(20))
        # More than the hour's lookback after the last of them: the buckets are empty again.
        .advance_watermark_to(ts(90))
        .add_elements([copy_of_wire("herald", 95)], event_timestamp=ts(95))
        .advance_watermark_to_infinity()
    )
    marked = run_collecting(
        lambda p: (
            p
            | polls
            | beam.Map(at_fetch_time)
            | DropNearCopiesWithState(NearDedupSettings(mode="mark"), lookback_seconds=3600)
            | beam.Map(lambda a: (a.article_id, a.duplicate_of))
        ),
        "mark",
    )
    assert marked == [("id-daily", ""), ("id-gazette", "id-daily"), ("id-herald", ""), ("id-wire", "id-daily")]


def test_heavily_edited_and_cut_copies_are_dropped_same_event_template_and_shared_quote_stories_kept():
    def paper(key: str, fetched: float, paragraphs_or_text, title: str) -> Article:
        body = paragraphs_or_text if isinstance(paragraphs_or_text, str) else texts.text(paragraphs_or_text)
        return story(key, fetched, body, title)

    first = [
        paper("flood", 0, texts.WIRE, texts.WIRE_TITLE),
        paper("market", 0, texts.MARKET, texts.MARKET_TITLE),
        paper("quote-a", 0, texts.QUOTE_STORY_A, texts.QUOTE_STORY_A_TITLE),
    ]
    edited_title, edited = texts.heavy_edit()
    cut_title, cut = texts.heavy_cut()
    later = [
        paper("edited", 10, edited, edited_title),
        paper("regional", 10, cut, cut_title),
        paper("event", 10, texts.SAME_EVENT, texts.SAME_EVENT_TITLE),
        paper("market-next", 10, texts.MARKET_NEXT_DAY, texts.MARKET_TITLE),
        paper("quote-b", 10, texts.QUOTE_STORY_B, texts.QUOTE_STORY_B_TITLE),
    ]
    polls = (
        test_stream.TestStream()
        .advance_watermark_to(ts(0))
        .add_elements(first, event_timestamp=ts(0))
        .advance_watermark_to(ts(5))
        .add_elements(later, event_timestamp=ts(10))
        .advance_watermark_to_infinity()
    )
    kept = run_collecting(
        lambda p: (
            p
            | polls
            | beam.Map(at_fetch_time)
            | DropNearCopiesWithState(NearDedupSettings(), lookback_seconds=3600)
            | beam.Map(lambda a: a.article_id)
        ),
        "heavy",
    )
    assert kept == sorted(f"id-{k}" for k in ("flood", "market", "quote-a", "event", "market-next", "quote-b"))


def test_a_copy_cut_to_its_lead_is_found_through_its_lead_keys_as_in_batch():
    # 16 bands of 8 rows: the cut copy (Jaccard near 0.1) shares no band; only its lead keys bring it to the wire.
    (wire_title, wire), (cut_title, cut) = texts.long_wire(), texts.cut_to_lead()
    polls = (
        test_stream.TestStream()
        .advance_watermark_to(ts(0))
        .add_elements([story("wire", 0, wire, wire_title)], event_timestamp=ts(0))
        .advance_watermark_to(ts(5))
        .add_elements([story("regional", 10, cut, cut_title)], event_timestamp=ts(10))
        .advance_watermark_to_infinity()
    )
    kept = run_collecting(
        lambda p: (
            p
            | polls
            | beam.Map(at_fetch_time)
            | DropNearCopiesWithState(NearDedupSettings(bands=16), lookback_seconds=3600)
            | beam.Map(lambda a: a.article_id)
        ),
        "lead-keys",
    )
    assert kept == ["id-wire"]


# Counters, in batch.


def test_near_copies_are_counted_as_duplicates():
    articles = [
        wire(0),
        copy_of_wire("daily", 10),
        story("post", 10, PORT_STRIKE, "Strike at Port Alden"),
        art("nowords", 0, 10, text="..."),
    ]
    articles[-1] = dataclasses.replace(articles[-1], title="")
    p = TestPipeline()
    kept = p | beam.Create(articles) | beam.Map(at_fetch_time) | DropNearCopiesWithState(NearDedupSettings())
    assert_that(kept | beam.Map(lambda a: a.article_id), equal_to(["id-wire", "id-post", "id-nowords"]))
    result = p.run()
    result.wait_until_finish()
    assert counter(result, "neardup/signed") == 3
    assert counter(result, "neardup/unsigned") == 1
    assert counter(result, "neardup/copies_dropped") == 1
    assert counter(result, "dedup/duplicates") == 1
    assert counter(result, "neardup/kept") == 2


def test_every_outcome_is_counted():
    articles = [
        art("x", 0, 10),
        art("x", 0, 20),
        art("x", 0, 30),  # two duplicates by id
        art("y", 0, 10, "Shared text."),
        art("y2", 0, 10, "Shared text."),  # one by content
        art("old", -3 * 1440, 10),
    ]  # too late
    p = TestPipeline()
    unique = p | beam.Create(articles) | beam.Map(at_fetch_time) | DeduplicateWithState(DedupSettings())
    routed = unique | RouteTooLate(HOURLY)
    assert_that(routed.articles | beam.Map(lambda a: a.article_id), equal_to(["id-x", "id-y"]))
    result = p.run()
    result.wait_until_finish()
    assert counter(result, "dedup/duplicates") == 3
    assert counter(result, "dedup/duplicates_by_id") == 2
    assert counter(result, "dedup/duplicates_by_content") == 1
    assert counter(result, "window/in_time") == 2
    assert counter(result, "window/too_late") == 1
    # articles in = kept + duplicates + too late
    assert len(articles) == counter(result, "window/in_time") + counter(result, "dedup/duplicates") + counter(
        result, "window/too_late"
    )
