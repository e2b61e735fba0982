"""DeduplicateNearCopies: the batch composite (Beam) over the pure functions of the other modules."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from transforms.article import Article
from transforms.counters import (
    DUPLICATES,
    NEAR_CLUSTERS,
    NEAR_COPIES_DROPPED,
    NEAR_COPIES_MARKED,
    NEAR_MATCHED_PRIOR,
    NEAR_REVISIONS,
    counter,
)
from transforms.neardup.candidates import (
    KeyBatch,
    bucket_pairs,
    candidate_key_matrix,
    closest_partners,
    key_batches,
    shared_buckets,
)
from transforms.neardup.clusters import (
    Link,
    Member,
    Verdict,
    apply_verdict,
    cluster_verdicts,
    member_of,
    orient,
    star_clusters,
)
from transforms.neardup.records import SignatureRecord, signature_records
from transforms.neardup.settings import NearDedupSettings
from transforms.neardup.verification import is_near_copy
from transforms.side_inputs import CachedSideInput


class NearDedupResult(NamedTuple):
    """What DeduplicateNearCopies returns: the articles to go on, and this run's signature records (with the
    `canonical_id` their cluster kept) for the run state."""

    articles: beam.PCollection
    signatures: beam.PCollection


class _SignFn(beam.DoFn):
    """A batch of articles -> the signature record of each article that has words."""

    def __init__(self, settings: NearDedupSettings):
        self._settings = settings
        self._signed = Metrics.counter("neardup", "signed")
        self._unsigned = Metrics.counter("neardup", "unsigned")

    def process(self, batch: list[Article]) -> Iterable[SignatureRecord]:
        for record in signature_records(batch, self._settings):
            if record is None:
                self._unsigned.inc()
            else:
                self._signed.inc()
                yield record


class _KeyBatchFn(beam.DoFn):
    """Records -> (shard, KeyBatch) for each of `shards` shards of their bucket keys, per bundle (at most
    `flush_every` records at a time).

    One element per record and key (40 per article) made bucketing most of a run's Beam elements, each costing
    more to route and encode than to compute; a batch per shard and bundle costs a few elements per bundle."""

    def __init__(self, settings: NearDedupSettings, shards: int = 32, flush_every: int = 4096):
        self._settings = settings
        self._shards = shards
        self._flush_every = flush_every
        self._records: list[SignatureRecord] = []

    def start_bundle(self):
        self._records = []

    def process(self, record: SignatureRecord) -> Iterable[tuple[int, KeyBatch]]:
        self._records.append(record)
        if len(self._records) >= self._flush_every:
            yield from self._flush()

    def finish_bundle(self):
        for shard_batch in self._flush():
            yield GlobalWindows.windowed_value_at_end_of_window(shard_batch)

    def _flush(self) -> Iterator[tuple[int, KeyBatch]]:
        records, self._records = self._records, []
        if records:
            yield from enumerate(key_batches(records, self._settings, self._shards))


class _PairsFn(beam.DoFn):
    """(shard, its KeyBatches) -> the candidate pairs of the shard's buckets."""

    def __init__(self, settings: NearDedupSettings):
        self._settings = settings
        self._capped = Metrics.counter("neardup", "buckets_capped")

    def process(self, shard: tuple[int, Iterable[KeyBatch]]) -> Iterable[tuple[str, str]]:
        for members in shared_buckets(shard[1]):
            pairs, capped = bucket_pairs(members, self._settings.max_bucket_size, self._settings.bucket_window)
            if capped:
                self._capped.inc()
            yield from pairs


def _pick(records: Iterable[SignatureRecord]) -> SignatureRecord | None:
    """The record of an id: this run's when an earlier run's has the same id."""
    return min(records, key=lambda r: (r.prior, r.signature), default=None)


def _attach_first(joined: tuple[str, dict], max_partners: int) -> Iterator[tuple[str, SignatureRecord]]:
    """(first id, {its record, the ids paired with it, once per shared bucket}) -> (second id, first record) for
    its `closest_partners`."""
    record = _pick(joined[1]["record"])
    if record is not None:
        for other in closest_partners(joined[1]["other"], max_partners):
            yield other, record


class _VerifyFn(beam.DoFn):
    """(second id, {first records, second record}) -> the verified pairs, as Links from the earlier to the copy."""

    def __init__(self, settings: NearDedupSettings):
        self._settings = settings
        self._candidates = Metrics.counter("neardup", "candidate_pairs")
        self._verified = Metrics.counter("neardup", "pairs_verified")
        self._rejected = Metrics.counter("neardup", "pairs_rejected")

    def process(self, joined: tuple[str, dict]) -> Iterable[Link]:
        second = _pick(joined[1]["record"])
        if second is None:
            return
        for first in joined[1]["first"]:
            self._candidates.inc()
            earlier, later = orient(first, second)
            verified, score = is_near_copy(earlier, later, self._settings)
            if verified:
                self._verified.inc()
                yield Link(member_of(earlier), member_of(later), score)
            else:
                self._rejected.inc()


class _StarClustersFn(beam.CombineFn):
    """Verified links -> star clusters (`star_clusters`), each a list of Members sorted by id.

    The accumulator is the list of links; partial lists from any bundles concatenate, and the clusters depend only
    on the set of links. It holds only articles with at least one verified copy (about the copy share of a run,
    plus their prior matches), not every article: that is what has to fit one worker.
    """

    def __init__(self, follow_copies: float):
        self._follow_copies = follow_copies

    def create_accumulator(self) -> list[Link]:
        return []

    def add_input(self, accumulator: list[Link], link: Link) -> list[Link]:
        accumulator.append(link)
        return accumulator

    def merge_accumulators(self, accumulators) -> list[Link]:
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for other in accumulators:
            merged.extend(other)
        return merged

    def extract_output(self, accumulator: list[Link]) -> list[list[Member]]:
        return star_clusters(accumulator, self._follow_copies)


class _VerdictsFn(beam.DoFn):
    def __init__(self):
        self._clusters = counter(NEAR_CLUSTERS)

    def process(self, component: list[Member]) -> Iterable[tuple[str, Verdict]]:
        self._clusters.inc()
        yield from cluster_verdicts(component).items()


class _ApplyFn(beam.DoFn):
    """An article and the verdicts -> the article to write (or nothing), counted."""

    def __init__(self, mode: str):
        self._mode = mode
        self._copies = counter(NEAR_COPIES_DROPPED if mode == "drop" else NEAR_COPIES_MARKED)
        self._duplicates = counter(DUPLICATES)
        self._revisions = counter(NEAR_REVISIONS)
        self._matched_prior = counter(NEAR_MATCHED_PRIOR)

    def process(self, article: Article, verdicts: dict[str, Verdict]) -> Iterable[Article]:
        verdict = verdicts.get(article.article_id)
        if verdict is not None and not verdict.is_canonical:
            self._copies.inc()
            if verdict.revision:
                self._revisions.inc()
            if verdict.matched_prior:
                self._matched_prior.inc()
            if self._mode == "drop":
                self._duplicates.inc()  # the run summary reconciles read = written + duplicates + dead letters
        out = apply_verdict(article, verdict, self._mode)
        if out is not None:
            yield out


def _with_canonical(record: SignatureRecord, verdicts: dict[str, Verdict]) -> SignatureRecord:
    verdict = verdicts.get(record.article_id)
    return dataclasses.replace(record, canonical_id=verdict.canonical_id if verdict else record.article_id)


class _PriorFn(beam.DoFn):
    """Records of earlier runs -> the ones comparable with this run's (same scheme), marked prior."""

    def __init__(self, scheme: str):
        self._scheme = scheme
        self._kept = Metrics.counter("neardup", "prior_signatures")
        self._other = Metrics.counter("neardup", "prior_signatures_other_scheme")

    def process(self, record: SignatureRecord) -> Iterable[SignatureRecord]:
        if record.scheme != self._scheme:
            self._other.inc()
            return
        self._kept.inc()
        yield record if record.prior else dataclasses.replace(record, prior=True)


def _all_keys(batches: Iterable[tuple[int, KeyBatch]]) -> np.ndarray:
    batches = list(batches)
    return np.unique(np.concatenate([b.keys for _, b in batches])) if batches else np.zeros(0, np.int64)


class _SharesBucketFn(beam.DoFn):
    """A batch of prior records -> those that share at least one bucket key with this run's records (given as their
    key batches)."""

    def __init__(self, settings: NearDedupSettings):
        self._settings = settings
        self._run_keys = CachedSideInput(_all_keys)

    def process(
        self, records: list[SignatureRecord], run_batches: list[tuple[int, KeyBatch]]
    ) -> Iterable[SignatureRecord]:
        shared = np.isin(candidate_key_matrix(records, self._settings), self._run_keys.get(run_batches)).any(axis=1)
        for i in np.flatnonzero(shared).tolist():
            yield records[i]


class DeduplicateNearCopies(beam.PTransform):
    """Articles -> one article per near-duplicate cluster (drop), or all with the copies marked (mark).

    `prior_signatures`: an optional PCollection of SignatureRecords of articles from earlier runs (the run state),
    matched but never written. Returns NearDedupResult(articles, signatures). Meant for the global window (before
    windowing): the verdicts reach the articles as a side input.
    """

    def __init__(
        self, settings: NearDedupSettings = NearDedupSettings(), prior_signatures: beam.PCollection | None = None
    ):
        super().__init__()
        self._settings = settings
        self._prior = prior_signatures

    def expand(self, articles: beam.PCollection):
        settings = self._settings
        if not settings.enabled:
            return NearDedupResult(articles, articles.pipeline | "NoSignatures" >> beam.Create([]))
        signed = (
            articles
            | "Batch" >> beam.BatchElements(min_batch_size=16, max_batch_size=256)
            | "Sign" >> beam.ParDo(_SignFn(settings))
        )
        records = signed
        buckets = signed | "KeyBatches" >> beam.ParDo(_KeyBatchFn(settings))
        if self._prior is not None:
            # Only priors that share a bucket with this run can match: filtering them first keeps the shuffle as
            # small as the run, however long the history.
            prior = (
                self._prior
                | "MarkPrior" >> beam.ParDo(_PriorFn(settings.scheme))
                | "BatchPriors" >> beam.BatchElements(min_batch_size=16, max_batch_size=256)
                | "PriorsSharingABucket" >> beam.ParDo(_SharesBucketFn(settings), beam.pvalue.AsList(buckets))
            )
            run_records = signed | "RunRecords" >> beam.Map(lambda record: record)
            records = (run_records, prior) | "WithPrior" >> beam.Flatten()
            prior_buckets = prior | "PriorKeyBatches" >> beam.ParDo(_KeyBatchFn(settings))
            buckets = (buckets, prior_buckets) | "AllKeyBatches" >> beam.Flatten()
        keyed = records | "KeyById" >> beam.Map(lambda r: (r.article_id, r))
        pairs = buckets | "ByShard" >> beam.GroupByKey() | "CandidatePairs" >> beam.ParDo(_PairsFn(settings))
        halves = (
            {"other": pairs, "record": keyed}
            | "JoinFirst" >> beam.CoGroupByKey()
            | "AttachFirst" >> beam.FlatMap(_attach_first, settings.max_partners)
        )
        verdicts = (
            {"first": halves, "record": keyed}
            | "JoinSecond" >> beam.CoGroupByKey()
            | "Verify" >> beam.ParDo(_VerifyFn(settings))
            | "Components" >> beam.CombineGlobally(_StarClustersFn(settings.follow_copies))
            | "EachComponent" >> beam.FlatMap(lambda components: components)
            | "Verdicts" >> beam.ParDo(_VerdictsFn())
        )
        verdict_map = beam.pvalue.AsDict(verdicts)
        return NearDedupResult(
            articles | "Apply" >> beam.ParDo(_ApplyFn(settings.mode), verdicts=verdict_map),
            signed | "CanonicalOfSignature" >> beam.Map(_with_canonical, verdicts=verdict_map),
        )
