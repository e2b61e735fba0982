"""DeduplicateNearCopies: shingles, signatures, similarity, the canonical choice, the composite on small clusters."""

import collections
import dataclasses
import datetime as dt
import os
import pickle
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import art as base_art
from tests.plane import run_plane
from tests.transforms import neardup_texts as texts
from transforms.article import Article, stable_id
from transforms.clock import UTC
from transforms.dedup import DedupSettings
from transforms.neardup import (
    SIGNATURE_SCHEMA,
    Link,
    Member,
    NearDedupSettings,
    band_keys,
    bucket_pairs,
    candidate_key_matrix,
    candidate_keys,
    cluster_verdicts,
    facts_agree,
    find_near_copies,
    has_signature,
    hashing,
    is_near_copy,
    lead_keys,
    lookback_patterns,
    minhash_signature,
    minhash_signatures,
    outlet_of,
    shingles,
    signature_from_row,
    signature_records,
    signature_row,
    similarity,
    star_clusters,
    words,
)
from transforms.neardup.candidates import candidate_key_arrays, closest_partners
from transforms.neardup.in_memory import candidate_pairs

T0 = dt.datetime(2026, 11, 20, 8, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]

# A wire story, then what outlets and editors make of it.
BUDGET = [
    "The city council of Northbridge voted 7 to 2 on Tuesday to approve a budget of 48 million euros for the coming "
    "year, after a debate that lasted more than four hours.",
    "Mayor Helen Carter said the plan would pay for 120 new teachers and the repair of 35 kilometres of roads in the "
    "eastern districts, where potholes have been a complaint for years.",
    "Opposition leader Tom Reyes argued that a tax increase of 3 percent would hurt small shops in the old town and "
    "said his group would ask for a review of the spending on consultants.",
    "The budget also sets aside 6 million euros for flood defences along the river Lark, which burst its banks twice "
    "last winter and flooded more than 200 homes near the railway station.",
    "Residents who attended the session applauded when the result was announced, and several of them stayed to talk "
    "to the mayor about the plans for the new library on Market Street.",
    "The new budget takes effect on January 1 and will be reviewed by the finance committee in June, when the first "
    "figures for tax income are due.",
]

# The same event, the same people and places, other facts: a different story.
BUDGET_OTHER_STORY = [
    "Northbridge council delayed on Tuesday a decision on the sale of the old bus depot, which Mayor Helen Carter "
    "wants to turn into 90 affordable flats by 2029.",
    "Tom Reyes, who leads the opposition, said the council should first publish the 2 offers it received for the "
    "site and asked for an independent valuation before any vote.",
    "The depot near the river Lark has stood empty since 2019 and costs the city about 400,000 euros a year to "
    "secure and maintain, according to a report presented to councillors.",
    "A decision is now expected in March, after a public consultation that will run for 6 weeks and include two "
    "meetings at the town hall on Market Street.",
]

# Follow-up paragraphs that a running story picks up.
REACTIONS = [
    "The chamber of commerce welcomed the money for roads but warned that the parking charges planned for the "
    "second half of the year could keep shoppers away from the centre at the busiest time.",
    "Teachers' unions said the new posts were overdue and asked the council to publish a timetable for hiring, "
    "since several schools have been running classes with temporary staff since September.",
    "A spokesperson for the regional government said it would study the flood plan and could contribute to the "
    "cost of the new barriers if the council submits a formal request before the spring.",
    "Local environmental groups criticised the decision to cut funding for the cycle lanes that were promised "
    "during the last election campaign and called for a public meeting to discuss it.",
]

LEDGER_FURNITURE = "Sign up for the Daily Ledger newsletter and get the news of the region every morning."


def story(paragraphs, edits=()):
    """The paragraphs as one text, with (paragraph, old, new) replacements."""
    paragraphs = list(paragraphs)
    for index, old, new in edits:
        assert old in paragraphs[index], old
        paragraphs[index] = paragraphs[index].replace(old, new)
    return "\n\n".join(paragraphs)


def art(article_id, text, title="Northbridge approves budget", minutes=0, language="en", host="ledger.test", **kw):
    return base_art(
        article_id,
        published_at=T0 + dt.timedelta(minutes=minutes),
        feed_url=f"https://{host}/rss",
        source=host,
        url=f"https://{host}/{article_id}",
        title=title,
        text=text,
        language=language,
        **kw,
    )


ORIGINAL = art("wire", story(BUDGET), title="Northbridge council approves 48 million euro budget", host="wire.test")
SYNDICATED = art(
    "syndicated",
    story(
        BUDGET[:5],
        [
            (1, "Mayor Helen Carter said", "According to Mayor Helen Carter,"),
            (2, "hurt small shops", "hit small businesses"),
        ],
    )
    + "\n\n"
    + LEDGER_FURNITURE,
    title="Council backs budget after four-hour debate",
    minutes=45,
    host="ledger.test",
)
OTHER_STORY = art(
    "other-story",
    story(BUDGET_OTHER_STORY),
    title="Northbridge council delays depot sale",
    minutes=30,
    host="post.test",
)


def record(article, settings=NearDedupSettings()):
    return signature_records([article], settings)[0]


# --- pure functions --------------------------------------------------------------------------------------------


def test_words_normalise_case_punctuation_and_width():
    assert words("Hello, WORLD!", "It's 2,500\u00a0km - ok.") == ["hello", "world", "it", "s", "2", "500", "km", "ok"]
    assert words("", "Ｆｕｌｌ ｗｉｄｔｈ Café") == ["full", "width", "café"]  # NFKC
    assert words("東京都", "") == ["東", "京", "都"]  # no spaces in the script: one token per character


def test_shingles_are_word_triples_or_the_whole_short_text():
    assert shingles("a b", "c d", 3) == {("a", "b", "c"), ("b", "c", "d")}
    assert shingles("Only two", "", 3) == {("only", "two")}
    assert shingles("", "", 3) == set()


def test_signature_estimates_jaccard_similarity():
    a_title, a_text = ORIGINAL.title, ORIGINAL.text
    for other in (SYNDICATED, OTHER_STORY):
        a, b = shingles(a_title, a_text), shingles(other.title, other.text)
        exact = len(a & b) / len(a | b)
        estimate = similarity(minhash_signature(a_title, a_text), minhash_signature(other.title, other.text))
        assert abs(estimate - exact) < 0.12, (estimate, exact)
    assert similarity(minhash_signature(a_title, a_text), minhash_signature(a_title.upper(), a_text + " ")) == 1.0


def test_signature_does_not_depend_on_the_batch_or_the_process():
    docs = [(a.title, a.text) for a in (ORIGINAL, SYNDICATED, OTHER_STORY)] + [("", ""), ("東京", "ünal")]
    batch = minhash_signatures(docs)
    for i, doc in enumerate(docs):
        assert np.array_equal(batch[i], minhash_signature(*doc))
    # Python's own str hash changes with PYTHONHASHSEED; these signatures must not (workers and runs must agree).
    code = (
        "from tests.transforms.test_neardup import ORIGINAL as a\n"
        "from transforms.neardup import minhash_signature as m\n"
        "print(m(a.title, a.text)[:8].tolist())"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == str(batch[0][:8].tolist())


def test_signatures_of_short_texts_are_the_same_densified_in_blocks(monkeypatch):
    # Headlines of one to five words leave most bins empty: the draws that fill them are made a block at a time.
    rng = random.Random(3)
    words = "storm market vote league court river festival bank".split()
    docs = [(" ".join(rng.choices(words, k=rng.randint(1, 5))), "") for _ in range(300)]
    monkeypatch.setattr(hashing, "_DENSIFY_CELLS", 1 << 40)  # one block
    whole = minhash_signatures(docs)
    monkeypatch.setattr(hashing, "_DENSIFY_CELLS", 5000)  # blocks of 312 bins, then of 4
    assert np.array_equal(minhash_signatures(docs), whole)
    assert (whole != 0xFFFFFFFF).all()


def test_text_without_words_has_no_signature():
    assert not has_signature(minhash_signature("", " -- ! "))
    assert signature_records([art("empty", "", title="...")]) == [None]
    assert has_signature(minhash_signature("One", ""))


def test_facts_agree_on_shared_names_and_on_figures_after_the_same_words():
    names = lambda *xs: [2 * x for x in xs]  # noqa: E731 (a name's fact hash is even)
    # A figure's hash is odd, with the word before it in the top 16 bits.
    figures = lambda *pairs: [(word << 16) | (value << 1) | 1 for word, value in pairs]  # noqa: E731
    facts = lambda *xs: np.array(sorted(sum(xs, [])), dtype="<u4").tobytes()  # noqa: E731
    a = facts(names(1, 2, 3, 4, 5), figures((1, 10), (2, 20), (3, 30)))
    assert facts_agree(a, facts(names(1, 2, 3, 9), figures((1, 10), (2, 20))), 0.6, 3, 0.5, 1)
    assert not facts_agree(a, facts(names(1, 7, 8, 9), figures((1, 10))), 0.6, 3, 0.5, 1)  # other names
    # The same words before other figures: a template story.
    assert not facts_agree(a, facts(names(1, 2, 3, 4), figures((1, 11), (2, 21))), 0.6, 3, 0.5, 1)
    # Figures after words the other text does not have (a local paragraph) say nothing either way.
    assert facts_agree(a, facts(names(1, 2, 3, 4), figures((1, 10), (7, 70), (8, 80))), 0.6, 3, 0.5, 1)
    assert facts_agree(a, facts(names(7, 8), figures((9, 90))), 0.6, 3, 0.5, 1)  # too few of either to judge
    assert facts_agree(a, facts(names(1, 2, 3, 4), figures((1, 11))), 0.6, 3, 0.0, 1)  # the figures check is off


def test_figures_are_compared_between_the_same_words():
    def facts(text):
        return signature_records([art("x", text)])[0].facts

    def agree(a, b):
        return facts_agree(facts(a), facts(b), 0.0, 3, 0.5, 1)

    friday = "The index rose 3 percent to 5,432 points. Banks gained 2 percent and AD600 bonds fell."
    # A template: the same words around other figures (a code with a digit in it changed too).
    assert not agree(friday, "The index rose 4 percent to 5,611 points. Banks gained 1 percent and AD458 bonds fell.")
    assert agree(friday, friday.replace("Banks gained", "Lenders gained"))  # a copy with a word edited
    # A local paragraph's figure that only shares the word before it with the story is another context, not a
    # disagreement (compared by the word before alone, it cost cut copies their match).
    assert agree("The bridge was built in 2019 when the river rose.", "The school opened in 2020 the mayor said.")
    assert not agree("The bridge was built in 2019 when the river rose.", "The bridge was built in 2018 when it rose.")


def test_lead_keys_are_a_fixed_number_drawn_from_the_top_of_the_text():
    settings = NearDedupSettings()
    original, syndicated = record(ORIGINAL), record(SYNDICATED)
    keys = lead_keys(original, 8)
    assert len(keys) == len(set(keys)) == 8 and keys == lead_keys(original, 8)  # the same on every worker
    assert all(-(1 << 63) <= k < 1 << 63 for k in keys)  # signed 64-bit, as band keys
    assert len(set(keys) & set(lead_keys(syndicated, 8))) >= 4  # a copy with furniture: mostly the same top
    assert not set(keys) & set(lead_keys(record(OTHER_STORY), 8))
    # Always `keys_per_record`: a text too short for 8 lead keys is padded with keys of its own.
    short_a, short_b = record(art("a", "Budget passed.")), record(art("b", "Budget passed."))
    assert len(candidate_keys(short_a, settings)) == settings.keys_per_record == settings.bands + 8
    assert not set(lead_keys(short_a, 8)) & set(lead_keys(short_b, 8))
    assert candidate_keys(original, settings)[: settings.bands] == band_keys(original.values(), "en", settings.bands)
    assert candidate_keys(original, NearDedupSettings(lead_keys=0)) == band_keys(original.values(), "en", 64)
    # A batch gives each record the keys it gets alone (the composite keys records a batch at a time).
    batch = [original, short_a, syndicated, short_b]
    assert candidate_key_matrix(batch, settings).tolist() == [candidate_keys(r, settings) for r in batch]


def test_an_article_is_verified_against_the_candidates_sharing_most_buckets_first():
    # One entry per shared bucket: "b" shares three, "c" two, "a" and "d" one each (ties by id).
    partners = ["d", "b", "c", "b", "a", "c", "b"]
    assert closest_partners(partners, 32) == ["b", "c", "a", "d"]
    assert closest_partners(partners, 2) == ["b", "c"]
    with pytest.raises(ValueError, match="max_partners"):
        NearDedupSettings(max_partners=0)


def test_a_record_survives_pickling_whole():
    # Records are pickled for every candidate pair they are in (a tuple of values, not the default reduction).
    original = dataclasses.replace(record(ORIGINAL), prior=True, canonical_id="x", outlet="wire.test")
    again = pickle.loads(pickle.dumps(original))
    assert again == original and type(again) is type(original) and again.values().tolist() == original.values().tolist()


def test_sharded_candidate_pairs_are_those_of_one_sort_of_all_keys():
    # The decision step sorts one shard of the keys at a time (key % shards): the pairs must be the same.
    settings = NearDedupSettings()
    records = [record(a) for a in (ORIGINAL, SYNDICATED, OTHER_STORY, CHAIN_A, CHAIN_B, art("a", "Budget passed."))]
    keys = candidate_key_matrix(records, settings)
    ids = [r.article_id for r in records]
    prior = np.array([False] * (len(records) - 1) + [True])
    expected = candidate_pairs(keys, ids, prior, settings, shards=1)
    assert expected  # the copies share buckets
    for shards in (3, 32):
        assert candidate_pairs(keys, ids, prior, settings, shards=shards) == expected


def _pairs_bucket_by_bucket(keys, ids, prior, settings):
    """The candidate pairs as the per-bucket loop made them: every bucket through bucket_pairs, then each first
    id's closest_partners: what the sorting in candidate_pairs must give."""
    buckets: dict[int, list[tuple[str, bool]]] = {}
    for row, row_keys in enumerate(keys.tolist()):
        for key in row_keys:
            buckets.setdefault(key, []).append((ids[row], bool(prior[row])))
    partners: dict[str, list[str]] = {}
    capped_buckets = 0
    for members in buckets.values():
        if len(members) < 2:
            continue
        found, capped = bucket_pairs(members, settings.max_bucket_size, settings.bucket_window)
        capped_buckets += capped
        for first, second in found:
            partners.setdefault(first, []).append(second)
    pairs = sorted((a, b) for a, others in partners.items() for b in closest_partners(others, settings.max_partners))
    return pairs, capped_buckets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_candidate_pairs_by_sorting_are_those_of_the_bucket_loop(seed):
    # Few distinct keys, so buckets of every size: pairs of two, full buckets, capped ones (paired with their next
    # neighbours only), ids under one key twice, prior members (never paired with each other), an id both current
    # and prior, and more partners than an article keeps.
    rng = np.random.default_rng(seed)
    settings = NearDedupSettings(max_bucket_size=6, bucket_window=2, max_partners=3)
    n = 120
    ids = [f"id{int(x):03d}" for x in rng.integers(0, 100, n)]
    prior = rng.random(n) < 0.3
    keys = rng.integers(-40, 40, size=(n, 5)) * 7919 + rng.integers(0, 2, size=(n, 5)) * 2**40
    counts = {"candidate_pairs": 0, "pairs_verified": 0, "buckets_capped": 0, "clusters": 0}
    expected, capped = _pairs_bucket_by_bucket(keys, ids, prior, settings)
    assert len(expected) > 100 and capped > 0
    assert candidate_pairs(keys, ids, prior, settings, counts) == expected
    assert counts["buckets_capped"] == capped


def test_key_columns_give_the_keys_of_the_records():
    # The decision step computes bucket keys from staged columns, never from records: the same keys.
    settings = NearDedupSettings()
    records = [record(a) for a in (ORIGINAL, SYNDICATED, OTHER_STORY, art("a", "Budget passed."))]
    from_columns = candidate_key_arrays(
        np.stack([r.values() for r in records]),
        [r.language for r in records],
        [r.lead for r in records],
        [r.article_id for r in records],
        settings,
    )
    assert np.array_equal(from_columns, candidate_key_matrix(records, settings))


def test_the_batch_plane_finds_what_find_near_copies_finds(tmp_path):
    articles = [ORIGINAL, SYNDICATED, OTHER_STORY, CHAIN_A, CHAIN_B, CHAIN_C, *SYNDICATION]
    prior = [signature_from_row(signature_row(r)) for r in signature_records([MARKET_FRIDAY])]
    current = [a for a in articles if a.article_id != "market-fri"]
    expected = find_near_copies(signature_records(current), prior)
    assert len(expected) >= 6
    result = run_plane(tmp_path, current, NearDedupSettings(mode="mark"), NO_EXACT_DEDUP, prior=prior, chunk_size=3)
    found = {
        r["article_id"]: (r["cluster_id"], r["cluster_size"], r["duplicate_of"]) for r in result.rows if r["cluster_id"]
    }
    assert found == {
        k: (v.cluster_id, v.cluster_size, "" if v.is_canonical else v.canonical_id) for k, v in expected.items()
    }


LONG_WIRE = art("long-wire", texts.long_wire()[1], title=texts.long_wire()[0], host="wire.test")
CUT_TO_LEAD = art("cut-to-lead", texts.cut_to_lead()[1], title=texts.cut_to_lead()[0], minutes=60, host="region.test")
# 16 bands of 8 rows: a pair at Jaccard 0.1 shares none, so only the lead keys make it a candidate.
WIDE_BANDS = NearDedupSettings(bands=16)


def test_a_copy_cut_to_its_lead_becomes_a_candidate_through_its_lead_keys():
    wire, cut = signature_records([LONG_WIRE, CUT_TO_LEAD], WIDE_BANDS)
    assert similarity(wire.values(), cut.values()) < 0.15
    assert not set(band_keys(wire.values(), "en", 16)) & set(band_keys(cut.values(), "en", 16))
    assert set(lead_keys(wire, 8)) & set(lead_keys(cut, 8)) and is_near_copy(wire, cut, WIDE_BANDS)[0]
    assert find_near_copies([wire, cut], (), dataclasses.replace(WIDE_BANDS, lead_keys=0)) == {}
    verdicts = find_near_copies([wire, cut], (), WIDE_BANDS)
    assert verdicts["cut-to-lead"].canonical_id == "long-wire" and not verdicts["cut-to-lead"].is_canonical
    # The composite, within a run and against the signature of an earlier run's article.
    state = [signature_from_row(signature_row(wire))]
    near, _ = run_all(
        [
            dict(
                articles=[LONG_WIRE, CUT_TO_LEAD],
                settings=WIDE_BANDS,
                rows=[("long-wire", cluster("long-wire"), 2, "")],
            ),
            dict(articles=[CUT_TO_LEAD], settings=WIDE_BANDS, prior=state, rows=[]),
        ]
    )
    assert near["copies_dropped"] == 2 and near["matched_prior"] == 1


def test_is_near_copy_rules():
    settings = NearDedupSettings()
    original, syndicated, other = record(ORIGINAL), record(SYNDICATED), record(OTHER_STORY)
    assert is_near_copy(original, syndicated, settings)[0]
    assert not is_near_copy(original, other, settings)[0]  # same event and names, other facts
    # Signatures made with other settings (a run state from before a change) are never compared.
    assert not is_near_copy(original, dataclasses.replace(syndicated, scheme="minhash-oph1-p256"), settings)[0]
    # Another language never matches, whatever the text.
    assert not is_near_copy(original, dataclasses.replace(original, article_id="de", language="de"), settings)[0]
    # Short texts need more: the same similarity that makes two articles copies is not enough for two titles.
    score = is_near_copy(original, syndicated, settings)[1]
    short = dataclasses.replace(syndicated, word_count=settings.min_words - 1)
    assert not is_near_copy(original, short, dataclasses.replace(settings, short_threshold=min(1.0, score + 0.01)))[0]
    # Two articles of one outlet share its furniture: they need more too.
    same_outlet = dataclasses.replace(syndicated, outlet=original.outlet)
    assert not is_near_copy(
        original, same_outlet, dataclasses.replace(settings, same_outlet_threshold=min(1.0, score + 0.01))
    )[0]
    # The same template about another town: other names, other figures.
    swaps = {
        "Northbridge": "Southport",
        "Helen Carter": "Ann Moss",
        "Tom Reyes": "Ian Wu",
        "Lark": "Tame",
        "Market Street": "High Street",
        "48": "51",
        "120": "80",
        "35": "12",
        "6 million": "9 million",
        "200": "90",
        "7 to 2": "5 to 4",
        "3 percent": "2 percent",
        "four": "three",
    }
    template = story(BUDGET)
    for old, new in swaps.items():
        template = template.replace(old, new)
    templated = record(
        art("template", template, title=ORIGINAL.title.replace("Northbridge", "Southport"), host="x.test")
    )
    assert similarity(original.values(), templated.values()) >= settings.threshold
    assert not is_near_copy(original, templated, settings)[0]


def test_title_only_entries_need_nearly_the_same_words():
    one = record(art("t1", "", title="Northbridge council approves 48 million euro budget after long debate"))
    other = record(art("t2", "", title="Northbridge council approves 48 million euro budget after short debate"))
    same = record(art("t3", "", title="Northbridge council approves 48 million euro budget after long debate!"))
    assert one.word_count < NearDedupSettings().min_words
    assert similarity(one.values(), other.values()) >= NearDedupSettings().threshold
    assert not is_near_copy(one, other)[0] and is_near_copy(one, same)[0]


def test_bucket_pairs_all_pairs_or_capped_neighbours():
    members = [(f"a{i}", False) for i in range(5)]
    pairs, capped = bucket_pairs(members, max_bucket_size=5, window=1)
    assert len(pairs) == 10 and not capped
    pairs, capped = bucket_pairs(members * 2, max_bucket_size=4, window=2)  # duplicates count once
    assert capped and pairs == [
        ("a0", "a1"),
        ("a0", "a2"),
        ("a1", "a2"),
        ("a1", "a3"),
        ("a2", "a3"),
        ("a2", "a4"),
        ("a3", "a4"),
    ]
    big = [(f"b{i:05d}", False) for i in range(10_000)]
    pairs, capped = bucket_pairs(big, max_bucket_size=64, window=4)
    assert capped and len(pairs) < 4 * len(big)  # linear, never quadratic
    # Two prior members are never a pair; an id that is both current and prior is current.
    pairs, _ = bucket_pairs([("p1", True), ("p2", True), ("c", False), ("p2", False)], 64, 4)
    assert pairs == [("c", "p1"), ("c", "p2"), ("p1", "p2")]
    pairs, _ = bucket_pairs([("p1", True), ("p2", True), ("c", False)], 64, 4)
    assert pairs == [("c", "p1"), ("c", "p2")]


def test_star_clusters_do_not_chain_through_a_partial_match_and_ignore_the_order():
    y, copy_of_y, x, x_copy = member("y", 0), member("yc", 30), member("x", 60), member("xc", 90)
    links = [
        Link(y, copy_of_y, 0.8),
        Link(copy_of_y, x, 0.5),  # x, published later, shares a paragraph with y's copy
        Link(x, x_copy, 0.9),
        Link(y, x_copy, 0.3),  # a weaker match: the copy joins the canonical it copies best
        Link(copy_of_y, member("ycc", 40), 0.95),  # a copy of the copy, nearly the same text: y's cluster
    ]
    expected = [[x, x_copy], [y, copy_of_y, member("ycc", 40)]]
    for seed in range(4):
        shuffled = list(links)
        random.Random(seed).shuffle(shuffled)
        assert star_clusters(shuffled, follow_copies=0.7) == expected
    # A prior copy is no canonical: a partial copy of it stays apart, a near-identical one joins what its run kept.
    old_copy, new = member("old-copy", -60, prior=True, canonical="old"), member("new", 0)
    assert star_clusters([Link(old_copy, new, 0.5)], follow_copies=0.7) == []
    assert star_clusters([Link(old_copy, new, 0.9)], follow_copies=0.7) == [[new, old_copy]]
    assert cluster_verdicts([new, old_copy])["new"].canonical_id == "old"
    old = member("old", -90, prior=True)
    assert star_clusters([Link(old, new, 0.5)], follow_copies=0.7) == [[new, old]]


def member(article_id, minutes, length=100, prior=False, outlet="o.test", canonical=""):
    return Member(article_id, prior, T0 + dt.timedelta(minutes=minutes), length, outlet, canonical or article_id)


def test_canonical_is_earliest_then_longest_then_smallest_id():
    verdicts = cluster_verdicts(
        [member("b", 5), member("a", 10), member("c", 5, length=200), member("d", 5, length=200)]
    )
    assert {v.canonical_id for v in verdicts.values()} == {"c"}
    assert verdicts["c"].is_canonical and not verdicts["d"].is_canonical
    assert verdicts["a"].cluster_size == 4 and verdicts["a"].cluster_id == stable_id("neardup", "c")
    assert all(v.revision for k, v in verdicts.items() if k != "c")  # all from one outlet


def test_a_prior_member_is_canonical_and_never_given_a_verdict():
    verdicts = cluster_verdicts(
        [member("new", -60, outlet="a.test"), member("old", 0, prior=True, outlet="b.test", canonical="first")]
    )
    assert set(verdicts) == {"new"}  # published earlier, but the prior one was already written
    new = verdicts["new"]
    assert new.canonical_id == "first" and not new.is_canonical and new.matched_prior and not new.revision
    assert new.cluster_id == stable_id("neardup", "first")  # the cluster id of the earlier run


def test_settings_are_validated():
    with pytest.raises(ValueError, match="mode"):
        NearDedupSettings(mode="keep")
    with pytest.raises(ValueError, match="bands"):
        NearDedupSettings(num_perm=128, bands=48)
    with pytest.raises(ValueError, match="power of two"):
        NearDedupSettings(num_perm=100, bands=10)


def test_outlet_is_the_host_without_www_and_the_feed():
    www = dataclasses.replace(art("x", "t"), url="https://www.ledger.test/x")
    assert outlet_of(www) == outlet_of(art("y", "t"))  # a revision: same host, same feed
    no_link = Article(article_id="x", feed_url="https://feeds.f.test/rss", source="f")
    assert outlet_of(no_link).startswith("feeds.f.test")
    # A wire link in another outlet's feed (or every link on one host): not one outlet.
    wire_link = dataclasses.replace(art("z", "t", host="paper.test"), url="https://ledger.test/z?utm_source=wire")
    assert outlet_of(wire_link) != outlet_of(art("y", "t"))
    # URLs off the fast path's plain form go to urlsplit: the host is the same either way.
    for url in (
        "HTTP://www.News.Test.:8080/a?b#c",
        "http://user@n.test/",
        "http://[::1]/",
        "//n.test/x",
        "mailto:a@n.test",
    ):
        expected = (urlsplit(url).hostname or "").rstrip(".").removeprefix("www.")
        assert outlet_of(Article(article_id="x", feed_url="", url=url, source="f")) == expected


def test_copy_linking_to_the_wire_host_from_another_feed_is_not_held_to_the_same_outlet_threshold():
    # The copy's link is on the wire's host (tracking parameters added), but it came through another outlet's feed.
    wire_link = dataclasses.replace(SYNDICATED, url=ORIGINAL.url + "-copy?utm_source=wire")
    original, copy = signature_records([ORIGINAL, wire_link])
    score = is_near_copy(original, copy)[1]
    strict = NearDedupSettings(same_outlet_threshold=min(1.0, score + 0.01))
    assert is_near_copy(original, copy, strict)[0]
    # Through the wire's own feed it is a revision of the wire's story, held to the stricter threshold.
    revision = signature_records([dataclasses.replace(wire_link, feed_url=ORIGINAL.feed_url)])[0]
    assert not is_near_copy(original, revision, strict)[0]


def test_lookback_patterns_cover_the_dates():
    now = dt.datetime(2026, 11, 20, 12, tzinfo=UTC)
    patterns = lookback_patterns("/out/signatures", now, 2 * 86400, future_days=1)
    assert patterns == [f"/out/signatures/date=2026-11-{d}/**.parquet" for d in (18, 19, 20, 21)]


def test_signature_rows_round_trip_through_parquet_types():
    rec = dataclasses.replace(record(ORIGINAL), canonical_id="wire")
    table = pa.Table.from_pylist([signature_row(rec)], schema=SIGNATURE_SCHEMA)
    back = signature_from_row(table.to_pylist()[0])
    assert back == dataclasses.replace(rec, prior=True) and len(back.lead) > 0
    # A row of a state written before the lead column existed (another scheme, so it is never compared) still loads.
    old = {k: v for k, v in signature_row(rec).items() if k != "lead"}
    assert signature_from_row(dict(old, scheme="minhash-oph1-p128-w3-c50000-s1")).lead == b""


def test_find_near_copies_matches_prior_records_across_runs():
    settings = NearDedupSettings()
    prior = [dataclasses.replace(record(ORIGINAL), canonical_id="wire")]
    today = [record(SYNDICATED), record(OTHER_STORY)]
    verdicts = find_near_copies(today, prior, settings)
    assert set(verdicts) == {"syndicated"}
    assert verdicts["syndicated"].canonical_id == "wire" and verdicts["syndicated"].matched_prior
    assert find_near_copies(today, (), settings) == {}


# --- the composite ---------------------------------------------------------------------------------------------

# A chain, as a running story grows and sheds paragraphs: the first and last are no longer near copies, and the
# last keeps none of the top of the story.
CHAIN_A = art("chain-a", story(BUDGET), minutes=0, host="a.test")
CHAIN_B = art("chain-b", story(BUDGET + REACTIONS), minutes=10, host="b.test")
CHAIN_C = art("chain-c", story(BUDGET[5:] + REACTIONS), minutes=20, host="c.test")


def test_chain_preconditions():
    a, b, c = (record(x) for x in (CHAIN_A, CHAIN_B, CHAIN_C))
    assert is_near_copy(a, b)[0] and not is_near_copy(a, c)[0]
    # CHAIN_C is all in CHAIN_B but starts with its sixth paragraph: a follow-up that keeps none of the top of the
    # story is not a copy of it (without the lead check it would be).
    assert not is_near_copy(b, c)[0] and is_near_copy(b, c, NearDedupSettings(lead_overlap=0))[0]


def run(articles, settings=NearDedupSettings(), prior=None, rows=None, signatures=None):
    """The batch plane's decisions over `articles` (exact dedup off: near copies alone), asserting the rows written
    (article_id, cluster_id, cluster_size, duplicate_of) and the signatures kept for later runs (article_id,
    canonical_id: in drop mode only the canonical ones are kept) when given; returns the neardup and dedup counters."""
    return run_all([dict(articles=articles, settings=settings, prior=prior, rows=rows, signatures=signatures)])


def run_all(cases):
    """Several runs, one after the other; counters add up across them."""
    near, dedup = collections.Counter(), collections.Counter()
    for case in cases:
        settings = case.get("settings") or NearDedupSettings()
        with tempfile.TemporaryDirectory() as tmp:
            result = run_plane(Path(tmp), case["articles"], settings, NO_EXACT_DEDUP, prior=case.get("prior"))
        if case.get("rows") is not None:
            written = [(r["article_id"], r["cluster_id"], r["cluster_size"], r["duplicate_of"]) for r in result.rows]
            assert sorted(written) == sorted(case["rows"])
        if case.get("signatures") is not None:
            kept = [(a, c) for a, c in case["signatures"] if settings.mode == "mark" or a == c]
            assert sorted((r["article_id"], r["canonical_id"]) for r in result.signatures) == sorted(kept)
        near.update(result.counters["neardup"])
        dedup.update(result.counters["dedup"])
    return dict(near), dict(dedup)


NO_EXACT_DEDUP = DedupSettings(by_url=False, by_guid=False, by_content=False)


def cluster(root):
    return stable_id("neardup", root)


def test_drop_mode_keeps_one_per_cluster_and_counts():
    german = dataclasses.replace(ORIGINAL, article_id="wire-de", language="de", published_at=T0 - dt.timedelta(hours=1))
    articles = [ORIGINAL, SYNDICATED, OTHER_STORY, CHAIN_A, CHAIN_B, CHAIN_C, german]
    # ORIGINAL and CHAIN_A have the same text and time, ORIGINAL the longer title: it is kept. CHAIN_B copies it;
    # CHAIN_C, a follow-up without the top of the story, is kept. The other story and the German article (earlier,
    # same text) stay apart.
    rows = [("wire", cluster("wire"), 4, "")] + [(x, "", 1, "") for x in ("other-story", "wire-de", "chain-c")]
    signatures = [(a.article_id, "wire") for a in (ORIGINAL, SYNDICATED, CHAIN_A, CHAIN_B)]
    signatures += [("other-story", "other-story"), ("wire-de", "wire-de"), ("chain-c", "chain-c")]
    near, dedup = run(articles, rows=rows, signatures=signatures)
    assert near["copies_dropped"] == 3 and dedup["duplicates"] == 3 and near["clusters"] == 1
    assert near["pairs_verified"] >= 4 and near["signed"] == 7


def test_mark_mode_writes_all_with_duplicate_of():
    rows = [("wire", cluster("wire"), 2, ""), ("syndicated", cluster("wire"), 2, "wire"), ("other-story", "", 1, "")]
    near, dedup = run([ORIGINAL, SYNDICATED, OTHER_STORY], NearDedupSettings(mode="mark"), rows=rows)
    assert near["copies_marked"] == 1 and "duplicates" not in dedup


def test_same_canonical_whatever_the_input_order():
    articles = [ORIGINAL, SYNDICATED, OTHER_STORY, CHAIN_B, CHAIN_C]
    wire = cluster("wire")
    rows = [
        ("wire", wire, 3, ""),
        ("syndicated", wire, 3, "wire"),
        ("chain-b", wire, 3, "wire"),
        ("chain-c", "", 1, ""),
        ("other-story", "", 1, ""),
    ]
    orders = [random.Random(seed).sample(articles, len(articles)) for seed in range(3)] + [articles[::-1]]
    run_all([dict(articles=order, settings=NearDedupSettings(mode="mark"), rows=rows) for order in orders])


def test_ties_go_to_the_longer_text_then_the_smaller_id():
    shorter = dataclasses.replace(SYNDICATED, published_at=ORIGINAL.published_at)
    same = dataclasses.replace(ORIGINAL, article_id="wire-0")
    run_all(
        [
            dict(articles=[shorter, ORIGINAL], rows=[("wire", cluster("wire"), 2, "")]),  # same time: the longer text
            dict(
                articles=[same, ORIGINAL], rows=[("wire", cluster("wire"), 2, "")]
            ),  # same time and length: smaller id
        ]
    )


def test_revision_from_the_same_outlet_is_counted():
    revised = art(
        "wire-v2",
        story(BUDGET, [(0, "more than four hours", "more than 4 hours")]),
        title=ORIGINAL.title,
        minutes=90,
        host="wire.test",
    )
    near, dedup = run([ORIGINAL, revised], rows=[("wire", cluster("wire"), 2, "")])
    assert near["revisions"] == 1 and dedup["duplicates"] == 1


def test_huge_buckets_are_capped_and_copies_still_cluster():
    copies = [
        dataclasses.replace(
            SYNDICATED,
            article_id=f"copy{i}",
            url=f"https://c{i}.test/x",
            feed_url=f"https://c{i}.test/rss",
            published_at=T0 + dt.timedelta(minutes=i),
        )
        for i in range(6)
    ]
    near, _ = run(
        copies, NearDedupSettings(max_bucket_size=3, bucket_window=1), rows=[("copy0", cluster("copy0"), 6, "")]
    )
    assert near["buckets_capped"] > 0


def test_a_copy_of_an_article_from_an_earlier_run_is_dropped():
    # The first run's signatures, as the run state keeps them.
    first_run = signature_records([ORIGINAL])
    state = [signature_from_row(signature_row(dataclasses.replace(r, canonical_id=r.article_id))) for r in first_run]
    near, dedup = run_all(
        [
            # The prior article itself is never written again, and its copy is dropped...
            dict(
                articles=[SYNDICATED, OTHER_STORY],
                prior=state,
                rows=[("other-story", "", 1, "")],
                signatures=[("syndicated", "wire"), ("other-story", "other-story")],
            ),
            # ... or, in mark mode, points at the earlier article.
            dict(
                articles=[SYNDICATED],
                settings=NearDedupSettings(mode="mark"),
                prior=state,
                rows=[("syndicated", cluster("wire"), 2, "wire")],
            ),
        ]
    )
    assert near["matched_prior"] == 2 and near["copies_dropped"] == 1 and near["copies_marked"] == 1
    # A state written under other settings is not compared: the copy is written.
    other_scheme = [dataclasses.replace(r, scheme="minhash-oph1-p64-w5") for r in state]
    near, _ = run([SYNDICATED], prior=other_scheme, rows=[("syndicated", "", 1, "")])
    assert near["prior_signatures_other_scheme"] == 1 and "matched_prior" not in near
    assert dedup["duplicates"] == 1  # drops only


def test_disabled_passes_articles_through():
    near, _ = run(
        [ORIGINAL, SYNDICATED],
        NearDedupSettings(enabled=False),
        rows=[("syndicated", "", 1, ""), ("wire", "", 1, "")],
        signatures=[],
    )
    assert not near


# --- syndication as issue 13 describes it: heavy edits, heavy cuts, and stories that must stay apart -------------
FLOOD = art("flood-wire", texts.text(texts.WIRE), title=texts.WIRE_TITLE, host="wire.test")
FLOOD_EDITED = art("flood-edited", texts.heavy_edit()[1], title=texts.heavy_edit()[0], minutes=40, host="daily.test")
FLOOD_REGIONAL = art("flood-regional", texts.heavy_cut()[1], title=texts.heavy_cut()[0], minutes=90, host="region.test")
FLOOD_SAME_EVENT = art(
    "flood-same-event", texts.text(texts.SAME_EVENT), title=texts.SAME_EVENT_TITLE, minutes=300, host="post.test"
)
MARKET_FRIDAY = art("market-fri", texts.text(texts.MARKET), title=texts.MARKET_TITLE, host="agency.test")
MARKET_MONDAY = art(
    "market-mon", texts.text(texts.MARKET_NEXT_DAY), title=texts.MARKET_TITLE, minutes=3 * 1440, host="markets.test"
)
QUOTE_A = art("quote-a", texts.text(texts.QUOTE_STORY_A), title=texts.QUOTE_STORY_A_TITLE, minutes=200, host="a.test")
QUOTE_B = art("quote-b", texts.text(texts.QUOTE_STORY_B), title=texts.QUOTE_STORY_B_TITLE, minutes=260, host="b.test")
SYNDICATION = [FLOOD, FLOOD_EDITED, FLOOD_REGIONAL, FLOOD_SAME_EVENT, MARKET_FRIDAY, MARKET_MONDAY, QUOTE_A, QUOTE_B]


def test_heavy_copies_are_found_and_same_event_template_and_shared_quote_stories_kept_apart():
    records = {r.article_id: r for r in signature_records(SYNDICATION)}
    wire = records["flood-wire"]
    # Edited at 20% with its last paragraph cut: the whole-text similarity (Jaccard) carries it.
    edited_jaccard = similarity(wire.values(), records["flood-edited"].values())
    assert edited_jaccard >= NearDedupSettings().threshold and is_near_copy(wire, records["flood-edited"])[0]
    # Two of seven paragraphs and a local one: too little alike as a whole, mostly made of the wire story.
    regional = records["flood-regional"]
    assert similarity(wire.values(), regional.values()) < NearDedupSettings().threshold
    verified, contained = is_near_copy(wire, regional)
    assert verified and contained >= NearDedupSettings().containment
    assert not is_near_copy(regional, wire)[0]  # containment counts for the later, shorter text only
    # The same words around other figures: the figures check keeps the template apart.
    friday, monday = records["market-fri"], records["market-mon"]
    assert similarity(friday.values(), monday.values()) >= NearDedupSettings().threshold
    assert not is_near_copy(friday, monday)[0]
    assert is_near_copy(friday, monday, NearDedupSettings(number_overlap=0))[0]
    assert not is_near_copy(wire, records["flood-same-event"])[0]
    assert not is_near_copy(records["quote-a"], records["quote-b"])[0]
    verdicts = find_near_copies(list(records.values()))
    assert {k: (v.canonical_id, v.is_canonical) for k, v in verdicts.items()} == {
        "flood-wire": ("flood-wire", True),
        "flood-edited": ("flood-wire", False),
        "flood-regional": ("flood-wire", False),
    }


def test_heavy_copies_in_one_run_and_in_a_later_run_are_dropped_the_other_stories_kept():
    first_run = [FLOOD, MARKET_FRIDAY, QUOTE_A]
    state = [
        signature_from_row(signature_row(dataclasses.replace(r, canonical_id=r.article_id)))
        for r in signature_records(first_run)
    ]
    kept_apart = [FLOOD_SAME_EVENT, MARKET_MONDAY, QUOTE_B]
    near, dedup = run_all(
        [
            dict(
                articles=SYNDICATION,
                rows=[("flood-wire", cluster("flood-wire"), 3, "")]
                + [(a.article_id, "", 1, "") for a in first_run[1:] + kept_apart],
            ),
            # The copies arrive in the next run: matched to the state, dropped; the others are written.
            dict(
                articles=[FLOOD_EDITED, FLOOD_REGIONAL] + kept_apart,
                prior=state,
                rows=[(a.article_id, "", 1, "") for a in kept_apart],
                signatures=[("flood-edited", "flood-wire"), ("flood-regional", "flood-wire")]
                + [(a.article_id, a.article_id) for a in kept_apart],
            ),
        ]
    )
    assert near["copies_dropped"] == 4 and dedup["duplicates"] == 4 and near["matched_prior"] == 2
