"""What a scale corpus (benchmarks/scale_corpus.py) holds, measured rather than taken from the generator's labels.

    from benchmarks.scale_check import cached_check, format_rates
    print(format_rates(corpus.planned_rates(), cached_check(corpus, directory)))

The exact-copy rate by content hash (newsbeam's own `content_hash`, of every article), the near-copy rate as the
share of copies whose true Jaccard similarity (or containment) with their original passes newsbeam's thresholds (on
a sample of 2,000), the true Jaccard of 2,000 random same-language pairs of originals, and how many bucket keys
(newsbeam's own LSH bands and lead keys) two unrelated originals share: the candidates that would make the
near-duplicate stage grow faster than the corpus. See scale_corpus.py's docstring for how the corpus is made.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.scale_corpus import _NO_SPACES, CODES, NEAR, NEAR_KINDS, ORIGINAL, ScaleCorpus


def check(
    corpus: ScaleCorpus, directory: Path | None = None, pairs: int = 2000, signed: int = 200_000, batch: int = 1024
) -> dict:
    """Measure the corpus (see the module doc). The content hashes come from `write` (in `directory`) or are
    computed here. The LSH keys are computed for at most `signed` originals (a random sample beyond that, with
    the near copies of the sampled ones): chance key sharing is a property of pairs, so its rate on a sample,
    times the number of pairs, is what the whole corpus holds."""
    from transforms.article import Article
    from transforms.dedup import content_hash
    from transforms.neardup import NearDedupSettings, candidate_key_matrix, shingles, signature_records

    settings = NearDedupSettings()
    started = time.perf_counter()
    n, rng = corpus.articles, np.random.default_rng(corpus.seed + 1)
    saved = directory / "content_hashes.npy" if directory else None
    if saved and saved.exists():
        hashes = np.load(saved)
    else:
        hashes = np.array(
            [int(content_hash(i.title, "\n\n".join(i.paragraphs))[:16], 16) for i in map(corpus.item, range(n))],
            dtype=np.uint64,
        )
    exact_measured = 1 - len(np.unique(hashes)) / n

    originals = np.flatnonzero(corpus.role == ORIGINAL)
    near = np.flatnonzero(corpus.role == NEAR)
    sample = originals if len(originals) <= signed else np.sort(rng.choice(originals, signed, replace=False))
    near_of_sample = near[np.isin(corpus.original[near], sample)]
    numbers = np.concatenate((sample, near_of_sample))
    keys = np.zeros((len(numbers), settings.keys_per_record), dtype=np.int64)
    row_of = {number: row for row, number in enumerate(numbers.tolist())}
    words: list[int] = []
    for start in range(0, len(numbers), batch):
        articles = []
        for number in numbers[start : start + batch].tolist():
            item = corpus.item(number)
            text = "\n\n".join(item.paragraphs)
            words.append(len(text) // 2 if item.language in _NO_SPACES else len(text.split()))
            feed_url = f"https://feed{item.feed}.example/"
            url = f"{feed_url}news/a{number}"
            articles.append(
                Article(f"a{number}", feed_url, "", url, title=item.title, text=text, language=item.language)
            )
        records = signature_records(articles, settings)
        present = [i for i, r in enumerate(records) if r is not None]
        keys[[start + i for i in present]] = candidate_key_matrix([records[i] for i in present], settings)

    # Far apart: bucket keys shared by two different sampled originals.
    flat = keys[: len(sample)].reshape(-1)
    owner = np.repeat(sample, settings.keys_per_record)
    order = np.argsort(flat, kind="stable")
    flat, owner = flat[order], owner[order]
    starts = np.flatnonzero(np.concatenate(([True], flat[1:] != flat[:-1])))
    sizes = np.diff(np.concatenate((starts, [len(flat)])))
    shared = sizes > 1
    bucket_pairs = int(np.sum(sizes[shared] * (sizes[shared] - 1) // 2))
    colliding = len(np.unique(owner[np.repeat(shared, sizes)]))
    pair_rate = bucket_pairs / max(1, len(sample) * (len(sample) - 1) // 2)
    del flat, owner, order
    near_keys = [
        bool(np.intersect1d(keys[row_of[c]], keys[row_of[int(corpus.original[c])]]).size)
        for c in near_of_sample.tolist()
    ]

    # Near copies: true Jaccard and containment with their original, on a sample.
    near_stats = []
    for number in rng.choice(near, size=min(pairs, len(near)), replace=False).tolist() if len(near) else []:
        copy, source = corpus.item(number), corpus.item(int(corpus.original[number]))
        a = shingles(source.title, "\n\n".join(source.paragraphs))
        b = shingles(copy.title, "\n\n".join(copy.paragraphs))
        common = len(a & b)
        near_stats.append((NEAR_KINDS[corpus.kind[number]], common / len(a | b), common / len(b)))
    passing = [j >= settings.threshold or c >= settings.containment for _, j, c in near_stats]

    # Random pairs of originals in one language: their true Jaccard.
    far = []
    by_language = {i: originals[corpus.language[originals] == i] for i in range(len(CODES))}
    for _ in range(pairs):
        group = by_language[int(corpus.language[originals[rng.integers(len(originals))]])]
        if len(group) < 2:
            continue
        x, y = rng.choice(group, size=2, replace=False).tolist()
        ix, iy = corpus.item(x), corpus.item(y)
        a = shingles(ix.title, "\n\n".join(ix.paragraphs))
        b = shingles(iy.title, "\n\n".join(iy.paragraphs))
        far.append(len(a & b) / len(a | b))

    def quantiles(values: list[float]) -> dict:
        if not values:
            return {}
        q = np.quantile(values, [0.0, 0.1, 0.5, 0.9, 0.99, 1.0])
        return dict(zip(("min", "p10", "median", "p90", "p99", "max"), (round(float(v), 4) for v in q)))

    return {
        "articles": n,
        "exact_copy_rate_by_content_hash": round(exact_measured, 4),
        "near_copy_label_rate": round(len(near) / n, 4),
        "near_copies_sampled": len(near_stats),
        "near_copies_passing_thresholds": round(float(np.mean(passing)), 4) if passing else None,
        "near_copy_rate_measured": round(len(near) / n * float(np.mean(passing)), 4) if passing else 0.0,
        "near_copy_jaccard": quantiles([j for _, j, _ in near_stats]),
        "near_copy_containment": quantiles([c for _, _, c in near_stats]),
        "near_copy_jaccard_by_kind": {
            k: round(statistics.median([j for kk, j, _ in near_stats if kk == k]), 3)
            for k in NEAR_KINDS
            if any(kk == k for kk, _, _ in near_stats)
        },
        "near_copies_sharing_a_bucket_key": round(float(np.mean(near_keys)), 4) if near_keys else None,
        "far_pairs_sampled": len(far),
        "far_pair_jaccard": quantiles(far),
        "originals": len(originals),
        "originals_signed": len(sample),
        "far_bucket_pairs": bucket_pairs,
        "far_bucket_pairs_per_1000_signed": round(1000 * bucket_pairs / max(1, len(sample)), 3),
        "signed_sharing_any_key_per_1000": round(1000 * colliding / max(1, len(sample)), 3),
        # What all the originals hold at this pair rate: per original, pair_rate x (originals - 1) / 2.
        "far_bucket_pairs_per_1000_originals": round(1000 * pair_rate * (len(originals) - 1) / 2, 3),
        "words_per_article": quantiles(words),
        "check_seconds": round(time.perf_counter() - started, 1),
    }


def cached_check(corpus: ScaleCorpus, directory: Path) -> dict:
    """`corpus.check()`, kept beside the feeds it measured (it signs every article: minutes at a million)."""
    path = directory / "check.json"
    if path.exists():
        return json.loads(path.read_text())
    result = check(corpus, directory)
    path.write_text(json.dumps(result, indent=1))
    return result


def format_rates(planned: dict, checked: dict | None) -> str:
    """The rates, as the benchmark prints them."""
    lines = [
        f"corpus: {planned['articles']:,} articles in {planned['feeds']:,} feeds; planned "
        f"{planned['exact_copies']:.2%} exact copies, {planned['near_copies']:.2%} near copies "
        f"({', '.join(f'{k} {v:,}' for k, v in planned['near_kinds'].items())}); languages "
        + " ".join(f"{c} {s:.1%}" for c, s in planned["languages"].items())
    ]
    if checked:
        c = checked
        lines += [
            f"  measured: exact copies by content hash {c['exact_copy_rate_by_content_hash']:.2%}; near copies "
            f"{c['near_copy_rate_measured']:.2%} ({c['near_copies_passing_thresholds']:.1%} of {c['near_copies_sampled']:,} "
            f"sampled pass newsbeam's Jaccard/containment thresholds; true Jaccard {c['near_copy_jaccard']}, by kind "
            f"{c['near_copy_jaccard_by_kind']}; {c['near_copies_sharing_a_bucket_key']:.1%} share an LSH bucket key "
            f"with their original)",
            f"  far apart: true Jaccard of {c['far_pairs_sampled']:,} random same-language pairs {c['far_pair_jaccard']}; "
            f"LSH bucket pairs between unrelated originals: {c['far_bucket_pairs']:,} among {c['originals_signed']:,} "
            f"signed ({c['far_bucket_pairs_per_1000_signed']} per 1,000 of them; {c['signed_sharing_any_key_per_1000']} "
            f"per 1,000 share any key); at this pair rate all {c['originals']:,} originals hold "
            f"{c['far_bucket_pairs_per_1000_originals']} per 1,000",
            f"  words per article {c['words_per_article']} (check took {c['check_seconds']} s)",
        ]
    return "\n".join(lines)
