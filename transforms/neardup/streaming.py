"""DropNearCopiesWithState: near copies in streaming, by the batch rules (MinHash, LSH buckets, `is_near_copy`), with
each LSH bucket as keyed state.

An article goes to its candidate buckets (its `bands` band keys and its lead keys). Each bucket waits until the
watermark passes the article's fetch time. It then judges the records that are due, in (fetch time, id) order,
against the ones it holds: at most `max_bucket_size`, forgotten after the dedup lookback. So every bucket agrees on
which of two copies came first. The article is a copy when any bucket found it one. It is decided by id once all
buckets have answered. The first copy fetched is the one kept; in mark mode, `duplicate_of` names the kept article
it copies. As in batch's star clusters, a held record that is itself a copy counts only when the new one mostly
equals it (`follow_copies`), so no chain runs through a paragraph two stories share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Literal

import apache_beam as beam
from apache_beam.coders import PickleCoder, StrUtf8Coder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Timestamp

from transforms.article import Article
from transforms.counters import DUPLICATES, NEAR_COPIES_DROPPED, NEAR_COPIES_MARKED, counter
from transforms.expiry import forget_at
from transforms.neardup.candidates import candidate_keys
from transforms.neardup.records import SignatureRecord, signature_records
from transforms.neardup.settings import NearDedupSettings
from transforms.neardup.verification import is_near_copy

# The near-duplicate lookback's default (`dedup.lookback`, DedupSettings.neardup_lookback_seconds), without importing
# the dedup stage.
DEFAULT_LOOKBACK_SECONDS = 14 * 86400


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

    def process(
        self, article: Article
    ) -> Iterator[tuple[Article, SignatureRecord, int] | TaggedOutput[Literal["unsigned"], Article]]:
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
        lookback_seconds: float = DEFAULT_LOOKBACK_SECONDS,
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
            | "BandKeys"
            >> beam.FlatMap(_band_elements, settings).with_output_types(tuple[int, tuple[int, SignatureRecord]])
            | "Buckets" >> beam.ParDo(_BucketFn(settings)).with_output_types(tuple[str, tuple[int, object]])
        )
        by_id = signed.signed | "KeyById" >> beam.Map(
            lambda signed_article: (signed_article[0].article_id, (_ARTICLE, signed_article[0]))
        ).with_output_types(tuple[str, tuple[int, object]])
        decided = (
            (by_id, verdicts)
            | "ArticleAndVerdicts" >> beam.Flatten()
            | "Decide" >> beam.ParDo(_DecideFn(settings.keys_per_record, settings.mode))
        )
        return (decided, signed[_SignOneFn.UNSIGNED]) | "WithUnsigned" >> beam.Flatten()
