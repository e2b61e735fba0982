"""Stage B's near-duplicate decisions, on the bucket keys and signatures stage A staged (pipeline/plane/decide.py
calls it, after the exact decisions).

    verdicts = NearDuplicates(settings, chunks).decide(article_ids, signed_rows)

What is held is bounded whatever the run's size: the bucket keys (keys_per_record int64 per article, 576 bytes with
the defaults: half a gigabyte at a million articles) are read a chunk at a time and spilled to local files by
`key % shards`, then each shard is sorted alone (transforms.neardup.candidates.shard_pair_counts: the candidate
pairs of every bucket at once, by sorting); verification reads the signature columns of the candidates only, and
builds their SignatureRecords a batch of pairs at a time. Articles are named by the rank of their id (ids ordered as
Python compares them), so nothing per article is a Python object until it is a candidate. The decisions are those of
transforms.neardup.find_near_copies on the same records (tests/transforms/test_neardup.py compares them).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.plane.staging import StagedChunk, read_parquet
from transforms.neardup import NearDedupSettings, SignatureRecord
from transforms.neardup.candidates import (
    candidate_key_arrays,
    closest_pair_codes,
    dense_ranks,
    merge_pair_counts,
    shard_pair_counts,
)
from transforms.neardup.clusters import Verdict
from transforms.neardup.in_memory import verdicts_of_links, verified_links
from transforms.neardup.records import signature_from_row

# What a signature record needs (read back only for the candidates, a chunk at a time).
RECORD_COLUMNS = [
    "article_id",
    "language",
    "signature",
    "published_at",
    "text_length",
    "word_count",
    "facts",
    "outlet",
    "lead",
]
# Bucket entries (a key and its member, 12 bytes) per spilled shard: each shard is sorted alone.
SHARD_ENTRIES = 1 << 21
# Candidate pairs verified at a time: their records are built, used and dropped.
VERIFY_BATCH = 20_000


def signature_matrix(column: pa.ChunkedArray | pa.Array, width: int, dtype: str = "<u4") -> np.ndarray:
    """(n, width) array of `dtype` from a binary column of equal-length values (signatures, bucket keys), without a
    Python object each; null values are zero rows."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) == 0:
        return np.zeros((0, width), dtype)
    if array.null_count:
        array = pc.fill_null(array, bytes(np.dtype(dtype).itemsize * width))
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data.view(dtype).reshape(len(array), width)


def by_chunk(
    chunks: list[StagedChunk], bounds: np.ndarray, rows: np.ndarray
) -> Iterator[tuple[StagedChunk, np.ndarray, np.ndarray]]:
    """For each chunk holding some of the sorted global `rows`: (chunk, their rows in its key file, their positions
    in `rows`)."""
    starts = np.searchsorted(rows, bounds)
    for i, chunk in enumerate(chunks):
        lo, hi = starts[i], starts[i + 1]
        if hi > lo:
            yield chunk, rows[lo:hi] - bounds[i], np.arange(lo, hi)


class _Spill:
    """(bucket key, member) entries in local files, one pair of files per shard (`key % shards`)."""

    def __init__(self, directory: str, shards: int):
        self.shards = shards
        self._paths = [
            (os.path.join(directory, f"keys-{s}"), os.path.join(directory, f"members-{s}")) for s in range(shards)
        ]
        self._files = [(open(k, "wb"), open(m, "wb")) for k, m in self._paths]

    def add(self, keys: np.ndarray, members: np.ndarray) -> None:
        """Add the (rows, keys_per_record) `keys` of the `members`."""
        flat = keys.reshape(-1)
        owners = np.repeat(members.astype(np.int64), keys.shape[1])
        shard = np.remainder(flat, self.shards)
        order = np.argsort(shard, kind="stable")
        edges = np.searchsorted(shard[order], np.arange(self.shards + 1))
        for s, (key_file, member_file) in enumerate(self._files):
            part = order[edges[s] : edges[s + 1]]
            key_file.write(flat[part].tobytes())
            member_file.write(owners[part].tobytes())

    def close(self) -> None:
        for key_file, member_file in self._files:
            key_file.close()
            member_file.close()

    def shard(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, members) of shard `s`."""
        keys, members = self._paths[s]
        return np.fromfile(keys, dtype=np.int64), np.fromfile(members, dtype=np.int64)


class NearVerdicts(NamedTuple):
    """The verdicts of this run's signed rows that are in a cluster, by position in `signed_rows`."""

    positions: np.ndarray
    verdicts: list[Verdict]
    counts: dict[str, int]


@dataclasses.dataclass
class NearDuplicates:
    """Near-duplicate decisions over this run's staged chunks and the prior signatures (a SIGNATURE_SCHEMA table of
    this run's scheme, ids of this run's articles removed)."""

    settings: NearDedupSettings
    chunks: list[StagedChunk]
    prior: pa.Table

    def __post_init__(self) -> None:
        self.bounds = np.cumsum([0] + [c.articles for c in self.chunks])

    def decide(self, signed_ids: pa.Array, signed_rows: np.ndarray) -> NearVerdicts:
        """Verdicts for the signed rows (global row numbers, sorted) still kept; `signed_ids` their article ids."""
        settings, m = self.settings, len(signed_rows)
        counts = {"candidate_pairs": 0, "pairs_verified": 0, "buckets_capped": 0, "clusters": 0}
        entries = (m + len(self.prior)) * settings.keys_per_record
        with tempfile.TemporaryDirectory(prefix="newsbeam-buckets-") as directory:
            spill = _Spill(directory, max(1, -(-entries // SHARD_ENTRIES)))
            try:
                self._spill_run(spill, signed_rows)
                self._spill_prior(spill, m)
            finally:
                spill.close()
            # Only priors that share a bucket with this run can match: the rest never meet a current record.
            sharing = self._sharing_priors(spill, m)
            prior = self.prior.filter(pa.array(sharing))
            ids = pa.concat_arrays([signed_ids, prior.column("article_id").combine_chunks()])
            ranks, distinct = dense_ranks(ids)
            rank_of = np.full(m + len(sharing), -1, dtype=np.int64)
            rank_of[:m] = ranks[:m]
            rank_of[m + np.flatnonzero(sharing)] = ranks[m:]
            parts = []
            for s in range(spill.shards):
                keys, members = spill.shard(s)
                pairs, shared, capped = shard_pair_counts(
                    keys,
                    rank_of[members],
                    members >= m,
                    len(distinct),
                    settings.max_bucket_size,
                    settings.bucket_window,
                )
                counts["buckets_capped"] += capped
                parts.append((pairs, shared))
                del keys, members
        pairs, shared = merge_pair_counts(parts)
        codes = closest_pair_codes(pairs, shared, len(distinct), settings.max_partners)
        del parts, pairs, shared
        # The member (a position in signed_rows, else m + a row of `prior`) an id names: the last of its run rows.
        member_of_rank = np.full(len(distinct), -1, dtype=np.int64)
        np.maximum.at(member_of_rank, ranks[m:], m + np.arange(len(prior)))
        np.maximum.at(member_of_rank, ranks[:m], np.arange(m))  # a run row wins over a prior of the same id
        wanted = np.unique(member_of_rank[np.concatenate([codes // len(distinct), codes % len(distinct)])])
        candidates = _Candidates(self._gather(signed_rows[wanted[wanted < m]]), wanted[wanted < m], prior, m, settings)
        links = []
        for lo in range(0, len(codes), VERIFY_BATCH):
            batch = codes[lo : lo + VERIFY_BATCH]
            firsts, seconds = batch // len(distinct), batch % len(distinct)
            records = candidates.records(member_of_rank[np.union1d(firsts, seconds)])
            names = distinct.take(pa.array(np.concatenate([firsts, seconds]))).to_pylist()
            links += verified_links(
                zip(names[: len(batch)], names[len(batch) :]), records.__getitem__, settings, counts
            )
        del candidates
        verdicts = verdicts_of_links(links, settings, counts)
        verdict_ids = pa.array(list(verdicts), pa.string())
        positions = member_of_rank[pc.index_in(verdict_ids, value_set=distinct).to_numpy(zero_copy_only=False)]
        return NearVerdicts(positions, list(verdicts.values()), counts)

    def _spill_run(self, spill: _Spill, signed_rows: np.ndarray) -> None:
        width = self.settings.keys_per_record
        for chunk, local, at in by_chunk(self.chunks, self.bounds, signed_rows):
            column = read_parquet(chunk.keys_path, columns=["bucket_keys"]).column(0).take(pa.array(local))
            spill.add(signature_matrix(column, width, "<i8"), at)

    def _spill_prior(self, spill: _Spill, m: int, batch: int = 65_536) -> None:
        for lo in range(0, len(self.prior), batch):
            part = self.prior.slice(lo, batch)
            keys = candidate_key_arrays(
                signature_matrix(part.column("signature"), self.settings.num_perm),
                [x or "und" for x in part.column("language").to_pylist()],
                [x or b"" for x in part.column("lead").to_pylist()],
                part.column("article_id").to_pylist(),
                self.settings,
            )
            spill.add(keys, m + lo + np.arange(len(part)))

    def _sharing_priors(self, spill: _Spill, m: int) -> np.ndarray:
        """Which prior rows share a bucket key with one of this run's articles."""
        sharing = np.zeros(len(self.prior), dtype=bool)
        if not len(self.prior):
            return sharing
        for s in range(spill.shards):
            keys, members = spill.shard(s)
            is_prior = members >= m
            hit = is_prior & np.isin(keys, keys[~is_prior])
            sharing[members[hit] - m] = True
        return sharing

    def _gather(self, rows: np.ndarray) -> pa.Table:
        """The record columns of the given global rows (sorted), read a chunk at a time."""
        parts = [
            read_parquet(chunk.keys_path, columns=RECORD_COLUMNS).take(pa.array(local))
            for chunk, local, _ in by_chunk(self.chunks, self.bounds, rows)
        ]
        return pa.concat_tables(parts) if parts else None


class _Candidates:
    """The record columns of the candidate pairs' members; their SignatureRecords, built a batch at a time."""

    def __init__(self, run: pa.Table | None, run_members: np.ndarray, prior: pa.Table, m: int, settings):
        self._run, self._run_members, self._prior, self._m = run, run_members, prior, m
        self._scheme = settings.scheme

    def records(self, members: np.ndarray) -> dict[str, SignatureRecord]:
        """SignatureRecords by id of the given members: this run's with the run's scheme and no canonical id yet;
        the priors' as the run state kept them."""
        records: dict[str, SignatureRecord] = {}
        run = members[members < self._m]
        if len(run):
            rows = self._run.take(pa.array(np.searchsorted(self._run_members, run))).to_pylist()
            for row in rows:
                record = signature_from_row(row)
                records[row["article_id"]] = dataclasses.replace(
                    record, prior=False, canonical_id="", scheme=self._scheme
                )
        for row in self._prior.take(pa.array(members[members >= self._m] - self._m)).to_pylist():
            records.setdefault(row["article_id"], signature_from_row(row))
        return records
