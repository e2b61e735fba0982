"""The array gate of near-duplicate verification (transforms/neardup/in_memory.py `_hopeless`) only skips pairs that
`is_near_copy` rejects: on real text, the verdicts with and without it are the same."""

from pathlib import Path

import pytest

from transforms.neardup import NearDedupSettings, find_near_copies, in_memory, signature_records
from transforms.neardup.candidates import candidate_key_matrix
from transforms.neardup.in_memory import _hopeless, _zero_counts, candidate_pairs
from transforms.neardup.verification import is_near_copy

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.mark.skipif(not (DATA / "extraction-dev").is_dir(), reason="../shared is absent")
@pytest.mark.parametrize("seed", [13, 7])
def test_the_gate_changes_no_verdict_on_real_text(seed, monkeypatch):
    import numpy as np

    from benchmarks.neardup_corpus import build_devset

    settings = NearDedupSettings()
    records = [r for r in signature_records(build_devset(seed=seed).articles, settings) if r is not None]
    by_id = {r.article_id: r for r in records}
    pairs = candidate_pairs(
        candidate_key_matrix(records, settings),
        [r.article_id for r in records],
        np.zeros(len(records), dtype=bool),
        settings,
        _zero_counts(),
    )
    ids = sorted(by_id)
    at = {x: i for i, x in enumerate(ids)}
    first, second = (np.array([at[pair[k]] for pair in pairs]) for k in (0, 1))
    hopeless = _hopeless(first, second, [by_id[x] for x in ids], settings)
    # Every pair the gate drops is one verification rejects, both ways round.
    for (a, b), dropped in zip(pairs, hopeless):
        if dropped:
            assert not is_near_copy(by_id[a], by_id[b], settings)[0]
            assert not is_near_copy(by_id[b], by_id[a], settings)[0]
    assert hopeless.mean() > 0.2  # it does skip work (about 29% of this dense set of copies; most on news feeds)
    # Signatures are compared a block of pairs at a time: any block size gives the same answer as one block.
    monkeypatch.setattr(in_memory, "_PAIR_BLOCK", len(pairs))
    assert (_hopeless(first, second, [by_id[x] for x in ids], settings) == hopeless).all()
    monkeypatch.setattr(in_memory, "_PAIR_BLOCK", 7)
    assert (_hopeless(first, second, [by_id[x] for x in ids], settings) == hopeless).all()

    gated = find_near_copies(records, (), settings, stats := {})
    monkeypatch.setattr(in_memory, "_hopeless", lambda first, second, records, settings: np.zeros(len(first), bool))
    ungated = find_near_copies(records, (), settings, stats_ungated := {})
    assert gated == ungated and gated
    assert stats == stats_ungated
