"""Stage B's near-duplicate decisions, on the bucket keys and signatures stage A staged (pipeline/plane/decide.py
calls it, after the exact decisions).

    verdicts = NearDuplicates(settings, chunks).decide(article_ids, signed_rows)

What is held is bounded whatever the run's size: the bucket keys (keys_per_record int64 per article, 576 bytes with
the defaults: half a gigabyte at a million articles) are read a chunk at a time and spilled to local files by
`key % shards`, then each shard is sorted alone (transforms.neardup.candidates.shard_pair_counts: the candidate
pairs of every bucket at once, by sorting); each shard's pairs are spilled too, and merged a range of first ranks at
a time (each first keeps its closest partners). Verification reads the signature columns of the candidates only,
builds their SignatureRecords a block of rows at a time and keeps the verified links as arrays of ranks and scores
(transforms.neardup.stars makes the star clusters of those). Articles are named by the rank of their id (ids ordered
as Python compares them), so nothing per article is a Python object until it is a candidate, nor after its pairs are
verified. A feed of 100,000 repeated AG News rows (5.8 million pair codes, 551,614 verified links) peaked here at
1,377 MiB with every shard's pairs and every link held at once; 948 MiB this way. The decisions are those of
transforms.neardup.find_near_copies on the same records (tests/transforms/test_neardup.py and
test_neardup_arrays.py compare them).
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

from pipeline.plane.memory import release_memory
from pipeline.plane.staging import StagedChunk, read_parquet
from transforms.neardup import NearDedupSettings, SignatureRecord
from transforms.neardup.candidates import (
    candidate_key_arrays,
    closest_pair_codes,
    dense_ranks,
    merge_pair_counts,
    shard_pair_counts,
)
from transforms.neardup.clusters import Verdict, member_of
from transforms.neardup.in_memory import verify_pairs
from transforms.neardup.records import run_records, signature_from_row
from transforms.neardup.stars import LinkArrays, MemberColumns, verdicts_of_link_arrays

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
SHARD_ENTRIES = 1 << 19
# Candidate pair codes merged at once (np.unique sorts them: a few times this many int64 held).
PAIR_ENTRIES = 1 << 20
# Cells of first ranks the spilled pairs are cut at: a merge takes whole cells.
PAIR_CELLS = 4096
# Rows made into records at once (their columns as Python lists first): a block at once held its records twice.
_ROWS_AT_ONCE = 1024
# Candidates' record columns (about 2 KB each) read back at a time: verification holds two such blocks.
BLOCK_ROWS = 8192


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

    def remove(self) -> None:
        for keys, members in self._paths:
            os.remove(keys)
            os.remove(members)

    def shard(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, members) of shard `s`."""
        keys, members = self._paths[s]
        return np.fromfile(keys, dtype=np.int64), np.fromfile(members, dtype=np.int64)


class _PairSpill:
    """Each key shard's candidate pairs (codes, sorted, and shared-bucket counts) in local files, with where each
    cell of first ranks starts in them: the pairs of a range of first ranks are read back from every shard at once,
    merged and reduced to each first's closest partners, so the shards' pairs (5.8 million codes on 100,000 AG News
    entries, most of them shared by several shards) are never held together. A first's pairs all lie in one cell,
    so choosing the closest partners range by range gives what choosing them over all pairs gives."""

    def __init__(self, directory: str, total: int):
        self._directory, self._total = directory, total
        width = max(1, -(-total // PAIR_CELLS))
        self._edges = np.arange(0, total + width, width, dtype=np.int64) * total  # codes where each cell starts
        self._files: list[tuple[str, str, np.ndarray]] = []

    def add(self, pairs: np.ndarray, shared: np.ndarray) -> None:
        codes_path = os.path.join(self._directory, f"pairs-{len(self._files)}")
        shared_path = os.path.join(self._directory, f"shared-{len(self._files)}")
        pairs.astype(np.int64).tofile(codes_path)
        shared.astype(np.int64).tofile(shared_path)
        self._files.append((codes_path, shared_path, np.searchsorted(pairs, self._edges)))

    def ranges(self, limit: int) -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
        """Every shard's (codes, shared) of one range of whole cells, at most `limit` codes unless one cell has
        more, range after range in code order."""
        if not self._files:
            return
        sizes = np.sum([np.diff(offsets) for _, _, offsets in self._files], axis=0)
        lo = held = 0
        for cell, size in enumerate(sizes.tolist() + [limit + 1]):
            if held and held + size > limit:
                yield [self._read(f, lo, cell) for f in self._files]
                lo, held = cell, 0
            held += size

    def _read(self, spilled: tuple[str, str, np.ndarray], lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        codes_path, shared_path, offsets = spilled
        start, count = int(offsets[lo]), int(offsets[hi] - offsets[lo])
        return (
            np.fromfile(codes_path, dtype=np.int64, count=count, offset=start * 8),
            np.fromfile(shared_path, dtype=np.int64, count=count, offset=start * 8),
        )

    def remove(self) -> None:
        for codes_path, shared_path, _ in self._files:
            os.remove(codes_path)
            os.remove(shared_path)


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
        counts = {"candidate_pairs": 0, "pairs_verified": 0, "buckets_capped": 0, "clusters": 0}
        with tempfile.TemporaryDirectory(prefix="newsbeam-near-") as directory:
            codes, names, member_of_rank, prior = self._candidates(directory, signed_ids, signed_rows, counts)
            release_memory()
            links, members = self._verify(directory, codes, names, member_of_rank, signed_rows, prior, counts)
        release_memory()
        ranks, verdicts = verdicts_of_link_arrays(
            links, members, lambda rank: names[rank].as_py(), self.settings.follow_copies, counts
        )
        return NearVerdicts(member_of_rank[ranks], verdicts, counts)

    def _candidates(
        self, directory: str, signed_ids: pa.Array, signed_rows: np.ndarray, counts: dict
    ) -> tuple[np.ndarray, pa.Array, np.ndarray, pa.Table]:
        """(candidate pair codes first rank * R + second rank, sorted; the ids in rank order (R of them); the member
        each rank names, a position in signed_rows or len(signed_rows) + a row of the priors returned; the priors
        that share a bucket with this run)."""
        settings, m = self.settings, len(signed_rows)
        entries = (m + len(self.prior)) * settings.keys_per_record
        spill = _Spill(directory, max(1, -(-entries // SHARD_ENTRIES)))
        try:
            self._spill_run(spill, signed_rows)
            self._spill_prior(spill, m)
        finally:
            spill.close()
        # Only priors that share a bucket with this run can match: the rest never meet a current record.
        sharing = self._sharing_priors(spill, m)
        prior = self.prior.filter(pa.array(sharing))
        ranks, names = dense_ranks(pa.concat_arrays([signed_ids, prior.column("article_id").combine_chunks()]))
        rank_of = np.full(m + len(sharing), -1, dtype=np.int64)
        rank_of[:m] = ranks[:m]
        rank_of[m + np.flatnonzero(sharing)] = ranks[m:]
        pair_spill = _PairSpill(directory, len(names))
        for s in range(spill.shards):
            keys, members = spill.shard(s)
            pairs, shared, capped = shard_pair_counts(
                keys, rank_of[members], members >= m, len(names), settings.max_bucket_size, settings.bucket_window
            )
            counts["buckets_capped"] += capped
            pair_spill.add(pairs, shared)
            del keys, members, pairs, shared
        spill.remove()
        kept = [np.zeros(0, np.int64)]
        for parts in pair_spill.ranges(PAIR_ENTRIES):
            pairs, shared = merge_pair_counts(parts)
            del parts
            kept.append(closest_pair_codes(pairs, shared, len(names), settings.max_partners))
        pair_spill.remove()
        codes = np.concatenate(kept)
        # The member an id names: the last of its run rows, else the last of its prior rows.
        member_of_rank = np.full(len(names), -1, dtype=np.int64)
        np.maximum.at(member_of_rank, ranks[m:], m + np.arange(len(prior)))
        np.maximum.at(member_of_rank, ranks[:m], np.arange(m))
        return codes, names, member_of_rank, prior

    def _verify(
        self,
        directory: str,
        codes: np.ndarray,
        names: pa.Array,
        member_of_rank: np.ndarray,
        signed_rows: np.ndarray,
        prior: pa.Table,
        counts: dict,
    ) -> tuple[LinkArrays, MemberColumns]:
        """The verified links of the candidate pairs, as arrays of ranks and scores, and the fields of their members.
        The candidates' record columns are spilled to a local file in member order and read back a block of rows at
        a time: the pairs are taken by (block, block), so each step holds two blocks and the records of their pairs,
        however many candidates the run has."""
        m, total = len(signed_rows), max(len(names), 1)
        ends = member_of_rank[codes // total], member_of_rank[codes % total]
        run = np.unique(np.concatenate(ends))
        run = run[run < m]
        store = _RecordStore(os.path.join(directory, "candidates.arrow"), self, signed_rows[run], run)
        # The block of each end (-1: a prior, whose rows are in memory already); pairs taken by (lower, higher),
        # so the lower block stays loaded while the higher ones pass.
        a, b = (store.block_of(e) + 1 for e in ends)
        del ends
        steps = np.minimum(a, b) * (store.blocks + 1) + np.maximum(a, b)
        del a, b
        order = np.argsort(steps, kind="stable")
        steps = steps[order]
        release_memory()
        starts = np.flatnonzero(np.diff(steps, prepend=-1))
        step_of, starts = steps[starts].tolist(), starts.tolist() + [len(steps)]
        del steps
        links, members, held = [], MemberColumns(len(names)), {}
        for step, lo, hi in zip(step_of, starts, starts[1:]):
            needed = {x - 1 for x in divmod(step, store.blocks + 1) if x > 0}
            held = {x: held[x] if x in held else store.block(x) for x in needed}
            links.append(
                self._verify_step(m, codes[order[lo:hi]], total, member_of_rank, store, held, prior, members, counts)
            )
            release_memory()  # the step's records, in the C heap below glibc's (raised) mmap threshold
        return LinkArrays.concatenate(links), members

    def _verify_step(
        self,
        m: int,
        codes: np.ndarray,
        total: int,
        member_of_rank: np.ndarray,
        store: _RecordStore,
        held: dict[int, pa.Table],
        prior: pa.Table,
        members: MemberColumns,
        counts: dict,
    ) -> LinkArrays:
        """The verified links of the pairs `codes`, whose run members' records are in the `held` blocks; the fields
        of their members not met before added to `members`."""
        first_ranks, second_ranks = codes // total, codes % total
        firsts, seconds = member_of_rank[first_ranks], member_of_rank[second_ranks]
        ends = np.union1d(firsts, seconds)
        records = store.records(ends, held, prior, m, self.settings.scheme, keep=min(held, default=-1))
        at_first, at_second = np.searchsorted(ends, firsts), np.searchsorted(ends, seconds)
        verified, first_earlier, scores = verify_pairs(at_first, at_second, records, self.settings, counts)
        first_ranks, second_ranks, first_earlier = (
            first_ranks[verified],
            second_ranks[verified],
            first_earlier[verified],
        )
        met, at = np.unique(np.concatenate([first_ranks, second_ranks]), return_index=True)
        at = np.concatenate([at_first[verified], at_second[verified]])[at]
        new = ~members.known[met]
        for rank, i in zip(met[new].tolist(), at[new].tolist()):
            members.add(rank, member_of(records[i]))
        return LinkArrays(
            np.where(first_earlier, first_ranks, second_ranks),
            np.where(first_earlier, second_ranks, first_ranks),
            scores[verified],
        )

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


class _RecordStore:
    """The record columns of the candidates' run members (`members`, sorted; their global rows `rows`), spilled to a
    local Arrow file in member order and read back a block of BLOCK_ROWS rows at a time."""

    def __init__(self, path: str, near: NearDuplicates, rows: np.ndarray, members: np.ndarray):
        self._path, self._members = path, members
        sizes = []
        with pa.OSFile(path, "wb") as handle:
            writer = None
            for chunk, local, _ in by_chunk(near.chunks, near.bounds, rows):
                part = read_parquet(chunk.keys_path, columns=RECORD_COLUMNS).take(pa.array(local))
                writer = writer or pa.ipc.new_file(handle, part.schema)
                for batch in part.to_batches():
                    writer.write_batch(batch)
                    sizes.append(len(batch))
            if writer is not None:
                writer.close()
        self._starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
        self.blocks = -(-len(members) // BLOCK_ROWS)
        self._kept: dict[int, SignatureRecord] = {}
        self._kept_block = -1

    def block_of(self, members: np.ndarray) -> np.ndarray:
        """The block of each member (-1 for one not in the store: a prior)."""
        at = np.searchsorted(self._members, members)
        inside = at < len(self._members)
        found = inside & (self._members[np.where(inside, at, 0)] == members)
        return np.where(found, at // BLOCK_ROWS, -1)

    def block(self, b: int) -> pa.Table:
        """Rows [b * BLOCK_ROWS, (b + 1) * BLOCK_ROWS) of the store."""
        lo, hi = b * BLOCK_ROWS, min((b + 1) * BLOCK_ROWS, int(self._starts[-1]))
        first, last = np.searchsorted(self._starts, [lo, hi - 1], side="right") - 1
        with pa.OSFile(self._path) as handle:
            reader = pa.ipc.open_file(handle)
            table = pa.Table.from_batches([reader.get_batch(i) for i in range(first, last + 1)], schema=reader.schema)
        return table.slice(lo - int(self._starts[first]), hi - lo)

    def records(
        self, members: np.ndarray, blocks: dict[int, pa.Table], prior: pa.Table, m: int, scheme: str, keep: int
    ) -> list[SignatureRecord]:
        """The SignatureRecords of the given members (sorted; those in the store from the loaded `blocks`; priors,
        m + a row of `prior`): this run's with the run's scheme and no canonical id yet, the priors' as the run state
        kept them. Those of block `keep` are kept for the next call with the same `keep`: a step's lower block is the
        lower block of the steps after it, until the next group, and its records are made once."""
        if keep != self._kept_block:
            self._kept, self._kept_block = {}, keep
        records: list = [None] * len(members)
        run = members[members < m]
        at = np.searchsorted(self._members, run)
        for b, table in blocks.items():
            inside = np.flatnonzero(at // BLOCK_ROWS == b)
            if b == keep:
                made = [self._kept.get(x) for x in run[inside].tolist()]
                for i, record in zip(inside.tolist(), made):
                    records[i] = record
                inside = inside[[record is None for record in made]]
            rows = table.take(pa.array(at[inside] - b * BLOCK_ROWS))
            for lo in range(0, len(inside), _ROWS_AT_ONCE):
                made = run_records(rows.slice(lo, _ROWS_AT_ONCE), scheme)
                for i, record in zip(inside[lo : lo + _ROWS_AT_ONCE].tolist(), made):
                    records[i] = record
                    if b == keep:
                        self._kept[int(run[i])] = record
        for i, row in enumerate(prior.take(pa.array(members[len(run) :] - m)).to_pylist(), start=len(run)):
            records[i] = signature_from_row(row)
        return records
