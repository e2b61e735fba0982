"""The whole stage on in-memory records, without Beam: what the benchmark measures and the tests check the composite
against."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from transforms.neardup.candidates import bucket_pairs, candidate_key_matrix, closest_partners, group_buckets
from transforms.neardup.clusters import Link, Verdict, cluster_verdicts, member_of, orient, star_clusters
from transforms.neardup.records import SignatureRecord
from transforms.neardup.settings import NearDedupSettings
from transforms.neardup.verification import is_near_copy


def find_near_copies(
    records: Sequence[SignatureRecord],
    prior: Sequence[SignatureRecord] = (),
    settings: NearDedupSettings = NearDedupSettings(),
    stats: dict | None = None,
) -> dict[str, Verdict]:
    """The whole stage on in-memory records: verdicts for this run's articles that have near copies.

    The same steps as the Beam composite (band keys, buckets, capped pairs, verification, star clusters, canonical
    choice) with numpy in place of the shuffle; `prior` records are matched, never given a verdict. The benchmark
    measures this, the tests check the composite against it. `stats`, when given, receives the counts.
    """
    current_ids = {r.article_id for r in records}
    everything = list(records) + [dataclasses.replace(p, prior=True) for p in prior if p.article_id not in current_ids]
    counts = {"candidate_pairs": 0, "pairs_verified": 0, "buckets_capped": 0}
    if not everything:
        if stats is not None:
            stats.update(counts)
        return {}
    # Band keys carry their band's salt and lead keys another: one sort of all of them stands for the GroupByKey.
    keys = candidate_key_matrix(everything, settings)
    row_of = np.repeat(np.arange(len(everything)), keys.shape[1])
    partners: dict[str, list[str]] = {}  # the smaller id of each pair -> the other, once per shared bucket
    for bucket in group_buckets(keys.reshape(-1)):
        members = [(everything[i].article_id, everything[i].prior) for i in row_of[bucket].tolist()]
        found, capped = bucket_pairs(members, settings.max_bucket_size, settings.bucket_window)
        counts["buckets_capped"] += capped
        for first, second in found:
            partners.setdefault(first, []).append(second)
    pairs = {
        (first, second)
        for first, others in partners.items()
        for second in closest_partners(others, settings.max_partners)
    }
    by_id = {r.article_id: r for r in everything}
    links = []
    for a, b in sorted(pairs):
        counts["candidate_pairs"] += 1
        earlier, later = orient(by_id[a], by_id[b])
        verified, score = is_near_copy(earlier, later, settings)
        if verified:
            links.append(Link(member_of(earlier), member_of(later), score))
    counts["pairs_verified"] = len(links)
    verdicts: dict[str, Verdict] = {}
    for cluster in star_clusters(links, settings.follow_copies):
        verdicts.update(cluster_verdicts(cluster))
    if stats is not None:
        stats.update(counts)
    return verdicts
