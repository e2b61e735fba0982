"""PollFeeds: the root of the streaming graph. Every feed is fetched again each poll interval.

One PeriodicImpulse runs per distinct poll interval. The interval is `poll_interval_seconds`, unless `poll_overrides`
sets it for a feed, named by its name or URL. Each tick emits that interval's FeedSources, timestamped with the
tick; `at_fetch_time` later gives each article the same timestamp, the moment it was fetched.

    polls = p | "Poll" >> PollFeeds(config.feeds, StreamSettings())
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import window as beam_window
from apache_beam.transforms.periodicsequence import PeriodicImpulse, RebaseMode
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from transforms.article import Article
from transforms.feed import FeedSource

STAGE = "stream"


@dataclasses.dataclass(frozen=True)
class PollOverride:
    """A feed (by its name or URL in the config) polled at its own interval."""

    feed: str
    interval_seconds: float = dataclasses.field(default=300.0, metadata={"unit": "seconds"})

    def __post_init__(self) -> None:
        if self.interval_seconds <= 0:
            raise ValueError("interval_seconds must be positive")


@dataclasses.dataclass(frozen=True)
class StreamSettings:
    """Tunables of the streaming graph (the `streaming:` section of the config).

    `poll_interval_seconds`: how often each feed is fetched, unless `poll_overrides` names it.
    `dead_letter_window_seconds`: dead letters are written once per window of this size (by rejection time).
    `stop_after_seconds`: 0 polls forever; more stops polling after that long (a trial run that ends by itself).
    `near_duplicates`: also drop (or mark) near copies with DropNearCopiesWithState, when `neardup.enabled` too.
    """

    poll_interval_seconds: float = dataclasses.field(default=300.0, metadata={"unit": "seconds"})
    poll_overrides: tuple[PollOverride, ...] = ()
    dead_letter_window_seconds: int = dataclasses.field(default=300, metadata={"unit": "seconds"})
    stop_after_seconds: float = dataclasses.field(default=0.0, metadata={"unit": "seconds"})
    # Off by default while it is new: it keeps `neardup.bands` records per article for the whole dedup lookback.
    near_duplicates: bool = False

    def __post_init__(self) -> None:
        if self.poll_interval_seconds <= 0:
            raise ValueError("poll_interval_seconds must be positive")
        if self.dead_letter_window_seconds <= 0:
            raise ValueError("dead_letter_window_seconds must be positive")
        if self.stop_after_seconds < 0:
            raise ValueError("stop_after_seconds must not be negative")


def poll_schedule(feeds: Sequence[FeedSource], settings: StreamSettings) -> list[tuple[float, tuple[FeedSource, ...]]]:
    """The feeds grouped by poll interval, shortest interval first. Raises ValueError for an override that names no
    configured feed (a typo would otherwise leave the feed at the default interval without a word)."""
    overrides = {o.feed: o.interval_seconds for o in settings.poll_overrides}
    known = {f.name for f in feeds} | {f.url for f in feeds}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"poll_overrides: no configured feed is named {', '.join(map(repr, unknown))}")
    groups: dict[float, list[FeedSource]] = {}
    for feed in feeds:
        interval = overrides.get(feed.name, overrides.get(feed.url, settings.poll_interval_seconds))
        groups.setdefault(float(interval), []).append(feed)
    return [(interval, tuple(groups[interval])) for interval in sorted(groups)]


def _feeds_at_tick(_tick: Timestamp, feeds: tuple[FeedSource, ...]) -> Iterable[FeedSource]:
    Metrics.counter(STAGE, "polls").inc()
    yield from feeds


class PollFeeds(beam.PTransform):
    """Root transform: each configured feed as a FeedSource, every poll interval, timestamped with the poll."""

    def __init__(self, feeds: Sequence[FeedSource], settings: StreamSettings = StreamSettings()):
        super().__init__()
        self._schedule = poll_schedule(feeds, settings)
        self._stop_after = settings.stop_after_seconds

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        branches = []
        for interval, feeds in self._schedule:
            label = f"Every{interval:g}s"
            # Rebased: the first poll happens when the job starts, not when this graph was built (on Dataflow that
            # can be minutes apart, and PeriodicImpulse would fire every missed tick at once). And the start is
            # always given: PeriodicImpulse's default is the time its module was imported.
            if self._stop_after:
                stop, rebase = Timestamp.now() + self._stop_after, RebaseMode.REBASE_ALL
            else:
                stop, rebase = MAX_TIMESTAMP, RebaseMode.REBASE_START
            ticks = pbegin | f"{label}/PeriodicImpulse" >> PeriodicImpulse(
                start_timestamp=Timestamp.now(), stop_timestamp=stop, fire_interval=interval, rebase=rebase
            )
            branches.append(ticks | f"{label}/Feeds" >> beam.FlatMap(_feeds_at_tick, feeds))
        if len(branches) == 1:
            return branches[0]
        return tuple(branches) | "AllPolls" >> beam.Flatten()


def at_fetch_time(article: Article) -> beam_window.TimestampedValue:
    """The article timestamped with its fetch time: the poll's moment, whatever the stages before did to the
    element's timestamp (RunInference's batching moves it to the end of the global window)."""
    return beam_window.TimestampedValue(article, Timestamp.from_utc_datetime(article.fetched_at))
