"""The batch plane's near-duplicate decisions on arrays (pipeline/plane/near.py: pairs merged a range of first ranks
at a time, links as arrays, transforms/neardup/stars.py) give what the object path gives (`find_near_copies`,
`verdicts_of_links`), on rows repeated as a feed of repeated rows repeats them: big clusters, capped buckets, prior
signatures, ties."""

import dataclasses
import datetime as dt
import random

import numpy as np
import pyarrow as pa
import pytest

import pipeline.plane.near as near
from tests.plane import run_plane
from tests.transforms import neardup_texts as texts
from tests.transforms.test_neardup import BUDGET, BUDGET_OTHER_STORY, NO_EXACT_DEDUP, REACTIONS, T0, art
from transforms.dedup import DedupSettings
from transforms.neardup import (
    SIGNATURE_SCHEMA,
    Link,
    Member,
    NearDedupSettings,
    find_near_copies,
    signature_from_row,
    signature_records,
    signature_row,
)
from transforms.neardup.in_memory import verdicts_of_links
from transforms.neardup.records import run_records
from transforms.neardup.stars import LinkArrays, MemberColumns, verdicts_of_link_arrays

BASES = [
    ("Northbridge council approves budget", BUDGET),
    ("Northbridge council delays depot sale", BUDGET_OTHER_STORY),
    ("Reactions to the budget", REACTIONS),
    ("Valley villages evacuated", texts.WIRE),
    ("Flood relief in the valley", texts.edited(texts.WIRE, 0.1, seed=3)),
]
HOSTS = ["wire.test", "ledger.test", "post.test", "herald.test"]


def repeated_rows(n: int, start: int = 0) -> list:
    """`n` articles, each a base story cut to another length (as benchmarks/hostile.py's feed repeats AG News rows),
    from four outlets, with published times shared by three."""
    out = []
    for i in range(start, start + n):
        title, paragraphs = BASES[i % len(BASES)]
        words = " ".join(paragraphs).split()
        cut = max(12, len(words) - (i // len(BASES)) * 7)
        out.append(
            art(f"row{i:04d}", " ".join(words[:cut]), title=title, minutes=i // 3, host=HOSTS[(i // 2) % len(HOSTS)])
        )
    return out


def test_the_plane_on_repeated_rows_decides_as_find_near_copies(tmp_path, monkeypatch):
    # Small blocks, shards and merge ranges, so that every one of them comes in many pieces.
    monkeypatch.setattr(near, "BLOCK_ROWS", 16)
    monkeypatch.setattr(near, "SHARD_ENTRIES", 512)
    monkeypatch.setattr(near, "PAIR_ENTRIES", 40)
    monkeypatch.setattr(near, "PAIR_CELLS", 64)
    monkeypatch.setattr(near, "_ROWS_AT_ONCE", 5)
    settings = NearDedupSettings(mode="mark", max_bucket_size=6, bucket_window=2, max_partners=4)
    current = repeated_rows(200)
    earlier = [r for r in signature_records(repeated_rows(40, start=200), settings) if r is not None]
    # Prior signatures as the run state keeps them: some kept as their own canonical, some pointing at another.
    prior = [
        signature_from_row(signature_row(dataclasses.replace(r, canonical_id="row0003" if i % 3 == 0 else "")))
        for i, r in enumerate(earlier)
    ]
    stats: dict = {}
    expected = find_near_copies(signature_records(current, settings), prior, settings, stats)
    sizes = sorted((v.cluster_size for v in expected.values()), reverse=True)
    assert sizes[0] >= 20 and stats["buckets_capped"] > 0  # big clusters, capped buckets
    assert any(v.matched_prior for v in expected.values()) and any(v.revision for v in expected.values())
    result = run_plane(tmp_path, current, settings, NO_EXACT_DEDUP, prior=prior, chunk_size=37)
    found = {
        r["article_id"]: (r["cluster_id"], r["cluster_size"], r["duplicate_of"]) for r in result.rows if r["cluster_id"]
    }
    assert found == {
        k: (v.cluster_id, v.cluster_size, "" if v.is_canonical else v.canonical_id) for k, v in expected.items()
    }
    counted = result.counters["neardup"]
    for name in ("candidate_pairs", "pairs_verified", "buckets_capped"):
        assert counted[name] == stats[name], name


def _member(rng: random.Random, article_id: str) -> Member:
    prior = rng.random() < 0.2
    published = None if rng.random() < 0.1 else T0 + dt.timedelta(minutes=rng.randrange(5))
    return Member(
        article_id,
        prior,
        published,
        rng.choice([100, 200, 200, 300]),
        rng.choice(["", "a.test", "b.test"]),
        article_id if not prior or rng.random() < 0.5 else f"kept-{rng.randrange(3)}",
    )


@pytest.mark.parametrize("seed", range(6))
def test_star_clusters_on_arrays_give_the_verdicts_of_links(seed):
    # Random links among few members, so that members have many links: equal scores, scores at follow_copies,
    # priors (canonical or pointing at another article), dates missing or shared, links either way round.
    rng = random.Random(seed)
    ids = sorted({f"m{rng.randrange(10_000):05d}" for _ in range(60)})
    members = [_member(rng, x) for x in ids]
    links = []
    for _ in range(400):
        a, b = rng.sample(range(len(ids)), 2)
        links.append((a, b, rng.choice([0.3, 0.5, 0.5, 0.7, 0.9, 1.0, rng.random()])))
    follow = 0.5
    counts = {"clusters": 0}
    expected = verdicts_of_links([Link(members[a], members[b], s) for a, b, s in links], NearDedupSettings(), counts)
    columns = MemberColumns(len(ids))
    for number, member in enumerate(members):
        columns.add(number, member)
    arrays = LinkArrays(*(np.array(x) for x in zip(*links)))
    array_counts = {"clusters": 0}
    numbers, verdicts = verdicts_of_link_arrays(arrays, columns, ids.__getitem__, follow, array_counts)
    assert NearDedupSettings().follow_copies == follow
    assert dict(zip((ids[n] for n in numbers.tolist()), verdicts)) == expected
    assert array_counts == counts and counts["clusters"] > 3


def test_run_records_are_the_records_of_the_rows():
    # What near.py makes of a block's rows column by column: signature_from_row of each row, as a run's record.
    records = [r for r in signature_records(repeated_rows(5), NearDedupSettings()) if r is not None]
    rows = [signature_row(r) for r in records]
    rows[1].update(language=None, facts=None, lead=None, outlet=None, text_length=None)
    rows[2].update(published_at=None)
    rows[3].update(published_at=dt.datetime(2026, 11, 20, 8))  # naive: read as UTC
    table = pa.Table.from_pylist(rows, SIGNATURE_SCHEMA).drop_columns(["canonical_id", "scheme"])
    expected = [dataclasses.replace(signature_from_row(row), prior=False, canonical_id="", scheme="s1") for row in rows]
    assert run_records(table, "s1") == expected


def test_no_candidates_no_verdicts(tmp_path):
    unrelated = [art(f"u{i}", " ".join(BASES[i][1]), title=BASES[i][0]) for i in (0, 2, 3)]
    result = run_plane(tmp_path, unrelated, NearDedupSettings(mode="mark"), DedupSettings())
    assert not any(r["cluster_id"] for r in result.rows)
