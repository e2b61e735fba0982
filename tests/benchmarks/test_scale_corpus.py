"""The scale corpus (benchmarks/scale_corpus.py): seeded, its copies are what the plan says, its feeds are valid RSS.
Its rates at size are measured by `scale_corpus.py --check`; these tests hold the properties that check relies on."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from benchmarks.scale_corpus import DATA, EXACT, NEAR, ORIGINAL, ScaleCorpus
from transforms.dedup import content_hash
from transforms.neardup import shingles

pytestmark = pytest.mark.skipif(not (DATA / "langid-dev").exists(), reason="needs ../shared/data")


@pytest.fixture(scope="module")
def corpus() -> ScaleCorpus:
    return ScaleCorpus(2000, seed=3, feeds=20)


def _text(item) -> str:
    return "\n\n".join(item.paragraphs)


def test_same_seed_same_articles_and_another_seed_others(corpus):
    again = ScaleCorpus(2000, seed=3, feeds=20)
    assert [corpus.item(i) for i in (0, 17, 1999)] == [again.item(i) for i in (0, 17, 1999)]
    other = ScaleCorpus(2000, seed=4, feeds=20)
    assert corpus.item(0).paragraphs != other.item(0).paragraphs


def test_plan_shares_and_copies_point_at_earlier_originals_in_other_feeds(corpus):
    rates = corpus.planned_rates()
    assert 0.08 < rates["exact_copies"] < 0.12 and 0.08 < rates["near_copies"] < 0.12
    copies = np.flatnonzero(corpus.role != ORIGINAL)
    originals = corpus.original[copies]
    assert (originals < copies).all()
    assert (corpus.role[originals] == ORIGINAL).all()
    several = np.bincount(corpus.feed_language)[corpus.language[copies]] > 1  # a language with one feed keeps it
    assert several.any()
    assert (corpus.feed[copies] != corpus.feed[originals])[several].all()
    assert (corpus.language[copies] == corpus.language[originals]).all()
    assert (corpus.feed_language[corpus.feed] == corpus.language).all()  # a feed carries one language


def test_exact_copies_hash_as_their_original_near_copies_do_not_but_stay_similar(corpus):
    for role in (EXACT, NEAR):
        for number in np.flatnonzero(corpus.role == role)[:25].tolist():
            copy, original = corpus.item(number), corpus.item(int(corpus.original[number]))
            same = content_hash(copy.title, _text(copy)) == content_hash(original.title, _text(original))
            assert same == (role == EXACT)
            a, b = shingles(original.title, _text(original)), shingles(copy.title, _text(copy))
            assert len(a & b) / len(b) >= 0.5  # the copy is mostly made of its original


def test_unrelated_originals_share_almost_no_shingles(corpus):
    originals = np.flatnonzero(corpus.role == ORIGINAL)
    english = originals[corpus.language[originals] == 0][:40].tolist()
    sets = [shingles(corpus.item(i).title, _text(corpus.item(i))) for i in english]
    for x in range(len(sets)):
        for y in range(x + 1, len(sets)):
            assert len(sets[x] & sets[y]) <= 2


def test_written_feeds_hold_every_article_once(corpus, tmp_path):
    directory = corpus.write(tmp_path)
    guids = []
    for f in range(corpus.feeds):
        channel = ET.parse(directory / f"feed{f}.xml").getroot().find("channel")
        guids += [item.findtext("guid") for item in channel.iter("item")]
    assert sorted(guids) == sorted(f"a{i}" for i in range(corpus.articles))
    assert np.load(directory / "content_hashes.npy").shape == (corpus.articles,)
