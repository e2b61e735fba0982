"""The stages only the streaming graph has: poll the feeds forever, drop what was already seen, send articles too late
for their window to the dead letters, and window the dead letters so they can be written while the job runs.

    polls = p | "Poll" >> PollFeeds(config.feeds, StreamSettings())             # FeedSource, once per poll
    ...FetchFeeds, ParseEntries, CleanArticles, ClassifyArticles, as in batch...
    timed = articles | "PollTime" >> beam.Map(at_fetch_time)                    # element timestamp := fetched_at
    unique = timed | "Deduplicate" >> DeduplicateWithState(DedupSettings())
    unique = unique | "NearDuplicates" >> DropNearCopiesWithState(NearDedupSettings(), DedupSettings().lookback_seconds)
    routed = unique | "TooLate" >> RouteTooLate(WindowSettings())        # Routed(articles, dead_letters)
    routed.articles | WindowByEventTime(WindowSettings(), streaming=True) | WriteParquetPartitions(...)

PollFeeds: one PeriodicImpulse per distinct poll interval (`poll_interval_seconds`, overridden per feed by name or
URL in `poll_overrides`); each tick emits that interval's feeds, timestamped with the tick.

DeduplicateWithState: two keyed passes, by `article_id` (canonical URL, else feed + GUID) and then by content hash.
Each pass is a stateful DoFn in the global window that remembers a key until the watermark passes
`max(published_at, fetched_at) + dedup.forget_after` of the last copy seen (an event-time timer clears it): an entry
seen in every poll is written once, and one that comes back after that long away counts as new (the batch key index
follows the same rule). The first copy to arrive is
the one kept (batch keeps the earliest published; a stream cannot wait for the others), and `duplicate_count` stays 0
(the copy is written before its duplicates arrive). It runs before RouteTooLate, so an old entry that stays in its
feed is one dead letter, not one per poll.

DropNearCopiesWithState: near copies by the batch rules (transforms.neardup: MinHash, LSH bands, `is_near_copy`),
with each LSH bucket as keyed state. An article goes to its `bands` buckets; each waits until the watermark passes
the article's fetch time, then judges the bucket's records due in (fetch time, id) order against the ones it holds
(at most `max_bucket_size`, forgotten after the dedup lookback), so every band agrees on which of two copies came
first. The article is a copy when any band found it one; it is decided by id once all bands have answered. The
first copy fetched is kept, as above; `duplicate_of` (mark mode) names the kept article it copies. As batch's star
clusters, a record its bucket holds that is itself a copy counts only when the new one mostly equals it
(`follow_copies`), so no chain runs through a paragraph two stories share.

RouteTooLate: Beam drops an element that reaches a window after the watermark has passed the window's end plus the
allowed lateness, without a trace, and a DoFn cannot read the watermark. So the rule uses what the article carries:
it is too late when `window_end + allowed_lateness <= fetched_at` (see `is_too_late`). The source's watermark
follows its ticks, which are never after the fetch, so an article this rule lets through is one Beam accepts, as long
as it takes less than `late_margin_seconds` from its fetch to the window (the windows stay open that much longer).

    python -m pytest tests/transforms/test_stream.py -q
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.coders import PickleCoder, StrUtf8Coder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger as beam_trigger
from apache_beam.transforms import userstate
from apache_beam.transforms import window as beam_window
from apache_beam.transforms.periodicsequence import PeriodicImpulse, RebaseMode
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Duration, Timestamp

from transforms.article import DEAD_LETTER_TAG, Article, DeadLetter, Routed, reject
from transforms.counters import DUPLICATES, NEAR_COPIES_DROPPED, NEAR_COPIES_MARKED, counter
from transforms.dedup import ByKey, DedupSettings, content_hash
from transforms.fetch import FeedSource
from transforms.neardup.candidates import candidate_keys
from transforms.neardup.records import SignatureRecord, signature_records
from transforms.neardup.settings import NearDedupSettings
from transforms.neardup.verification import is_near_copy
from transforms.window import WindowSettings, lateness_deadline, window_bounds

STAGE = "stream"
TOO_LATE = "too_late"


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


_END_OF_GLOBAL_WINDOW = beam_window.GlobalWindow().max_timestamp()


def forget_at(article: Article, lookback_seconds: float) -> Timestamp:
    """When a key last seen with this article may be forgotten: `max(published_at, fetched_at) + lookback`, in event
    time. Counted from the fetch too, so an old entry still in its feed is not re-admitted at every poll."""
    times = [t for t in (article.published_at, article.fetched_at) if t is not None]
    if not times:
        return _END_OF_GLOBAL_WINDOW
    return min(Timestamp.from_utc_datetime(max(times)) + Duration(seconds=lookback_seconds), _END_OF_GLOBAL_WINDOW)


class _FirstSeenFn(beam.DoFn):
    """Keyed (key, article) -> the article the first time its key is seen; later copies are counted and dropped.

    Each copy pushes the key's expiry (`forget_at`) later, so an entry that stays in its feed stays known; the key
    is forgotten once the watermark passes the lookback after the last copy.
    """

    # The expiry, in microseconds: timers cannot be read back, and a copy must only ever push it later.
    FORGET_AT = userstate.ReadModifyWriteStateSpec("forget_at", VarIntCoder())
    FORGET = userstate.TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, kind: str, lookback_seconds: float):
        self._lookback_seconds = lookback_seconds
        self._duplicates = counter(DUPLICATES)
        self._duplicates_kind = Metrics.counter("dedup", f"duplicates_by_{kind}")
        self._forgotten = Metrics.counter("dedup", f"forgotten_{kind}_keys")

    def process(
        self,
        keyed: tuple[str, Article],
        forget_state=beam.DoFn.StateParam(FORGET_AT),
        forget_timer=beam.DoFn.TimerParam(FORGET),
    ) -> Iterable[Article]:
        article = keyed[1]
        known_until = forget_state.read()
        expiry = forget_at(article, self._lookback_seconds)
        if known_until is None or expiry.micros > known_until:
            forget_state.write(expiry.micros)
            forget_timer.set(expiry)
        if known_until is not None:
            self._duplicates.inc()
            self._duplicates_kind.inc()
            return
        yield article

    @userstate.on_timer(FORGET)
    def on_forget(self, forget_state=beam.DoFn.StateParam(FORGET_AT)) -> Iterable[Article]:
        forget_state.clear()
        self._forgotten.inc()
        return ()


def _drop_seen(kind: str, key_fn: Callable[[Article], str], lookback_seconds: float) -> ByKey:
    """One keyed pass of DeduplicateWithState; articles whose key is empty pass through."""
    return ByKey(key_fn, "FirstSeen", beam.ParDo(_FirstSeenFn(kind, lookback_seconds)))


def _content_key(article: Article) -> str:
    # Two articles with neither title nor text share a hash without sharing anything else.
    return article.content_hash if (article.title or article.text) else ""


class DeduplicateWithState(beam.PTransform):
    """Articles (in the global window) -> each article once: by id, then by content hash (`by_content`), each key
    remembered until the watermark passes `forget_at` (`dedup.forget_after` after the last copy)."""

    def __init__(self, settings: DedupSettings = DedupSettings()):
        super().__init__()
        self._settings = settings

    def expand(self, articles: beam.PCollection) -> beam.PCollection:
        lookback = self._settings.forget_after_seconds
        hashed = articles | "ContentHash" >> beam.Map(
            lambda a: dataclasses.replace(a, content_hash=content_hash(a.title, a.text))
        )
        unique = hashed | "ById" >> _drop_seen("id", lambda a: a.article_id, lookback)
        if self._settings.by_content:
            unique = unique | "ByContent" >> _drop_seen("content", _content_key, lookback)
        return unique


# Near copies in streaming: LSH buckets as keyed state.

_ARTICLE, _VERDICT = 0, 1


class _SignOneFn(beam.DoFn):
    """An article -> (article, its signature record, when its buckets may forget it); an article without words or
    without an id goes to the `unsigned` output unchanged."""

    UNSIGNED = "unsigned"

    def __init__(self, settings: NearDedupSettings, lookback_seconds: float):
        self._settings = settings
        self._lookback_seconds = lookback_seconds
        self._signed = Metrics.counter("neardup", "signed")
        self._unsigned = Metrics.counter("neardup", "unsigned")

    def process(self, article: Article) -> Iterable:
        record = signature_records([article], self._settings)[0] if article.article_id else None
        if record is None:
            self._unsigned.inc()
            yield beam.pvalue.TaggedOutput(self.UNSIGNED, article)
            return
        self._signed.inc()
        yield article, record, forget_at(article, self._lookback_seconds).micros


def _band_elements(signed: tuple, settings: NearDedupSettings) -> Iterable[tuple[int, tuple[int, SignatureRecord]]]:
    _, record, expiry = signed
    for key in candidate_keys(record, settings):  # its bands and its lead keys, `keys_per_record` in all
        yield key, (expiry, record)


class _BucketFn(beam.DoFn):
    """Keyed (band key, (expiry, record)) -> (article_id, (_VERDICT, verdict)) once per record: the id its bucket
    says it copies ("" for none).

    A record waits in PENDING until the watermark passes its timestamp (its fetch time); then the records due are
    judged in (timestamp, id) order against SEEN, the bucket's earlier records, and join it. Judging in that order
    rather than in arrival order makes every band agree on which of two copies came first, even when both arrive
    in one poll: otherwise each could be judged the copy of the other in different bands, and both be dropped.
    SEEN keeps at most `max_bucket_size` records (later ones are judged, not kept) and is cleared once the watermark
    passes the dedup lookback after the last record (as `_FirstSeenFn`).
    """

    PENDING = userstate.BagStateSpec("pending", PickleCoder())  # (timestamp micros, expiry micros, record)
    SEEN = userstate.BagStateSpec("seen", PickleCoder())  # (fetch micros, record, the id it copies or its own)
    SEEN_COUNT = userstate.ReadModifyWriteStateSpec("seen_count", VarIntCoder())
    FLUSH_AT = userstate.ReadModifyWriteStateSpec("flush_at", VarIntCoder())
    FORGET_AT = userstate.ReadModifyWriteStateSpec("forget_at", VarIntCoder())
    FLUSH = userstate.TimerSpec("flush", TimeDomain.WATERMARK)
    FORGET = userstate.TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, settings: NearDedupSettings):
        self._settings = settings
        self._candidates = Metrics.counter("neardup", "candidate_pairs")
        self._verified = Metrics.counter("neardup", "pairs_verified")
        self._capped = Metrics.counter("neardup", "buckets_capped")
        self._forgotten = Metrics.counter("neardup", "forgotten_buckets")

    def process(
        self,
        keyed: tuple[int, tuple[int, SignatureRecord]],
        timestamp=beam.DoFn.TimestampParam,
        pending=beam.DoFn.StateParam(PENDING),
        flush_state=beam.DoFn.StateParam(FLUSH_AT),
        flush_timer=beam.DoFn.TimerParam(FLUSH),
    ) -> Iterable:
        expiry, record = keyed[1]
        pending.add((timestamp.micros, expiry, record))
        flush_at = flush_state.read()
        if flush_at is None or timestamp.micros < flush_at:
            flush_state.write(timestamp.micros)
            flush_timer.set(timestamp)
        return ()

    @userstate.on_timer(FLUSH)
    def on_flush(
        self,
        fire_at=beam.DoFn.TimestampParam,
        pending=beam.DoFn.StateParam(PENDING),
        seen=beam.DoFn.StateParam(SEEN),
        seen_count=beam.DoFn.StateParam(SEEN_COUNT),
        flush_state=beam.DoFn.StateParam(FLUSH_AT),
        forget_state=beam.DoFn.StateParam(FORGET_AT),
        flush_timer=beam.DoFn.TimerParam(FLUSH),
        forget_timer=beam.DoFn.TimerParam(FORGET),
    ) -> Iterable[tuple[str, tuple[int, str]]]:
        yield from self._flush(fire_at, pending, seen, seen_count, flush_state, forget_state, flush_timer, forget_timer)

    @userstate.on_timer(FORGET)
    def on_forget(
        self,
        fire_at=beam.DoFn.TimestampParam,
        pending=beam.DoFn.StateParam(PENDING),
        seen=beam.DoFn.StateParam(SEEN),
        seen_count=beam.DoFn.StateParam(SEEN_COUNT),
        flush_state=beam.DoFn.StateParam(FLUSH_AT),
        forget_state=beam.DoFn.StateParam(FORGET_AT),
        flush_timer=beam.DoFn.TimerParam(FLUSH),
        forget_timer=beam.DoFn.TimerParam(FORGET),
    ) -> Iterable[tuple[str, tuple[int, str]]]:
        # Records fetched before the expiry are judged against what the bucket holds first: a runner need not fire
        # this key's timers in time order (a batch run fires them all at the end).
        yield from self._flush(fire_at, pending, seen, seen_count, flush_state, forget_state, flush_timer, forget_timer)
        known_until = forget_state.read()
        if known_until is not None and known_until > fire_at.micros:  # a later record keeps the bucket longer
            return
        seen.clear()
        seen_count.clear()
        forget_state.clear()
        self._forgotten.inc()

    def _flush(
        self, upto, pending, seen, seen_count, flush_state, forget_state, flush_timer, forget_timer
    ) -> Iterator[tuple[str, tuple[int, str]]]:
        """Judge the pending records fetched at or before `upto`, in (fetch time, id) order, and keep them."""
        waiting = sorted(pending.read(), key=lambda p: (p[0], p[2].article_id))
        due = [p for p in waiting if p[0] <= upto.micros]
        if not due:
            return
        later = waiting[len(due) :]
        pending.clear()
        for entry in later:
            pending.add(entry)
        if later:
            flush_state.write(later[0][0])
            flush_timer.set(Timestamp(micros=later[0][0]))
        else:
            flush_state.clear()
        kept = list(seen.read())
        count = seen_count.read() or 0
        known_until = previous_expiry = forget_state.read()
        for fetched, expiry, record in due:
            if known_until is not None and known_until <= fetched:
                # Fetched after the bucket expired (its forget timer has not fired yet): judged against nothing.
                kept, count, known_until = [], 0, None
                seen.clear()
                self._forgotten.inc()
            verdict = self._judge(fetched, record, kept)
            yield record.article_id, (_VERDICT, verdict)
            if count < self._settings.max_bucket_size:
                entry = (fetched, record, verdict or record.article_id)
                kept.append(entry)
                seen.add(entry)
            elif count == self._settings.max_bucket_size:
                self._capped.inc()
            count += 1
            if known_until is None or expiry > known_until:
                known_until = expiry
        seen_count.write(count)
        if known_until != previous_expiry:  # only ever later, except after an expiry in the loop
            forget_state.write(known_until)
            forget_timer.set(Timestamp(micros=known_until))

    def _judge(self, fetched: int, record: SignatureRecord, kept: list[tuple[int, SignatureRecord, str]]) -> str:
        """What the earliest kept record that `record` is a verified copy of copies (or its own id); "" for none. A
        kept copy counts only when `record` holds at least `follow_copies` of it."""
        for earlier_fetched, earlier, copies in kept:
            if earlier.article_id == record.article_id:  # the same entry back after the exact dedup forgot it
                continue
            if (earlier_fetched, earlier.article_id) > (fetched, record.article_id):
                # Only a record fetched behind the watermark meets a later one here; judged by arrival, another band
                # could find each the copy of the other and both be dropped. This way the worst is both kept.
                continue
            self._candidates.inc()
            verified, score = is_near_copy(earlier, record, self._settings)
            # Star clusters, as batch: a copy joins another copy's canonical only when it is mostly that copy.
            if verified and (copies == earlier.article_id or score >= self._settings.follow_copies):
                self._verified.inc()
                return copies
        return ""


class _DecideFn(beam.DoFn):
    """Keyed (article_id, (_ARTICLE, article) or (_VERDICT, verdict)) -> the article once it and all `bands`
    verdicts have arrived: dropped (drop) or given `duplicate_of` (mark) when any band found it a copy."""

    ARTICLE = userstate.ReadModifyWriteStateSpec("article", PickleCoder())
    ANSWERED = userstate.ReadModifyWriteStateSpec("answered", VarIntCoder())
    COPIES = userstate.ReadModifyWriteStateSpec("copies", StrUtf8Coder())

    def __init__(self, bands: int, mode: str):
        self._bands = bands
        self._mode = mode
        self._copies = counter(NEAR_COPIES_DROPPED if mode == "drop" else NEAR_COPIES_MARKED)
        self._duplicates = counter(DUPLICATES)
        self._kept = Metrics.counter("neardup", "kept")

    def process(
        self,
        keyed: tuple[str, tuple[int, object]],
        article_state=beam.DoFn.StateParam(ARTICLE),
        answered_state=beam.DoFn.StateParam(ANSWERED),
        copies_state=beam.DoFn.StateParam(COPIES),
    ) -> Iterable[Article]:
        kind, value = keyed[1]
        article = article_state.read()
        answered = answered_state.read() or 0
        copies = copies_state.read() or ""
        if kind == _ARTICLE:
            article = value
        else:
            answered += 1
            # Bands may name different earlier copies: the smallest id, so the choice does not depend on the order.
            if value and (not copies or value < copies):
                copies = value
        if article is None or answered < self._bands:
            if kind == _ARTICLE:
                article_state.write(article)
            else:
                answered_state.write(answered)
                copies_state.write(copies)
            return
        article_state.clear()
        answered_state.clear()
        copies_state.clear()
        if not copies:
            self._kept.inc()
            yield article
            return
        self._copies.inc()
        if self._mode == "drop":
            self._duplicates.inc()  # the run summary reconciles read = written + duplicates + dead letters
            return
        yield dataclasses.replace(article, duplicate_of=copies)


class DropNearCopiesWithState(beam.PTransform):
    """Articles (in the global window, timestamped with their fetch) -> the same without near copies of articles
    seen before (drop), or with `duplicate_of` set on those copies (mark), by the verification rules of batch.

    Each signed article goes to its `bands` LSH buckets, keyed state that remembers the bucket's earlier records for
    the dedup lookback (`_BucketFn`); each bucket answers whether the article copies one of them, and the article
    is decided by id once every band has answered (`_DecideFn`). The first copy to be judged (earliest fetch, then
    smallest id) is the one kept: a stream cannot wait for an earlier-published copy. Articles without words pass
    through. Everything waits until the watermark passes the article's fetch time.
    """

    def __init__(
        self,
        settings: NearDedupSettings = NearDedupSettings(),
        lookback_seconds: float = DedupSettings.lookback_seconds,
    ):
        super().__init__()
        self._settings = settings
        self._lookback_seconds = lookback_seconds

    def expand(self, articles: beam.PCollection) -> beam.PCollection:
        settings = self._settings
        signed = articles | "Sign" >> beam.ParDo(_SignOneFn(settings, self._lookback_seconds)).with_outputs(
            _SignOneFn.UNSIGNED, main="signed"
        )
        verdicts = (
            signed.signed
            | "BandKeys" >> beam.FlatMap(_band_elements, settings).with_output_types(tuple[int, tuple])
            | "Buckets" >> beam.ParDo(_BucketFn(settings)).with_output_types(tuple[str, tuple])
        )
        by_id = signed.signed | "KeyById" >> beam.Map(
            lambda signed_article: (signed_article[0].article_id, (_ARTICLE, signed_article[0]))
        ).with_output_types(tuple[str, tuple])
        decided = (
            (by_id, verdicts)
            | "ArticleAndVerdicts" >> beam.Flatten()
            | "Decide" >> beam.ParDo(_DecideFn(settings.keys_per_record, settings.mode))
        )
        return (decided, signed[_SignOneFn.UNSIGNED]) | "WithUnsigned" >> beam.Flatten()


def is_too_late(article: Article, settings: WindowSettings) -> bool:
    """True when the article was fetched at or after its window's end plus the allowed lateness."""
    if article.fetched_at is None:  # ParseEntries always sets it; without it there is no "now" to judge by
        return False
    return lateness_deadline(article.published_at, settings) <= article.fetched_at


class _RouteTooLateFn(beam.DoFn):
    def __init__(self, settings: WindowSettings):
        self._settings = settings
        self._in_time = Metrics.counter(STAGE, "in_time")
        self._too_late = Metrics.counter(STAGE, TOO_LATE)

    def process(self, article: Article) -> Iterable:
        if not is_too_late(article, self._settings):
            self._in_time.inc()
            yield article
            return
        self._too_late.inc()
        start, end = window_bounds(article.published_at, self._settings.size_seconds)
        yield beam.pvalue.TaggedOutput(
            DEAD_LETTER_TAG,
            reject(
                "window",
                TOO_LATE,
                article=article,
                entry_key=article.url or article.guid,
                message=(
                    f"published {article.published_at.isoformat()}, fetched {article.fetched_at.isoformat()}: "
                    f"window {start.isoformat()}..{end.isoformat()} took late articles for "
                    f"{self._settings.allowed_lateness_seconds}s after its end"
                ),
                raw=f"{article.title}\n\n{article.text}",
            ),
        )


class RouteTooLate(beam.PTransform):
    """Articles -> Routed(articles still in time for their window, dead letters `too_late` for the others)."""

    def __init__(self, settings: WindowSettings = WindowSettings()):
        super().__init__()
        self._settings = settings

    def expand(self, articles: beam.PCollection) -> Routed:
        routed = articles | "Route" >> beam.ParDo(_RouteTooLateFn(self._settings)).with_outputs(
            DEAD_LETTER_TAG, main="articles"
        )
        return Routed(routed.articles, routed[DEAD_LETTER_TAG])


def _at_rejection_time(letter: DeadLetter, timestamp=beam.DoFn.TimestampParam) -> Iterable:
    yield beam_window.TimestampedValue(
        letter, Timestamp.from_utc_datetime(letter.time) if letter.time is not None else timestamp
    )


class WindowDeadLetters(beam.PTransform):
    """DeadLetters -> the same, in fixed windows of their rejection time, ready for a windowed write.

    Fixed windows rather than the global window with a processing-time trigger: they close as the watermark passes,
    which TestStream drives in tests and a drained job completes, and a dead letter is rejected after its poll, so it
    is on time. Should one arrive late all the same, it gets a late pane of its own (allowed lateness as articles').
    """

    def __init__(self, settings: StreamSettings = StreamSettings(), window: WindowSettings = WindowSettings()):
        super().__init__()
        self._size = settings.dead_letter_window_seconds
        self._lateness = window.allowed_lateness_seconds + window.late_margin_seconds

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        return (
            letters
            | "RejectionTime" >> beam.FlatMap(_at_rejection_time)
            | "FixedWindows"
            >> beam.WindowInto(
                beam_window.FixedWindows(self._size),
                trigger=beam_trigger.AfterWatermark(late=beam_trigger.AfterCount(1)),
                accumulation_mode=beam_trigger.AccumulationMode.DISCARDING,
                allowed_lateness=Duration(seconds=self._lateness),
            )
        )
