"""Candidate pairs: the keys an article is bucketed under (LSH bands of its signature, and its lead keys) and the
capped buckets they make.

Two sources, so that what one misses the other finds. Bands of 2 rows find pairs alike as a whole (Jaccard 0.25 is a
candidate with probability 0.98) but a copy cut to a third of its story with a local paragraph added often has a
Jaccard similarity of 0.1-0.2 and shares no band. Such a copy keeps the top of its story, so each article is also
bucketed under `lead_keys` sampled word 4-grams of its first LEAD_REACH * lead_words words (the bottom values of
their salted hashes, as a MinHash does): two texts whose tops share most of their words share one of those keys.
"""

from __future__ import annotations

import collections
import functools
import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.neardup.hashing import _mix, _mix_int
from transforms.neardup.records import SignatureRecord
from transforms.neardup.settings import NearDedupSettings

# Banding.


def _stable64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


@functools.lru_cache(maxsize=1024)
def language_salt(language: str) -> int:
    """A stable 64-bit number for a language code, mixed into every band key."""
    return _stable64(language)


_BAND_SALT = np.array([_mix_int(0xB5AD4ECEDA1CE2A9 + i) for i in range(1024)], dtype=np.uint64)


def band_key_matrix(signatures: np.ndarray, salts: np.ndarray, bands: int, only: int | None = None) -> np.ndarray:
    """(n, bands) uint64 band keys for an (n, num_perm) signature array and one language salt per row; with
    `only`, the (n,) keys of that band alone."""
    n, num_perm = signatures.shape
    rows = num_perm // bands
    chosen = range(bands) if only is None else [only]
    values = signatures.reshape(n, bands, rows)[:, chosen, :].astype(np.uint64)
    with np.errstate(over="ignore"):
        acc = np.broadcast_to(_BAND_SALT[list(chosen)], (n, len(chosen))) ^ salts.astype(np.uint64)[:, None]
        for r in range(rows):
            acc = _mix(acc ^ values[:, :, r])
    return acc if only is None else acc[:, 0]


def band_keys(signature: np.ndarray, language: str, bands: int) -> list[int]:
    """The band keys of one signature: equal keys mean equal values in that band, in the same language. Signed
    64-bit, so that Beam encodes them as plain varints."""
    salt = np.array([language_salt(language)], dtype=np.uint64)
    return band_key_matrix(signature[None, :], salt, bands)[0].view(np.int64).tolist()


_LEAD_SALT = np.uint64(_mix_int(0x6C62272E07BB0142))


def lead_keys(record: SignatureRecord, count: int) -> list[int]:
    """`count` keys from the top of a record's text: the smallest salted hashes of its lead's word 4-grams (two
    overlapping 3-word shingles of the 16-bit lead hashes the record keeps, so records from the run state have them
    too). A lead with fewer distinct 4-grams is padded with keys of the article's own, which no other article has.
    Signed 64-bit, as band keys."""
    return lead_key_matrix([record], count)[0].tolist()


def lead_key_matrix(records: Sequence[SignatureRecord], count: int) -> np.ndarray:
    """(n, count) int64: `lead_keys` of each record, for a whole batch in a few numpy passes."""
    return lead_key_arrays(
        [r.lead for r in records], [r.language for r in records], [r.article_id for r in records], count
    )


def lead_key_arrays(leads: Sequence[bytes], languages: Sequence[str], ids: Sequence[str], count: int) -> np.ndarray:
    """`lead_key_matrix` from columns (each record's lead bytes, language and id), without records."""
    n = len(leads)
    lengths = np.fromiter((len(x) // 2 for x in leads), dtype=np.int64, count=n)
    out = np.zeros((n, count), dtype=np.int64)
    if lengths.sum() > 1:
        values = np.frombuffer(b"".join(leads), dtype="<u2").astype(np.uint64)
        owner = np.repeat(np.arange(n), lengths)
        within = owner[:-1] == owner[1:]
        owner = owner[:-1][within]
        salts = language_salts(languages) ^ _LEAD_SALT
        with np.errstate(over="ignore"):
            keys = _mix(((values[:-1] << np.uint64(16)) | values[1:])[within] ^ salts[owner])
        # Sorted by (owner, key): keys first, then owners with a stable sort (a radix sort on 16 bits), 5x faster
        # than np.lexsort; equal (owner, key) entries collapse below, so their order does not matter.
        by_key = np.argsort(keys)
        narrow = np.uint16 if n <= 1 << 16 else np.uint32
        order = by_key[np.argsort(owner[by_key].astype(narrow), kind="stable")]
        keys, owner = keys[order], owner[order]
        distinct = np.ones(len(keys), dtype=bool)
        distinct[1:] = (keys[1:] != keys[:-1]) | (owner[1:] != owner[:-1])
        keys, owner = keys[distinct], owner[distinct]
        rank = np.arange(len(keys)) - np.searchsorted(owner, owner)
        take = rank < count
        out[owner[take], rank[take]] = keys[take].view(np.int64)
        found = np.bincount(owner[take], minlength=n)
    else:
        found = np.zeros(n, dtype=np.int64)
    for i in np.flatnonzero(found < count).tolist():
        own = _stable64(ids[i])
        out[i, found[i] :] = [_mix_int(own + j) - (1 << 63) for j in range(count - found[i])]
    return out


def language_salts(languages: Sequence[str]) -> np.ndarray:
    """(n,) uint64: `language_salt` of each language."""
    return np.fromiter((language_salt(x) for x in languages), dtype=np.uint64, count=len(languages))


def candidate_key_matrix(records: Sequence[SignatureRecord], settings: NearDedupSettings) -> np.ndarray:
    """(n, keys_per_record) int64: every bucket key of each record, its `bands` band keys, then its `lead_keys`
    lead keys. Per batch: computed one record at a time, the keys cost more than the signature."""
    signatures = np.stack([r.values() for r in records]) if records else np.zeros((0, settings.num_perm), np.uint32)
    return candidate_key_arrays(
        signatures, [r.language for r in records], [r.lead for r in records], [r.article_id for r in records], settings
    )


def candidate_key_arrays(
    signatures: np.ndarray,
    languages: Sequence[str],
    leads: Sequence[bytes],
    ids: Sequence[str],
    settings: NearDedupSettings,
) -> np.ndarray:
    """`candidate_key_matrix` from columns: an (n, num_perm) uint32 signature array and each record's language,
    lead bytes and id."""
    keys = band_key_matrix(signatures, language_salts(languages), settings.bands).view(np.int64)
    if settings.lead_keys:
        keys = np.concatenate([keys, lead_key_arrays(leads, languages, ids, settings.lead_keys)], axis=1)
    return keys


def candidate_keys(record: SignatureRecord, settings: NearDedupSettings) -> list[int]:
    """Every bucket key of a record (`candidate_key_matrix` of one): `keys_per_record` of them, always."""
    return candidate_key_matrix([record], settings)[0].tolist()


def closest_partners(partners: Iterable[str], max_partners: int) -> list[str]:
    """The distinct ids among `partners` (one entry per bucket shared with some article), those sharing the most
    buckets first (ties by id), at most `max_partners` of them."""
    shared = collections.Counter(partners)
    return sorted(shared, key=lambda other: (-shared[other], other))[:max_partners]


def bucket_pairs(
    members: Iterable[tuple[str, bool]], max_bucket_size: int, window: int
) -> tuple[list[tuple[str, str]], bool]:
    """Candidate pairs (smaller id first) of one bucket's (article_id, prior) members, and whether it was capped.

    Two prior members are never a pair: their clusters were settled in their own run. Up to `max_bucket_size`
    members every other pair is a candidate. A larger bucket is shared furniture or a very widely syndicated story:
    its members, sorted by id, are paired with their next `window` neighbours only. True copies still chain into one
    cluster (through these pairs and their other bands), boilerplate does not, and the bucket costs O(n) pairs.
    """
    prior_of: dict[str, bool] = {}
    for article_id, prior in members:
        prior_of[article_id] = prior_of.get(article_id, True) and prior  # the same id current and prior: current
    ids = sorted(prior_of)
    capped = len(ids) > max_bucket_size
    reach = window if capped else len(ids)
    pairs = [
        (a, ids[j])
        for i, a in enumerate(ids)
        for j in range(i + 1, min(i + 1 + reach, len(ids)))
        if not (prior_of[a] and prior_of[ids[j]])
    ]
    return pairs, capped


# ---------------------------------------------------------------------------------------------------------------


def bucket_bounds(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, starts, sizes) of the buckets with two or more members among the (n,) keys of one band: bucket i
    holds rows order[starts[i]:starts[i] + sizes[i]]. A sort standing in for the GroupByKey of the composite."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    boundary = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    starts = np.concatenate(([0], boundary))
    sizes = np.diff(np.concatenate((starts, [len(keys)])))
    multi = sizes > 1
    return order, starts[multi], sizes[multi]


def dense_ranks(ids) -> tuple[np.ndarray, np.ndarray]:
    """(rank of each id in sorted order, equal ids sharing one; the distinct ids in that order) of a pyarrow string
    array or a list of str. Byte order of UTF-8 is code point order, so the ranks order ids as Python compares them."""
    array = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(ids, pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    order = pc.sort_indices(array).to_numpy()
    ordered = array.take(pa.array(order))
    new = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        new[1:] = pc.not_equal(ordered.slice(1), ordered.slice(0, len(order) - 1)).to_numpy(zero_copy_only=False)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.cumsum(new) - 1
    return ranks, ordered.filter(pa.array(new))


def shard_pair_counts(
    keys: np.ndarray, ranks: np.ndarray, prior: np.ndarray, total: int, max_bucket_size: int, window: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """The candidate pairs of one shard of bucket entries, as `bucket_pairs` makes them, all buckets at once.

    Each entry is a bucket key (int64), the rank of its member's article id (below `total`; a negative rank is left
    out) and whether the member is prior. Returns (pair codes first * total + second, first < second; the buckets
    each pair shares; the buckets capped). Sorting stands in for the per-bucket loop: the entries by key, then those
    of buckets of two or more by (bucket, rank)."""
    keep = ranks >= 0
    keys, ranks, prior = keys[keep], ranks[keep], prior[keep]
    order = np.argsort(keys)
    keys = keys[order]
    repeated = np.zeros(len(keys), dtype=bool)
    if len(keys) > 1:
        same = keys[1:] == keys[:-1]
        repeated[1:] |= same
        repeated[:-1] |= same
    keys, ranks, prior = keys[repeated], ranks[order[repeated]], prior[order[repeated]]
    del order
    bucket = np.cumsum(np.concatenate(([True], keys[1:] != keys[:-1]))) - 1 if len(keys) else keys
    # The members of a bucket in id order, each id once: prior only if every entry of it in the bucket is.
    code, inverse = np.unique(bucket * total + ranks, return_inverse=True)
    only_prior = np.ones(len(code), dtype=bool)
    np.logical_and.at(only_prior, inverse.reshape(-1), prior)
    del keys, inverse, prior
    bucket, ranks = code // max(total, 1), code % max(total, 1)
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1]))) if len(code) else code
    del bucket
    sizes = np.diff(np.concatenate((starts, [len(code)])))
    capped = sizes > max_bucket_size
    # How far each entry pairs ahead: to the end of its bucket, or its next `window` neighbours in a capped one.
    reach = np.repeat(np.where(capped, window, sizes - 1), sizes)
    reachable = np.minimum(reach, np.repeat(starts + sizes, sizes) - 1 - np.arange(len(code)))
    del reach, starts, sizes, code
    # Every bucket's pairs go into one array, sorted in place and counted: on repeated rows a shard of a million
    # entries makes 3.9 million (822,000 distinct), and np.unique of their concatenation held them three times over.
    found = np.empty(int(reachable.sum()), dtype=np.int64)
    n = 0
    for offset in range(1, int(reachable.max(initial=0)) + 1):
        at = np.flatnonzero(reachable >= offset)
        at = at[~(only_prior[at] & only_prior[at + offset])]  # two earlier runs' articles were settled then
        found[n : n + len(at)] = ranks[at] * total + ranks[at + offset]
        n += len(at)
    del reachable
    found = found[:n]
    found.sort()
    first = np.flatnonzero(np.concatenate(([True], found[1:] != found[:-1]))) if n else np.zeros(0, np.int64)
    shared = np.diff(np.append(first, n)).astype(np.int64)
    return found[first], shared, int(capped.sum())


def merge_pair_counts(parts: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Pair codes and shared-bucket counts of several shards, summed per pair (sorted by code)."""
    parts = list(parts)
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    codes = np.concatenate([c for c, _ in parts])
    counts = np.concatenate([n for _, n in parts])
    pairs, inverse = np.unique(codes, return_inverse=True)
    return pairs, np.bincount(inverse, weights=counts, minlength=len(pairs)).astype(np.int64)


def closest_pair_codes(pairs: np.ndarray, shared: np.ndarray, total: int, max_partners: int) -> np.ndarray:
    """`closest_partners` of every first member at once: of each first's pairs, those sharing the most buckets
    (ties: the smaller second) up to `max_partners`; the kept codes, sorted (first, then second)."""
    first, second = pairs // total, pairs % total
    order = np.lexsort((second, -shared, first))
    first_sorted = first[order]
    group_start = np.searchsorted(first_sorted, first_sorted, side="left")
    kept = order[np.arange(len(order)) - group_start < max_partners]
    return np.sort(pairs[kept])
