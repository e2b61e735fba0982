"""Near-duplicate detection: quality on real text, speed, scaling and memory.

    python benchmarks/dedup.py quality                                  # the real-text development set (below)
    python benchmarks/dedup.py quality --repo /work/main                # the same set, another checkout's code
    python benchmarks/dedup.py candidates                               # candidate rules -> recall, false merges
    python benchmarks/dedup.py speed [--repo DIR]                       # signatures/s on real text, one core
    python benchmarks/dedup.py beam                                     # the Beam composite on the same set
    python benchmarks/dedup.py scaling --sizes 20000,100000,200000      # SYNTHETIC corpus: cost/article, peak RSS
    python benchmarks/dedup.py synthetic --articles 100000              # SYNTHETIC corpus: quality as before
    python benchmarks/dedup.py compare --articles 20000                 # SYNTHETIC: ours vs k-perm, datasketch, SimHash

Quality is measured on `benchmarks/neardup_corpus.py`: originals from the article bodies of
../shared/data/extraction-dev and the sentences of ../shared/data/langid-dev (77 languages), copies made as issue 13
describes (`edit`: 5-20% of words edited, last paragraphs cut, furniture lines, headline shuffled; `cut`: kept from
the top to 30-70% of the paragraphs, up to 5% edits, a paragraph of another article added) and hard negatives that
must stay apart (`same_event`, `template`, `shared_quote`). Recall is per kind of copy (a copy is found when it ends
in its original's cluster), precision is the share of articles marked as copies whose canonical is of their own story,
and each negative kind reports how many of its pairs were merged. It runs the pure functions the composite runs
(`find_near_copies`), single-threaded; `beam` runs the composite on the DirectRunner and checks it agrees.

Real text cannot make 200,000 distinct articles (the two sources hold about 2,300), so `scaling` still uses the
synthetic corpus made below (three made-up languages with Zipfian vocabularies, stories told of events, syndicated
copies and hard negatives): its figures are for cost and memory only, not for quality.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import math
import os
import pickle
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
if "--repo" in sys.argv:  # measure another checkout's transforms (say, main before a change) on the same set
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--repo") + 1]).resolve()))

from transforms.article import Article  # noqa: E402
from transforms.clock import UTC  # noqa: E402
from transforms.neardup import (  # noqa: E402
    NearDedupSettings,
    SignatureRecord,
    band_key_matrix,
    bucket_bounds,
    bucket_pairs,
    cluster_verdicts,
    is_near_copy,
    language_salt,
    member_of,
    minhash_from_shingles,
    outlet_of,
    shingle_hashes,
    shingles,
)

T0 = dt.datetime(2026, 11, 20, tzinfo=UTC)
CONSONANTS = {"en": "bcdfghklmnprstvwy", "de": "bdfghklmnprstwz", "fr": "bcdfglmnprstv"}
VOWELS = {"en": "aeiou", "de": "aeiouä", "fr": "aeiouéè"}
ENGLISH_FUNCTION = (
    "the of and to a in that is was he for it with as his on be at by had are but from or have an they which one "
    "you were her all she there would their we him been has when who will more no if out so said what up its about "
    "into than them can only other new some could time these two may then do first any my now such like our over "
    "also after did many before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get here between both life "
    "being under never day same another know while last might us great old year off come since against go came "
    "right used take three on monday tuesday wednesday thursday friday saturday sunday according officials"
).split()


class Language:
    """One synthetic language: vocabulary, function words, phrases, topics with their words and names."""

    def __init__(self, code: str, rng: np.random.Generator, topics: int = 300, vocabulary: int = 40_000):
        self.code = code
        self.rng = rng
        self.vocab = np.array(sorted(set(self.words(rng, int(vocabulary * 1.3), 2, 4)))[:vocabulary], dtype=object)
        rng.shuffle(self.vocab)
        self.vocab_cdf = _zipf_cdf(len(self.vocab), 1.05)
        if code == "en":
            self.function = np.array(ENGLISH_FUNCTION, dtype=object)
        else:
            self.function = np.array(sorted(set(self.words(rng, 200, 1, 2))), dtype=object)
        self.function_cdf = _zipf_cdf(len(self.function), 0.9)
        self.phrases = np.array([" ".join(self.plain(rng, int(rng.integers(2, 5)))) for _ in range(400)], dtype=object)
        self.phrase_cdf = _zipf_cdf(len(self.phrases), 1.0)
        self.topics = []
        for _ in range(topics):
            words = self.vocab[rng.integers(200, len(self.vocab), 300)]
            first, last = self.words(rng, 30, 2, 3), self.words(rng, 30, 2, 4)
            people = np.array([f"{a.title()} {b.title()}" for a, b in zip(first, last)], dtype=object)
            places = np.array([w.title() for w in self.words(rng, 10, 2, 4)], dtype=object)
            orgs = np.array(
                [" ".join(w.title() for w in self.words(rng, int(rng.integers(1, 4)), 2, 3)) for _ in range(10)],
                dtype=object,
            )
            self.topics.append((words, people, places, orgs))

    def words(self, rng, count: int, low: int, high: int) -> list[str]:
        """`count` pronounceable words of `low` to `high` syllables in this language's letters."""
        c, v = np.array(list(CONSONANTS[self.code])), np.array(list(VOWELS[self.code]))
        syllables = rng.integers(low, high + 1, count)
        cs = c[rng.integers(0, len(c), (count, high + 1))]
        vs = v[rng.integers(0, len(v), (count, high))]
        tail = rng.random(count) < 0.5
        return [
            "".join(cs[i, j] + vs[i, j] for j in range(syllables[i])) + (cs[i, high] if tail[i] else "")
            for i in range(count)
        ]

    def plain(self, rng, n: int) -> list[str]:
        """`n` words of running text without names or figures."""
        general = self.vocab[np.searchsorted(self.vocab_cdf, rng.random(n))]
        function = self.function[np.searchsorted(self.function_cdf, rng.random(n))]
        return np.where(rng.random(n) < 0.5, function, general).tolist()

    def general(self, rng, n: int) -> np.ndarray:
        return self.vocab[np.searchsorted(self.vocab_cdf, rng.random(n))]


def _zipf_cdf(n: int, s: float) -> np.ndarray:
    p = np.cumsum(1.0 / np.arange(1, n + 1) ** s)
    return p / p[-1]


@dataclasses.dataclass
class Event:
    language: Language
    topic: int
    people: np.ndarray
    place: str
    org: str


def new_event(lang: Language, rng) -> Event:
    topic = int(rng.integers(len(lang.topics)))
    _, people, places, orgs = lang.topics[topic]
    picked = people[rng.choice(len(people), int(rng.integers(2, 5)), replace=False)]
    return Event(lang, topic, picked, places[rng.integers(len(places))], orgs[rng.integers(len(orgs))])


KIND_CDF = np.cumsum([0.40, 0.17, 0.24, 0.07, 0.03, 0.05, 0.04])
INTEGERS = np.array([str(i) for i in range(2, 5000)], dtype=object)
DECIMALS = np.array([f"{a}.{b}" for a in range(1, 99) for b in range(10)], dtype=object)


def tokens(event: Event, rng, n: int) -> list[str]:
    """`n` tokens of text about `event`: function words, topic words, general words, names, places and
    organisations, figures, common phrases."""
    lang = event.language
    words, people, _, _ = lang.topics[event.topic]
    kinds = np.minimum(np.searchsorted(KIND_CDF, rng.random(n) * KIND_CDF[-1]), 6)
    names = np.where(
        rng.random(n) < 0.8,
        event.people[rng.integers(0, len(event.people), n)],
        people[rng.integers(0, len(people), n)],
    )
    figures = np.where(
        rng.random(n) < 0.8, INTEGERS[rng.integers(0, len(INTEGERS), n)], DECIMALS[rng.integers(0, len(DECIMALS), n)]
    )
    choices = [
        lang.function[np.searchsorted(lang.function_cdf, rng.random(n))],
        words[rng.integers(0, len(words), n)],
        lang.general(rng, n),
        names,
        np.where(rng.random(n) < 0.7, event.place, event.org).astype(object),
        figures,
        lang.phrases[np.searchsorted(lang.phrase_cdf, rng.random(n))],
    ]
    return np.choose(kinds, choices).tolist()


def sentences(event: Event, rng, count: int, length: tuple[int, int] = (10, 29)) -> list[str]:
    """`count` sentences about `event`."""
    lengths = rng.integers(length[0], length[1], count)
    words = tokens(event, rng, int(lengths.sum()))
    out, at = [], 0
    ends = rng.random(count) < 0.9
    for n, end in zip(lengths.tolist(), ends.tolist()):
        text = " ".join(words[at : at + n])
        at += n
        out.append(text[0].upper() + text[1:] + ("." if end else ","))
    return out


def sentence(event: Event, rng, length: int) -> str:
    return sentences(event, rng, 1, (length, length + 1))[0]


@dataclasses.dataclass
class Story:
    """An article being made: a title and paragraphs, before furniture."""

    event: Event
    title: str
    paragraphs: list


def new_story(event: Event, rng) -> Story:
    words = max(20, int(rng.lognormal(math.log(260), 0.55)))
    count = max(1, int(round(words / 38)))  # two sentences of 19 words a paragraph
    per_paragraph = rng.integers(1, 4, count)
    flat = sentences(event, rng, int(per_paragraph.sum()))
    paragraphs, at = [], 0
    for k in per_paragraph.tolist():
        paragraphs.append(" ".join(flat[at : at + k]))
        at += k
    if rng.random() < 0.03:  # a title-only or one-line entry
        paragraphs = [] if rng.random() < 0.5 else [sentence(event, rng, 12)]
    return Story(event, headline(event, rng), paragraphs)


def headline(event: Event, rng) -> str:
    s = sentence(event, rng, int(rng.integers(6, 12))).rstrip(".,")
    return f"{event.people[0]}: {s}" if rng.random() < 0.5 else s


@dataclasses.dataclass
class Outlet:
    host: str
    header: str
    footer: str


def new_outlets(n: int, lang: Language, rng) -> list[Outlet]:
    outlets = []
    for i, name in enumerate(lang.words(rng, n, 2, 3)):
        name = name.title()
        header = f"{name} " + " ".join(lang.plain(rng, int(rng.integers(5, 12))))
        footer = (
            f"Sign up for the {name} newsletter. "
            + " ".join(lang.plain(rng, int(rng.integers(8, 20))))
            + f" (c) 2026 {name}."
        )
        outlets.append(Outlet(f"www.{name.lower()}{i}.test", header, footer))
    return outlets


def render(story: Story, outlet: Outlet, rng, furniture: float) -> str:
    parts = list(story.paragraphs)
    if rng.random() < furniture:
        parts = [outlet.header] + parts
    if rng.random() < furniture:
        parts = parts + [outlet.footer]
    return "\n\n".join(parts)


def mutate(story: Story, rng) -> tuple[Story, dict]:
    """A syndicated copy: words edited (spans and scattered), last paragraphs cut, headline rewritten."""
    event = story.event
    lang = event.language
    paragraphs = [p.split(" ") for p in story.paragraphs]
    total = sum(len(p) for p in paragraphs)
    rate = float(rng.uniform(0.05, 0.20))
    budget = int(round(rate * total))
    scattered = budget // 2
    spans = budget - scattered
    while spans > 0 and paragraphs:
        p = paragraphs[rng.integers(len(paragraphs))]
        length = int(min(spans, rng.integers(3, 16)))
        at = int(rng.integers(0, max(1, len(p))))
        op = rng.random()
        fresh = tokens(event, rng, length)
        if op < 0.5:  # rewrite a span
            p[at : at + length] = fresh
        elif op < 0.75:  # insert a span
            p[at:at] = fresh
        else:  # delete a span
            del p[at : at + length]
        spans -= length
    flat = [(i, j) for i, p in enumerate(paragraphs) for j in range(len(p))]
    if flat and scattered:
        picks = rng.choice(len(flat), size=min(scattered, len(flat)), replace=False).tolist()
        for k, word in zip(picks, lang.general(rng, len(picks)).tolist()):
            i, j = flat[k]
            paragraphs[i][j] = word
    cut = 0
    if len(paragraphs) > 2 and rng.random() < 0.4:
        keep = max(1, int(math.ceil(len(paragraphs) * rng.uniform(0.6, 0.9))))
        cut = len(paragraphs) - keep
        paragraphs = paragraphs[:keep]
    title = story.title
    rewritten = bool(rng.random() < 0.6)
    if rewritten:
        old = title.split(" ")
        keep_words = [w for w in old if rng.random() < 0.5]
        title = " ".join(keep_words[:4] + headline(event, rng).split(" ")[:6])
    return Story(event, title, [" ".join(p) for p in paragraphs if p]), {
        "edit_rate": rate,
        "cut": cut,
        "headline": rewritten,
    }


_FIGURE = re.compile(r"\d+")


def templated(story: Story, event: Event, rng) -> Story:
    """The same template with other names and figures: results, earnings, weather."""
    old_names = list(story.event.people) + [story.event.place, story.event.org]
    new_names = list(event.people) + [event.place, event.org]

    def swap(text: str) -> str:
        for a, b in zip(old_names, new_names):
            text = text.replace(a, b)
        return _FIGURE.sub(lambda m: str(int(rng.integers(2, 5000))), text)

    return Story(event, swap(story.title), [swap(p) for p in story.paragraphs])


@dataclasses.dataclass
class Corpus:
    articles: list
    truth: dict  # article_id -> true cluster (the original's id)
    info: dict  # copy id -> mutation facts
    hard_pairs: list  # (a, b, kind) that must stay apart


def cached_corpus(n: int, seed: int = 7) -> Corpus:
    """make_corpus(n, seed), kept in a pickle under $TMPDIR: generating 200,000 articles takes minutes."""
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"neardup-corpus-{n}-{seed}-v1.pickle"
    if path.exists():
        with path.open("rb") as f:
            return pickle.load(f)
    corpus = make_corpus(n, seed)
    with path.open("wb") as f:
        pickle.dump(corpus, f, protocol=pickle.HIGHEST_PROTOCOL)
    return corpus


def make_corpus(n: int, seed: int = 7, copy_share: float = 0.10, hard_share: float = 0.10) -> Corpus:
    """`n` articles: originals, copies (`copy_share`) and hard negatives (`hard_share`), shuffled."""
    rng = np.random.default_rng(seed)
    languages = [Language(code, np.random.default_rng([seed, i])) for i, code in enumerate(("en", "de", "fr"))]
    language_p = [0.8, 0.12, 0.08]
    outlets = {lang.code: new_outlets(400, lang, rng) for lang in languages}
    n_copies = int(n * copy_share)
    n_hard = int(n * hard_share)
    n_orig = n - n_copies - n_hard
    articles, truth, info, hard_pairs = [], {}, {}, []
    stories = []

    def add(story: Story, outlet: Outlet, published: dt.datetime, cluster: str | None, furniture: float) -> str:
        aid = f"a{len(articles):07d}"
        articles.append(
            Article(
                article_id=aid,
                feed_url=f"https://{outlet.host}/rss",
                source=outlet.host,
                url=f"https://{outlet.host}/{aid}",
                title=story.title,
                text=render(story, outlet, rng, furniture),
                language=story.event.language.code,
                published_at=published,
            )
        )
        truth[aid] = cluster or aid
        return aid

    for _ in range(n_orig):
        lang = languages[rng.choice(3, p=language_p)]
        story = new_story(new_event(lang, rng), rng)
        outlet = outlets[lang.code][rng.integers(400)]
        published = T0 + dt.timedelta(minutes=int(rng.integers(0, 3 * 24 * 60)))
        aid = add(story, outlet, published, None, 0.3)
        stories.append((aid, story, outlet, published))

    # Copies: most originals get one, a few wire stories dozens.
    made = 0
    while made < n_copies:
        aid, story, outlet, published = stories[rng.integers(len(stories))]
        u = rng.random()
        size = (
            1
            if u < 0.7
            else (
                int(rng.integers(2, 6))
                if u < 0.91
                else int(rng.integers(6, 21))
                if u < 0.997
                else int(rng.integers(30, 81))
            )
        )
        for _ in range(min(size, n_copies - made)):
            copy, facts = mutate(story, rng)
            other = outlets[story.event.language.code][rng.integers(400)]
            when = published + dt.timedelta(minutes=int(rng.integers(-120, 36 * 60)))
            cid = add(copy, other, when, truth[aid], 0.5)
            info[cid] = facts
            made += 1

    for k in range(n_hard):
        aid, story, outlet, published = stories[rng.integers(len(stories))]
        event = story.event
        if k % 3 == 2 and len(story.paragraphs) >= 2:  # templates are whole reports
            lang = event.language
            _, people, places, orgs = lang.topics[event.topic]
            other_event = Event(
                lang,
                event.topic,
                people[rng.choice(len(people), len(event.people), replace=False)],
                places[rng.integers(len(places))],
                orgs[rng.integers(len(orgs))],
            )
            neg, kind = templated(story, other_event, rng), "template"
        else:
            neg, kind = new_story(event, rng), "same_event"
            if story.paragraphs and rng.random() < 0.33:
                quote = story.paragraphs[rng.integers(len(story.paragraphs))].split(". ")[0]
                neg.paragraphs.insert(int(rng.integers(0, len(neg.paragraphs) + 1)), quote)
                kind = "same_event_quote"
        same_outlet = rng.random() < 0.2
        nid = add(
            neg,
            outlet if same_outlet else outlets[event.language.code][rng.integers(400)],
            published + dt.timedelta(minutes=int(rng.integers(0, 600))),
            None,
            0.3,
        )
        hard_pairs.append((aid, nid, kind))

    order = rng.permutation(len(articles))
    return Corpus([articles[i] for i in order], truth, info, hard_pairs)


# ---------------------------------------------------------------------------------------------------------------
# Measurement on the pure functions.


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_pure(articles: list, settings: NearDedupSettings, batch: int = 256) -> dict:
    """Signatures, banding, verification and clusters over `articles`, timed step by step (CPU seconds).

    The steps are the composite's, on the same pure functions; numpy stands in for the shuffles: a sort per band
    for the GroupByKey on band keys, pair codes for the Distinct, row indices for the joins with the signatures.
    """
    timings = {}
    n = len(articles)
    t = time.process_time()
    sigs = np.empty((n, settings.num_perm), dtype=np.uint32)
    counts = np.empty(n, dtype=np.int64)
    facts = [b""] * n
    leads = [b""] * n
    for start in range(0, n, batch):
        chunk = articles[start : start + batch]
        shingles = shingle_hashes(
            [(a.title, a.text) for a in chunk], settings.shingle_size, settings.max_chars, settings.lead_words
        )
        sigs[start : start + len(chunk)] = minhash_from_shingles(shingles, settings.num_perm, settings.seed)
        counts[start : start + len(chunk)] = shingles.word_counts
        facts[start : start + len(chunk)] = [shingles.facts_of(i).tobytes() for i in range(len(chunk))]
        leads[start : start + len(chunk)] = [shingles.lead_of(i).tobytes() for i in range(len(chunk))]
    timings["signatures"] = time.process_time() - t

    t = time.process_time()
    salt_of: dict[str, int] = {}
    salts = np.array([salt_of.setdefault(a.language, language_salt(a.language)) for a in articles], dtype=np.uint64)
    signed = counts > 0
    codes = []  # candidate pairs as i * n + j, i < j
    capped = largest = 0
    for band in range(settings.bands):
        keys = band_key_matrix(sigs, salts, settings.bands, only=band)
        keys[~signed] = np.arange(int((~signed).sum()), dtype=np.uint64)  # unsigned articles are in no bucket
        order, starts, sizes = bucket_bounds(keys)
        # Buckets of two (most of them) give their one pair, all at once; larger ones go through bucket_pairs.
        two = starts[sizes == 2]
        first, second = order[two], order[two + 1]
        codes.append(np.minimum(first, second) * n + np.maximum(first, second))
        for start, size in zip(starts[sizes > 2].tolist(), sizes[sizes > 2].tolist()):
            bucket = order[start : start + size]
            largest = max(largest, size)
            members = [(articles[i].article_id, False) for i in bucket.tolist()]
            found, was_capped = bucket_pairs(members, settings.max_bucket_size, settings.bucket_window)
            capped += was_capped
            position = {articles[i].article_id: i for i in bucket.tolist()}
            found = np.array([(position[a], position[b]) for a, b in found], dtype=np.int64).reshape(-1, 2)
            found.sort(axis=1)
            codes.append(found[:, 0] * n + found[:, 1])
    candidates = np.unique(np.concatenate(codes)) if codes else np.zeros(0, dtype=np.int64)
    del codes
    timings["banding"] = time.process_time() - t

    t = time.process_time()
    left, right = candidates // n, candidates % n
    scores = np.empty(len(candidates))
    for s in range(0, len(candidates), 50_000):
        scores[s : s + 50_000] = (sigs[left[s : s + 50_000]] == sigs[right[s : s + 50_000]]).mean(axis=1)
    records = {}

    def record(i: int) -> SignatureRecord:
        if i not in records:
            a = articles[i]
            records[i] = SignatureRecord(
                a.article_id,
                a.language,
                sigs[i].tobytes(),
                a.published_at,
                len(a.title) + len(a.text),
                int(counts[i]),
                facts[i],
                outlet_of(a),
                lead=leads[i],
            )
        return records[i]

    from transforms.neardup import Link, orient, star_clusters

    # The full rule (is_near_copy) on the pairs that pass the lowest Jaccard threshold or could pass containment
    # (estimated for the smaller text); the rest fail it anyway.
    low = min(settings.threshold, settings.short_threshold, settings.same_outlet_threshold)
    sizes = np.maximum(counts - settings.shingle_size + 1, 1).astype(np.float64)
    small = np.minimum(sizes[left], sizes[right])
    contained = scores * (sizes[left] + sizes[right]) / ((1 + scores) * small)
    links = []
    for k in np.flatnonzero((scores >= low) | (contained >= settings.containment)).tolist():
        earlier, later = orient(record(int(left[k])), record(int(right[k])))
        verified, score = is_near_copy(earlier, later, settings)
        if verified:
            links.append(Link(member_of(earlier), member_of(later), score))
    timings["verification"] = time.process_time() - t

    t = time.process_time()
    verdicts = {}
    for cluster in star_clusters(links, settings.follow_copies):
        verdicts.update(cluster_verdicts(cluster))
    timings["clusters"] = time.process_time() - t
    edges = links
    return {
        "verdicts": verdicts,
        "timings": timings,
        "candidate_pairs": len(candidates),
        "verified": len(edges),
        "buckets_capped": capped,
        "largest_bucket": largest,
        "records": list(records.values()),
    }


def evaluate(corpus: Corpus, verdicts: dict) -> dict:
    """Recall and precision of copy detection against the corpus' truth."""
    predicted = {aid: v.canonical_id for aid, v in verdicts.items()}
    cluster_of = lambda aid: predicted.get(aid, aid)  # noqa: E731
    copies = list(corpus.info)
    found = [c for c in copies if cluster_of(c) == cluster_of(corpus.truth[c])]
    recall = len(found) / max(1, len(copies))

    # Pairwise precision: of the pairs put in one cluster, the share that truly are one story.
    members: dict[str, list] = {}
    for aid in corpus.truth:
        members.setdefault(cluster_of(aid), []).append(aid)
    same = true_same = 0
    for group in members.values():
        if len(group) < 2:
            continue
        by_truth: dict[str, int] = {}
        for aid in group:
            by_truth[corpus.truth[aid]] = by_truth.get(corpus.truth[aid], 0) + 1
        same += len(group) * (len(group) - 1) // 2
        true_same += sum(k * (k - 1) // 2 for k in by_truth.values())
    # Copy-level precision: of the articles marked as copies, the share whose canonical is of their own story.
    marked = [aid for aid, v in verdicts.items() if not v.is_canonical]
    right = [
        aid
        for aid in marked
        if corpus.truth[aid] == corpus.truth.get(verdicts[aid].canonical_id, verdicts[aid].canonical_id)
    ]
    by_rate = {}
    for low, high in ((0.05, 0.10), (0.10, 0.15), (0.15, 0.201)):
        group = [c for c in copies if low <= corpus.info[c]["edit_rate"] < high]
        by_rate[f"{int(low * 100)}-{int(min(high, 0.2) * 100)}%"] = round(
            sum(cluster_of(c) == cluster_of(corpus.truth[c]) for c in group) / max(1, len(group)), 4
        )
    cut = [c for c in copies if corpus.info[c]["cut"]]
    words = {a.article_id: len(a.text.split()) for a in corpus.articles}
    long_copies = [c for c in copies if words[corpus.truth[c]] >= 50]
    hard = {}
    for a, b, kind in corpus.hard_pairs:
        merged = cluster_of(a) == cluster_of(b)
        total, bad = hard.get(kind, (0, 0))
        hard[kind] = (total + 1, bad + merged)
    return {
        "copies": len(copies),
        "recall": round(recall, 4),
        "pair_precision": round(true_same / same, 4) if same else 1.0,
        "copy_precision": round(len(right) / len(marked), 4) if marked else 1.0,
        "marked_as_copies": len(marked),
        "recall_by_edit_rate": by_rate,
        "recall_copies_of_texts_of_50_words_or_more": round(
            sum(cluster_of(c) == cluster_of(corpus.truth[c]) for c in long_copies) / max(1, len(long_copies)), 4
        ),
        "recall_cut_copies": round(
            sum(cluster_of(c) == cluster_of(corpus.truth[c]) for c in cut) / max(1, len(cut)), 4
        ),
        "hard_negatives_merged": {k: f"{bad}/{total}" for k, (total, bad) in hard.items()},
    }


def cmd_synthetic(args) -> dict:
    """Quality, speed and memory on the SYNTHETIC corpus (what `scaling` runs at each size)."""
    settings = NearDedupSettings(**json.loads(args.settings)) if args.settings else NearDedupSettings()
    t = time.perf_counter()
    corpus = cached_corpus(args.articles, seed=args.seed)
    made = time.perf_counter() - t
    rss_corpus = current_rss_mib()
    # The corpus' millions of objects live to the end: keep the cyclic collector from walking them again and again.
    gc.collect()
    gc.freeze()
    words = sum(len(a.title.split()) + len(a.text.split()) for a in corpus.articles) / len(corpus.articles)
    result = run_pure(corpus.articles, settings)
    n = len(corpus.articles)
    tm = result["timings"]
    out = {
        "articles": n,
        "mean_words": round(words, 1),
        "corpus_load_seconds": round(made, 1),
        "settings": dataclasses.asdict(settings),
        "quality": evaluate(corpus, result["verdicts"]),
        "candidate_pairs": result["candidate_pairs"],
        "pairs_verified": result["verified"],
        "buckets_capped": result["buckets_capped"],
        "largest_bucket": result["largest_bucket"],
        "seconds": {k: round(v, 3) for k, v in tm.items()},
        "articles_per_s": {
            "signatures": round(n / tm["signatures"]),
            "banding": round(n / tm["banding"]),
            "verification": round(n / max(tm["verification"], 1e-9)),
            "signatures+banding+verification+clusters": round(
                n / (tm["signatures"] + tm["banding"] + tm["verification"] + tm["clusters"])
            ),
        },
        "us_per_article": round(1e6 * (tm["signatures"] + tm["banding"] + tm["verification"] + tm["clusters"]) / n, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_with_corpus_loaded_mib": round(rss_corpus, 1),
    }
    print(json.dumps(out, indent=2))
    return out


def cmd_scaling(args) -> None:
    """Cost per article and peak memory at each size, one subprocess per size, on the SYNTHETIC corpus."""
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        cmd = [sys.executable, __file__, "synthetic", "--articles", str(size), "--seed", str(args.seed)]
        if args.settings:
            cmd += ["--settings", args.settings]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        out = json.loads(done.stdout)
        rows.append(out)
        q = out["quality"]
        rate = out["articles_per_s"]["signatures"]
        print(
            f"{size:>7} articles: {out['us_per_article']:7.1f} us/article  signatures {rate:>6}/s  "
            f"recall {q['recall']:.4f}  pair precision {q['pair_precision']:.4f}  "
            f"copy precision {q['copy_precision']:.4f}  candidates {out['candidate_pairs']:>8}  "
            f"peak RSS {out['peak_rss_mib']:.0f} MiB (corpus loaded: {out['rss_with_corpus_loaded_mib']:.0f})",
            flush=True,
        )
    base = rows[0]["us_per_article"]
    for r in rows[1:]:
        print(f"cost per article at {r['articles']} / at {rows[0]['articles']}: {r['us_per_article'] / base:.2f}")


# ---------------------------------------------------------------------------------------------------------------
# The real-text development set.

CANDIDATES = {
    "previous rules' thresholds: Jaccard 0.25 only, names share 0.6, figures unchecked, no lead check": {
        "containment": 1.0,
        "number_overlap": 0.0,
        "fact_overlap": 0.6,
        "lead_overlap": 0.0,
    },
    "+ figures compared after the same word (number_overlap 0.5)": {
        "containment": 1.0,
        "fact_overlap": 0.6,
        "lead_overlap": 0.0,
    },
    "+ containment 0.4": {"containment": 0.4, "fact_overlap": 0.6, "lead_overlap": 0.0},
    "+ names share 0.5 x containment": {"containment": 0.4, "fact_overlap": 0.5, "lead_overlap": 0.0},
    "+ lead check (0.25 of the earlier's first 40 words in the later's first 160)": {
        "containment": 0.4,
        "fact_overlap": 0.5,
    },
    "+ containment 0.3": {"fact_overlap": 0.5},
    "+ names share 0.2 x containment (default)": {},
    "names check off": {"fact_overlap": 0.0},
    "containment 0.25": {"containment": 0.25},
    "Jaccard 0.3": {"threshold": 0.3},
    "word 2-shingles": {"shingle_size": 2},
    "word 1-shingles, Jaccard 0.5": {"shingle_size": 1, "threshold": 0.5},
    "clusters chain through copies (follow_copies 0, as components)": {"follow_copies": 0.0},
    "no lead check (lead_overlap 0)": {"lead_overlap": 0.0},
    "no lead keys (bands only: lead_keys 0)": {"lead_keys": 0},
    "4 lead keys": {"lead_keys": 4},
    "16 lead keys": {"lead_keys": 16},
}


def load_devset(seed: int):
    from benchmarks.neardup_corpus import build_devset

    return build_devset(seed=seed)


def real_quality(devset, settings) -> dict:
    """Recall per kind of copy, precision, and merged hard negatives of one run of the pure functions."""
    from transforms.neardup import find_near_copies, signature_records

    t = time.process_time()
    records = [r for r in signature_records(devset.articles, settings) if r is not None]
    signing = time.process_time() - t
    t = time.process_time()
    verdicts = find_near_copies(records, (), settings)
    matching = time.process_time() - t
    root = lambda aid: verdicts[aid].canonical_id if aid in verdicts else aid  # noqa: E731

    def recall(select) -> str:
        group = [c for c, info in devset.copies.items() if select(info)]
        found = sum(root(c) == root(devset.copies[c]["original"]) for c in group)
        return f"{found / max(1, len(group)):.3f} ({found}/{len(group)})"

    marked = [aid for aid, v in verdicts.items() if not v.is_canonical]
    wrong = [aid for aid in marked if devset.truth[aid] != devset.truth.get(verdicts[aid].canonical_id)]
    negatives = {}
    for a, b, kind in devset.negatives:
        total, merged = negatives.get(kind, (0, 0))
        negatives[kind] = (total + 1, merged + (root(a) == root(b)))
    edit = lambda info: info["kind"] == "edit"  # noqa: E731
    cut = lambda info: info["kind"] == "cut"  # noqa: E731
    return {
        "articles": len(devset.articles),
        "recall": {
            "edit (all)": recall(edit),
            "edit 5-10%": recall(lambda i: edit(i) and i["edit_rate"] < 0.10),
            "edit 10-15%": recall(lambda i: edit(i) and 0.10 <= i["edit_rate"] < 0.15),
            "edit 15-20%": recall(lambda i: edit(i) and i["edit_rate"] >= 0.15),
            "edit, last 1-2 paragraphs cut": recall(lambda i: edit(i) and i["paragraphs_cut"] > 0),
            "edit, furniture lines": recall(lambda i: edit(i) and i["furniture"]),
            "edit, headline shuffled": recall(lambda i: edit(i) and i["headline_shuffled"]),
            "cut (all)": recall(cut),
            "cut to 30-45%": recall(lambda i: cut(i) and i["kept_share"] < 0.45),
            "cut to 45-70%": recall(lambda i: cut(i) and i["kept_share"] >= 0.45),
            "cut, other headline": recall(lambda i: cut(i) and i["new_headline"]),
        },
        "precision": f"{1 - len(wrong) / max(1, len(marked)):.4f} ({len(wrong)} of {len(marked)} marked wrong)",
        "originals_marked_as_copies": sum(devset.truth[aid] == aid for aid in wrong),
        "false_merges": {k: f"{merged / total:.3f} ({merged}/{total})" for k, (total, merged) in negatives.items()},
        "cpu_seconds": {"signatures": round(signing, 2), "banding+verification+clusters": round(matching, 2)},
    }


def cmd_quality(args) -> None:
    settings = _settings(args)
    quality = real_quality(load_devset(args.seed), settings)
    print(json.dumps({"settings": dataclasses.asdict(settings), **quality}, indent=2))


def _settings(args) -> NearDedupSettings:
    return NearDedupSettings(**json.loads(args.settings)) if args.settings else NearDedupSettings()


def cmd_candidates(args) -> None:
    """One row per candidate rule (changes to the default settings) on the development set, as a Markdown table."""
    devset = load_devset(args.seed)
    rate = signature_rate(devset.articles, NearDedupSettings(), repeats=3)
    print(f"{len(devset.articles)} articles; signatures/s with the default settings: {rate:.0f} (median of 3)\n")
    print("| candidate | edit | edit 15-20% | cut | precision | same_event | template | shared_quote |")
    print("|---|---|---|---|---|---|---|---|")
    for name, change in CANDIDATES.items():
        q = real_quality(devset, dataclasses.replace(NearDedupSettings(), **change))
        r, f = q["recall"], q["false_merges"]
        cells = [r["edit (all)"], r["edit 15-20%"], r["cut (all)"], q["precision"].split()[0]]
        cells += [f[k].split()[0] for k in ("same_event", "template", "shared_quote")]
        print(f"| {name} | " + " | ".join(c.split()[0] for c in cells) + " |", flush=True)


def signature_rate(articles, settings, repeats: int = 3, batch: int = 256) -> float:
    """Signatures per CPU second over `articles` in batches of `batch` (as the composite's BatchElements), median."""
    from transforms.neardup import signature_records

    signature_records(articles[:batch], settings)  # the power tables grow once per process
    rates = []
    for _ in range(repeats):
        t = time.process_time()
        for start in range(0, len(articles), batch):
            signature_records(articles[start : start + batch], settings)
        rates.append(len(articles) / (time.process_time() - t))
    return float(np.median(rates))


def cmd_speed(args) -> None:
    devset = load_devset(args.seed)
    settings = _settings(args)
    words = np.mean([len(a.title.split()) + len(a.text.split()) for a in devset.articles])
    english = [a for a in devset.articles if a.language == "en"]
    print(
        json.dumps(
            {
                "code": str(Path(sys.modules["transforms.neardup"].__file__).parents[2]),
                "articles": len(devset.articles),
                "mean_words": round(float(words), 1),
                "signatures_per_cpu_second": round(signature_rate(devset.articles, settings)),
                "signatures_per_cpu_second_english_news": round(signature_rate(english, settings)),
                "english_news_mean_words": round(float(np.mean([len(a.text.split()) for a in english])), 1),
                "peak_rss_mib": round(peak_rss_mib(), 1),
            },
            indent=2,
        )
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("quality", "candidates", "speed", "beam"):
        p = sub.add_parser(name)
        p.add_argument("--seed", type=int, default=13)
        p.add_argument("--settings", default="", help="JSON of NearDedupSettings fields to change")
        p.add_argument("--repo", default="", help="measure the transforms/ of another checkout")
    for name in ("synthetic", "compare"):
        p = sub.add_parser(name)
        p.add_argument("--articles", type=int, default=100_000 if name == "synthetic" else 20_000)
        p.add_argument("--seed", type=int, default=7)
        p.add_argument("--settings", default="", help="JSON of NearDedupSettings fields to change")
    p = sub.add_parser("scaling")
    p.add_argument("--sizes", default="20000,100000,200000")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--settings", default="")
    args = parser.parse_args(argv)
    commands = {
        "quality": cmd_quality,
        "candidates": cmd_candidates,
        "speed": cmd_speed,
        "beam": cmd_beam,
        "synthetic": cmd_synthetic,
        "scaling": cmd_scaling,
        "compare": cmd_compare,
    }
    commands[args.command](args)


def cmd_compare(args) -> None:
    """MinHash (one permutation hashing, ours) against k-permutation MinHash, datasketch and SimHash, on the
    SYNTHETIC corpus."""
    settings = NearDedupSettings()
    corpus = cached_corpus(args.articles, seed=args.seed)
    docs = [(a.title, a.text) for a in corpus.articles]
    index = {a.article_id: i for i, a in enumerate(corpus.articles)}
    rng = np.random.default_rng(args.seed)
    copy_pairs = [(index[c], index[corpus.truth[c]]) for c in corpus.info]
    event_pairs = [(index[a], index[b]) for a, b, kind in corpus.hard_pairs if kind != "template"]
    template_pairs = [(index[a], index[b]) for a, b, kind in corpus.hard_pairs if kind == "template"]
    sample = lambda pairs, k: [pairs[i] for i in rng.choice(len(pairs), min(k, len(pairs)), replace=False)]  # noqa: E731
    copy_pairs, event_pairs, template_pairs = (
        sample(copy_pairs, 1500),
        sample(event_pairs, 1500),
        sample(template_pairs, 750),
    )
    hard_pairs = event_pairs + template_pairs
    exact = {}
    sets = {}
    for i, j in copy_pairs + hard_pairs:
        for k in (i, j):
            if k not in sets:
                sets[k] = shingles(*docs[k], settings.shingle_size)
        a, b = sets[i], sets[j]
        exact[(i, j)] = len(a & b) / max(1, len(a | b))

    def shingle_batches():
        for start in range(0, len(docs), 256):
            yield start, shingle_hashes(docs[start : start + 256], settings.shingle_size, settings.max_chars)

    results = {}
    # Ours: one permutation hashing with densification.
    t = time.process_time()
    oph = np.empty((len(docs), settings.num_perm), dtype=np.uint32)
    for start, batch in shingle_batches():
        oph[start : start + len(batch.word_counts)] = minhash_from_shingles(batch, settings.num_perm, settings.seed)
    results["minhash_oph_numpy (ours)"] = (
        len(docs) / (time.process_time() - t),
        lambda i, j: float((oph[i] == oph[j]).mean()),
    )

    # k independent permutations, (a*x + b) mod 2^64 over the same 64-bit shingle hashes, as one matrix operation.
    t = time.process_time()
    prng = np.random.default_rng(1)
    mult = prng.integers(1, 2**63, settings.num_perm, dtype=np.uint64) | np.uint64(1)
    add = prng.integers(0, 2**63, settings.num_perm, dtype=np.uint64)
    kperm = np.full((len(docs), settings.num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for start, batch in shingle_batches():
            order = np.argsort(batch.doc, kind="stable")
            bounds = np.searchsorted(batch.doc[order], np.arange(len(batch.word_counts) + 1))
            for d in range(len(batch.word_counts)):
                x = batch.hashes[order[bounds[d] : bounds[d + 1]]]
                if len(x):
                    kperm[start + d] = (x[:, None] * mult[None, :] + add[None, :]).min(axis=0)
    results["minhash_kperm_numpy"] = (
        len(docs) / (time.process_time() - t),
        lambda i, j: float((kperm[i] == kperm[j]).mean()),
    )

    # datasketch: the library's MinHash, fed the same shingles as bytes (its own SHA-1 hashing, update_batch).
    try:
        import datasketch

        subset = sorted({k for pair in copy_pairs + hard_pairs for k in pair})
        t = time.process_time()
        sketches = {}
        for k in subset:
            m = datasketch.MinHash(num_perm=settings.num_perm, seed=1)
            m.update_batch([" ".join(s).encode("utf-8") for s in shingles(*docs[k], settings.shingle_size)])
            sketches[k] = m
        rate = len(subset) / (time.process_time() - t)
        results[f"datasketch {datasketch.__version__} MinHash"] = (rate, lambda i, j: sketches[i].jaccard(sketches[j]))
    except ImportError:
        print("datasketch not installed: pip install datasketch to compare it")

    # SimHash: 64 bits, each the sign of the sum over shingles of +1/-1 by that bit of the shingle hash.
    t = time.process_time()
    sim = np.zeros(len(docs), dtype=np.uint64)
    for start, batch in shingle_batches():
        bits = np.unpackbits(batch.hashes.view(np.uint8).reshape(-1, 8), axis=1).astype(np.int32) * 2 - 1
        totals = np.zeros((len(batch.word_counts), 64), dtype=np.int32)
        np.add.at(totals, batch.doc, bits)
        packed = np.packbits(totals > 0, axis=1).view(np.uint64)[:, 0]
        sim[start : start + len(batch.word_counts)] = packed
    hamming = lambda i, j: 1.0 - bin(int(sim[i] ^ sim[j])).count("1") / 64  # noqa: E731
    results["simhash_64_numpy"] = (len(docs) / (time.process_time() - t), hamming)

    print(
        f"{len(docs)} articles, mean {np.mean([len(d[0].split()) + len(d[1].split()) for d in docs]):.0f} words; "
        f"{len(copy_pairs)} copy pairs, {len(event_pairs)} same-event and {len(template_pairs)} template negatives"
    )
    print("recall: copy pairs scoring above the similarity that at most 1% of the negatives of that kind reach")
    header = ("method", "articles/s", "|est-J| mean", "p95", "recall vs same-event", "recall vs template")
    print(f"{header[0]:30s} {header[1]:>10s} {header[2]:>12s} {header[3]:>6s} {header[4]:>21s} {header[5]:>19s}")
    for name, (rate, score) in results.items():
        copies = np.array([score(i, j) for i, j in copy_pairs])
        recalls = []
        for negatives in (event_pairs, template_pairs):
            cut = np.quantile([score(i, j) for i, j in negatives], 0.99)
            recalls.append(f"{(copies > cut).mean():.4f} (>{cut:.2f})")
        if name.startswith("simhash"):
            err = "n/a", "n/a"
        else:
            e = np.abs(np.array([score(*p) - exact[p] for p in copy_pairs + hard_pairs]))
            err = f"{e.mean():.4f}", f"{np.quantile(e, 0.95):.3f}"
        print(f"{name:30s} {rate:10.0f} {err[0]:>12s} {err[1]:>6s} {recalls[0]:>21s} {recalls[1]:>19s}")


def cmd_beam(args) -> None:
    """The batch plane's decisions and writes (pipeline/plane/, exact dedup off) over the real-text development set,
    on the DirectRunner: its output and counters against the pure functions on the same articles."""
    import tempfile

    from tests.plane import run_plane
    from transforms.dedup import DedupSettings
    from transforms.neardup import find_near_copies, signature_records

    settings = _settings(args)
    corpus = load_devset(args.seed)
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        off = DedupSettings(by_url=False, by_guid=False, by_content=False)
        result = run_plane(Path(tmp), corpus.articles, settings, off, chunk_size=2000)
    seconds = time.perf_counter() - wall
    kept = {r["article_id"] for r in result.rows}
    counters = {f"{ns}/{k}": v for ns in ("neardup", "dedup") for k, v in sorted(result.counters[ns].items())}
    pure = find_near_copies([r for r in signature_records(corpus.articles, settings) if r], (), settings)
    pure_kept = {a.article_id for a in corpus.articles if a.article_id not in pure or pure[a.article_id].is_canonical}
    print(
        json.dumps(
            {
                "articles": len(corpus.articles),
                "written": len(kept),
                "seconds": round(seconds, 1),
                "articles_per_s": round(len(corpus.articles) / seconds),
                "same_as_pure_functions": kept == pure_kept,
                "counters": counters,
                "peak_rss_mib": round(peak_rss_mib(), 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
