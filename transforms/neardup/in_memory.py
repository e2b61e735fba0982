"""The whole stage without Beam, on in-memory records or on columns: what the batch pipeline runs (its decision step,
on the columns it staged), what the benchmark measures and what the tests check against."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from transforms.neardup.candidates import (
    candidate_key_matrix,
    closest_pair_codes,
    dense_ranks,
    merge_pair_counts,
    shard_pair_counts,
)
from transforms.neardup.clusters import Link, Verdict, cluster_verdicts, member_of, orient, star_clusters
from transforms.neardup.records import SignatureRecord
from transforms.neardup.settings import NearDedupSettings
from transforms.neardup.verification import is_near_copy

# Candidate pairs whose signatures are compared at once (2 MB of gathered signatures with the default 128 hashes).
_PAIR_BLOCK = 4096


def find_near_copies(
    records: Sequence[SignatureRecord],
    prior: Sequence[SignatureRecord] = (),
    settings: NearDedupSettings = NearDedupSettings(),
    stats: dict | None = None,
) -> dict[str, Verdict]:
    """The whole stage on in-memory records: verdicts for this run's articles that have near copies.

    Band keys, buckets, capped pairs, verification, star clusters, canonical choice; `prior` records are matched,
    never given a verdict. `stats`, when given, receives the counts."""
    current_ids = {r.article_id for r in records}
    everything = list(records) + [dataclasses.replace(p, prior=True) for p in prior if p.article_id not in current_ids]
    counts = _zero_counts()
    verdicts: dict[str, Verdict] = {}
    if everything:
        keys = candidate_key_matrix(everything, settings)
        ids = [r.article_id for r in everything]
        pairs = candidate_pairs(keys, ids, np.array([r.prior for r in everything], dtype=bool), settings, counts)
        by_id = {r.article_id: r for r in everything}
        verdicts = verdicts_of_pairs(pairs, by_id.__getitem__, settings, counts)
    if stats is not None:
        stats.update(counts)
    return verdicts


def _zero_counts() -> dict[str, int]:
    return {"candidate_pairs": 0, "pairs_verified": 0, "buckets_capped": 0, "clusters": 0}


def candidate_pairs(
    keys: np.ndarray,
    ids: Sequence[str],
    prior: np.ndarray,
    settings: NearDedupSettings = NearDedupSettings(),
    counts: dict | None = None,
    shards: int = 8,
) -> list[tuple[str, str]]:
    """The candidate pairs (smaller id first, sorted) of rows with (n, keys_per_record) bucket `keys`.

    Buckets are found by sorting, one shard of the keys (`key % shards`) at a time: equal keys fall in one shard, so
    each sort holds whole buckets and a fraction of the keys. Each article (the smaller id of a pair) keeps its
    `closest_partners`."""
    counts = counts if counts is not None else _zero_counts()
    if not len(ids):
        return []
    ranks, distinct = dense_ranks(list(ids))
    width = keys.shape[1] if keys.ndim == 2 else 1
    flat = keys.reshape(-1)
    entry_ranks = np.repeat(ranks, width)
    entry_prior = np.repeat(np.asarray(prior, dtype=bool), width)
    parts = []
    for shard in range(shards):
        where = np.flatnonzero(np.remainder(flat, shards) == shard)
        pairs, shared, capped = shard_pair_counts(
            flat[where],
            entry_ranks[where],
            entry_prior[where],
            len(distinct),
            settings.max_bucket_size,
            settings.bucket_window,
        )
        counts["buckets_capped"] += capped
        parts.append((pairs, shared))
    pairs, shared = merge_pair_counts(parts)
    kept = closest_pair_codes(pairs, shared, len(distinct), settings.max_partners)
    names = distinct.to_pylist()
    return [(names[code // len(names)], names[code % len(names)]) for code in kept.tolist()]


def verdicts_of_pairs(
    pairs: Sequence[tuple[str, str]],
    record_of: Callable[[str], SignatureRecord],
    settings: NearDedupSettings = NearDedupSettings(),
    counts: dict | None = None,
) -> dict[str, Verdict]:
    """Verify each candidate pair (`record_of` gives an id's record), cluster the verified ones into stars and give
    each current member its verdict."""
    return verdicts_of_links(verified_links(pairs, record_of, settings, counts), settings, counts)


def verified_links(
    pairs: Sequence[tuple[str, str]],
    record_of: Callable[[str], SignatureRecord],
    settings: NearDedupSettings = NearDedupSettings(),
    counts: dict | None = None,
) -> list[Link]:
    """The candidate pairs that verify, as Links (the earlier article canonical); counted in `counts`."""
    counts = counts if counts is not None else _zero_counts()
    ids = sorted({x for pair in pairs for x in pair})
    at = {article_id: i for i, article_id in enumerate(ids)}
    records = [record_of(x) for x in ids]
    first = np.fromiter((at[a] for a, _ in pairs), dtype=np.int64, count=len(pairs))
    second = np.fromiter((at[b] for _, b in pairs), dtype=np.int64, count=len(pairs))
    verified, first_earlier, scores = verify_pairs(first, second, records, settings, counts)
    links = []
    for i in np.flatnonzero(verified).tolist():
        a, b = records[first[i]], records[second[i]]
        earlier, later = (a, b) if first_earlier[i] else (b, a)
        links.append(Link(member_of(earlier), member_of(later), float(scores[i])))
    return links


def verify_pairs(
    first: np.ndarray,
    second: np.ndarray,
    records: Sequence[SignatureRecord],
    settings: NearDedupSettings = NearDedupSettings(),
    counts: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Verify the candidate pairs (records[first[i]], records[second[i]]): for each, (whether it verifies, whether
    the first is the earlier, canonical one, the score); counted in `counts`. What `verified_links` does, on
    positions in a list of records rather than on ids (the batch plane's pairs are numbers)."""
    counts = counts if counts is not None else _zero_counts()
    counts["candidate_pairs"] += len(first)
    verified = np.zeros(len(first), dtype=bool)
    first_earlier = np.ones(len(first), dtype=bool)
    scores = np.zeros(len(first), dtype=np.float64)
    for i in np.flatnonzero(~_hopeless(first, second, records, settings)).tolist():
        a, b = records[first[i]], records[second[i]]
        earlier, later = orient(a, b)
        verified[i], scores[i] = is_near_copy(earlier, later, settings)
        first_earlier[i] = earlier is a
    counts["pairs_verified"] += int(verified.sum())
    return verified, first_earlier, scores


def verdicts_of_links(
    links: Sequence[Link], settings: NearDedupSettings = NearDedupSettings(), counts: dict | None = None
) -> dict[str, Verdict]:
    """Star clusters of the verified links and the verdict of each current member."""
    counts = counts if counts is not None else _zero_counts()
    verdicts: dict[str, Verdict] = {}
    for cluster in star_clusters(links, settings.follow_copies):
        counts["clusters"] += 1
        verdicts.update(cluster_verdicts(cluster))
    return verdicts


def _hopeless(
    first: np.ndarray, second: np.ndarray, records: Sequence[SignatureRecord], settings: NearDedupSettings
) -> np.ndarray:
    """For each pair (records[first[i]], records[second[i]]), True when `is_near_copy` must say no whichever way
    round it is asked: another language or scheme, or a Jaccard estimate below what the pair needs while no
    orientation's containment could reach `settings.containment`. One array pass over all pairs; most candidates end
    here (83% of them on the 10,000 real-text articles of benchmarks/e2e.py, 29% on the dense near-duplicate dev
    set), so only the rest pay for the per-pair checks. Borderline values (within 1e-9) are left to
    `is_near_copy`, so its answer never changes."""
    if not len(first):
        return np.zeros(0, dtype=bool)
    signatures = np.stack([r.values() for r in records]) if len({len(r.signature) for r in records}) == 1 else None
    if signatures is None:  # signatures of different lengths (other schemes): no shortcut, every pair is checked
        return np.zeros(len(first), dtype=bool)
    # A block of pairs at a time: gathering both ends' signatures for all pairs at once made two fresh arrays of
    # 512 bytes a pair (58 MB each for the 113,000 candidates of 10,000 e2e articles), and their page faults cost
    # ten times the comparison itself (0.29 against 0.027 s).
    same = np.empty(len(first), dtype=np.int64)
    for lo in range(0, len(first), _PAIR_BLOCK):
        a, b = first[lo : lo + _PAIR_BLOCK], second[lo : lo + _PAIR_BLOCK]
        same[lo : lo + _PAIR_BLOCK] = np.count_nonzero(signatures[a] == signatures[b], axis=1)
    jaccard = same / signatures.shape[1]
    language = np.array([r.language for r in records], dtype=object)
    scheme = np.array([r.scheme for r in records], dtype=object)
    outlet = np.array([r.outlet for r in records], dtype=object)
    words = np.array([r.word_count for r in records], dtype=np.int64)
    shingles = np.maximum(1, words - settings.shingle_size + 1)
    needed = np.full(len(first), settings.threshold)
    short = np.minimum(words[first], words[second]) < settings.min_words
    needed[short] = np.maximum(needed[short], settings.short_threshold)
    same_outlet = (outlet[first] == outlet[second]) & (outlet[first] != "")
    needed[same_outlet] = np.maximum(needed[same_outlet], settings.same_outlet_threshold)
    # The containment estimate of either orientation is at most this (verification.containment, over the smaller).
    best_containment = np.minimum(
        1.0,
        jaccard
        * (shingles[first] + shingles[second])
        / (1.0 + jaccard)
        / np.minimum(shingles[first], shingles[second]),
    )
    could_be_contained = np.maximum(jaccard, best_containment) >= settings.containment - 1e-9
    too_far = (jaccard < needed - 1e-9) & ~could_be_contained
    return (language[first] != language[second]) | (scheme[first] != scheme[second]) | too_far
