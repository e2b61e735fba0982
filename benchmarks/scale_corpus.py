"""A synthetic corpus of any size (10,000 to 1,000,000 articles and more) whose duplicate rates do not move with its
size, written to disk as RSS feeds one feed at a time: the input of benchmarks/scale.py.

    python benchmarks/scale_corpus.py --articles 1000000 --check      # write the feeds (cached), then measure them
    from benchmarks.scale_corpus import ScaleCorpus
    corpus = ScaleCorpus(100_000, seed=0)
    directory = corpus.write()            # feed0.xml ... feed{F-1}.xml, manifest.json (cached by size, seed, feeds)
    rates = check(corpus)                 # benchmarks/scale_check.py: what the corpus holds, measured

Why synthetic: the real text of ../shared/data gives a few thousand paragraphs per language, so at 100,000 articles
every paragraph recurs dozens of times and unrelated articles share whole sentences; the near-duplicate stage then
finds more candidates per article the larger the corpus, and a scale benchmark would measure that growth instead of
the pipeline. So every word still comes from real text, but no run of three words is shared by chance:

- Originals (about 80%): each in one of the eleven languages of benchmarks/corpus.py (same shares). Its length in
  words is drawn from the real article bodies of extraction-dev (median 529 words, capped at MAX_WORDS; Japanese
  counts two characters a word). Its paragraphs are 2-4 real sentences of that language (langid-dev; for English
  also AG News descriptions), its headline a real headline or short sentence; then every second word (every second
  character in Japanese; words as newsbeam's shingles split them) is replaced by a word drawn uniformly from that
  language's vocabulary (the distinct words of the same real text, 1,000-26,000 per language). Two articles that
  drew the same real sentence then share one of its three-word shingles with odds of one in the vocabulary size, and
  one of its four-word lead keys with odds of one in its square, however large the corpus. (Every third word was not
  enough: the unrelated originals sharing an LSH bucket key went from 2.4 to 16 per 1,000 between 10,000 and 100,000
  articles, through the lead keys of leads that drew the same sentence.) The text keeps its language's words,
  sentence shapes and lengths, which is what the language detector and the per-article costs see.
- Exact copies (EXACT_SHARE, 10%): an earlier original, same headline and text, in another feed of its language,
  under another URL and GUID, 10 minutes to 10 hours later.
- Near copies (NEAR_SHARE, 10%): an earlier original, in another feed, changed one of four ways (a quarter each):
  `edit` (3-12% of the words deleted, replaced or followed by another word of the language), `cut` (only the top
  40-80% of its paragraphs, or of its words when it has one paragraph), `headline` (a new headline and an "Also
  read" line), `furniture` (the outlet's lines above and below the text, newsletter prompts or breadcrumbs, which
  newsbeam's cleaning strips, and 1-3% of the words edited).
  The original of a copy is drawn uniformly from the originals before it, so each story has about 0.25 copies at
  every size (a few have several: wire stories are syndicated unevenly).

Everything is a function of (seed, article number): the plan (role, language, feed, original, time) is a few numpy
arrays drawn once (about 20 bytes per article), and an article's text is generated from its own seeded
random.Random when its feed is written or checked. No step holds the corpus.

`benchmarks/scale_check.py` measures the corpus it wrote: the exact-copy rate by content hash (newsbeam's own
`content_hash`, of every article), the near-copy rate as the share of copies whose true Jaccard similarity (or
containment) with their original passes newsbeam's thresholds (on a sample of 2,000), the true Jaccard of 2,000
random same-language pairs of originals, and how many bucket keys (newsbeam's own LSH bands and lead keys) two
unrelated originals share: the candidates that would make the near-duplicate stage grow faster than the corpus.
Those keys are computed for every original up to 200,000 of them, for a random 200,000 beyond (signing is most of
the check's time); the rate per pair, times the pairs of all the originals, gives what the whole corpus holds."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import json
import random
import re
import sys
import time
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.corpus import LANGUAGE_MIX  # noqa: E402  (the same eleven languages, the same shares)
from benchmarks.neardup_corpus import FURNITURE  # noqa: E402

DATA = REPO.parent / "shared" / "data"
VERSION = 2  # part of the cache key: bump when the text a seed gives changes
EXACT_SHARE = 0.10
NEAR_SHARE = 0.10
NEAR_KINDS = ("edit", "cut", "headline", "furniture")
MAX_WORDS = 3000
START = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
SPAN_SECONDS = 72 * 3600
ORIGINAL, EXACT, NEAR = 0, 1, 2
CODES = tuple(LANGUAGE_MIX)
_NO_SPACES = {"ja"}
# Words as newsbeam's shingles split them (runs of letters and digits; one character each in Japanese): "U.S." or
# "l'activité" are two words, so drawing every second whitespace-separated word would leave shared shingles.
_TOKEN = {False: re.compile(r"\w+"), True: re.compile(r"\w")}
_SPLIT = {False: re.compile(r"(\w+)"), True: re.compile(r"(\w)")}


@dataclasses.dataclass
class Pool:
    """The real text of one language: sentences (or AG News descriptions), headlines and distinct words."""

    units: list[str]
    headlines: list[str]
    vocabulary: list[str]


def _vocabulary(code: str, texts: list[str]) -> list[str]:
    """The distinct words (characters, without spaces) of `texts`, digits aside: what `_scramble` draws from."""
    token = _TOKEN[code in _NO_SPACES]
    return sorted({w for t in texts for w in token.findall(t) if not w.isdigit()})


def load_pools(data: Path = DATA) -> tuple[dict[str, Pool], list[int]]:
    """The pools of every language and the real article lengths (words of the extraction-dev bodies)."""
    pools = {}
    for code in CODES:
        lines = (data / "langid-dev" / f"{code}.txt").read_text(encoding="utf-8").splitlines()
        sentences = [s.strip() for s in lines if s.strip()]
        pools[code] = Pool(list(sentences), [s for s in sentences if len(s) < 120], [])
    with open(data / "agnews-train" / "train.csv", encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle):
            if len(row) >= 3 and row[2].strip():
                pools["en"].headlines.append(row[1].strip())
                pools["en"].units.append(row[2].strip())
    for code, pool in pools.items():
        pool.vocabulary = _vocabulary(code, pool.units + pool.headlines)
    bodies = json.loads((data / "extraction-dev" / "ground-truth.json").read_text(encoding="utf-8"))
    lengths = sorted(
        min(MAX_WORDS, n) for n in (len((e.get("articleBody") or "").split()) for e in bodies.values()) if n >= 10
    )
    return pools, lengths


def default_feeds(articles: int) -> int:
    """100 feeds up to 100,000 articles (as benchmarks/e2e.py), then 1,000 entries a feed."""
    return max(100, articles // 1000)


@dataclasses.dataclass(frozen=True)
class Item:
    """One generated article, as its feed carries it."""

    number: int
    feed: int
    language: str
    role: int
    original: int  # its own number for an original
    kind: str  # a near copy's change, else ""
    title: str
    paragraphs: tuple[str, ...]
    published: dt.datetime


class ScaleCorpus:
    """`articles` articles over `feeds` single-language feeds (every language in each when there are fewer feeds than
    languages), planned from `seed` (see the module doc)."""

    def __init__(self, articles: int, seed: int = 0, feeds: int | None = None, data: Path = DATA):
        self.articles = articles
        self.seed = seed
        self.feeds = feeds or default_feeds(articles)
        if self.feeds < 1:
            raise ValueError("at least one feed")
        self.pools, self.lengths = load_pools(data)
        self._vocabulary = {code: np.array(pool.vocabulary, dtype=object) for code, pool in self.pools.items()}
        self._plan()

    # The plan: a few arrays, every draw vectorised from one generator.

    def _plan(self) -> None:
        n, rng = self.articles, np.random.default_rng(self.seed)
        draw = rng.random(n)
        role = np.where(draw < EXACT_SHARE, EXACT, np.where(draw < EXACT_SHARE + NEAR_SHARE, NEAR, ORIGINAL))
        role[0] = ORIGINAL
        originals = np.flatnonzero(role == ORIGINAL)
        before = np.searchsorted(originals, np.arange(n))  # originals with a smaller number
        copy = role != ORIGINAL
        role[copy & (before == 0)] = ORIGINAL
        copy = role != ORIGINAL
        pick = np.minimum((rng.random(n) * before).astype(np.int64), np.maximum(before - 1, 0))
        original = np.arange(n)
        original[copy] = originals[pick[copy]]
        weights = np.array([LANGUAGE_MIX[c] for c in CODES])
        language = rng.choice(len(CODES), size=n, p=weights / weights.sum()).astype(np.int8)
        language[copy] = language[original[copy]]
        if self.feeds < len(CODES):
            self._plan_mixed(rng, n, role, original, language)
            return
        # Feeds get languages in proportion to the mix (at least one each): a feed is one outlet in one language.
        count = {i: max(1, round(LANGUAGE_MIX[c] * self.feeds)) for i, c in enumerate(CODES)}
        while sum(count.values()) != self.feeds:
            count[0] += 1 if sum(count.values()) < self.feeds else -1
        self.feed_language = np.repeat(np.arange(len(CODES)), [count[i] for i in range(len(CODES))]).astype(np.int8)
        first_feed = np.concatenate(([0], np.cumsum([count[i] for i in range(len(CODES))])))[:-1]
        feeds_of_language = np.array([count[i] for i in range(len(CODES))])
        slot = (rng.random(n) * feeds_of_language[language]).astype(np.int64)
        feed = first_feed[language] + slot
        # A copy goes to another feed of its language (when there is one): one of the others, uniformly.
        others = feeds_of_language[language] - 1
        shift = 1 + (rng.random(n) * np.maximum(others, 1)).astype(np.int64)
        own = feed[original] - first_feed[language]
        moved = first_feed[language] + (own + shift) % feeds_of_language[language]
        feed[copy] = np.where(others[copy] > 0, moved[copy], feed[original][copy])
        self._keep_plan(rng, n, role, original, language, feed, copy)

    def _plan_mixed(self, rng: np.random.Generator, n: int, role, original, language) -> None:
        """Fewer feeds than languages (say, one feed of 100,000 entries): every feed carries every language (its
        channel declares none), articles are spread evenly, and a copy goes to another feed when there is one. The
        texts, roles, times and near-copy kinds are drawn as for any number of feeds (the same generator calls, in
        the same order), so only the feed of each article differs."""
        self.feed_language = np.full(self.feeds, -1, dtype=np.int8)
        feed = (rng.random(n) * self.feeds).astype(np.int64)
        shift = 1 + (rng.random(n) * max(self.feeds - 1, 1)).astype(np.int64)
        copy = role != ORIGINAL
        moved = (feed[original] + shift) % self.feeds
        feed[copy] = moved[copy] if self.feeds > 1 else feed[original][copy]
        self._keep_plan(rng, n, role, original, language, feed, copy)

    def _keep_plan(self, rng: np.random.Generator, n: int, role, original, language, feed, copy) -> None:
        """Draw the times (a copy comes 10 minutes to 10 hours after its original) and near-copy kinds, the same
        generator calls whatever the feed layout, and keep the plan."""
        seconds = rng.integers(0, SPAN_SECONDS, n)
        later = rng.integers(600, 36_000, n)
        seconds[copy] = seconds[original[copy]] + later[copy]
        self.role = role.astype(np.int8)
        self.original = original.astype(np.int32)
        self.language = language
        self.feed = feed.astype(np.int32)
        self.seconds = seconds.astype(np.int64)
        self.kind = rng.integers(0, len(NEAR_KINDS), n).astype(np.int8)

    def planned_rates(self) -> dict:
        """The shares the plan drew (what the generator meant; `check` measures what it made)."""
        n = self.articles
        return {
            "articles": n,
            "feeds": self.feeds,
            "exact_copies": float(np.mean(self.role == EXACT)),
            "near_copies": float(np.mean(self.role == NEAR)),
            "originals": float(np.mean(self.role == ORIGINAL)),
            "languages": {c: round(float(np.mean(self.language == i)), 4) for i, c in enumerate(CODES)},
            "near_kinds": {k: int(np.sum((self.role == NEAR) & (self.kind == i))) for i, k in enumerate(NEAR_KINDS)},
        }

    # Text: a function of (seed, number) alone.

    def _rng(self, number: int, salt: int = 0) -> random.Random:
        return random.Random((self.seed << 42) ^ (salt << 40) ^ number)

    def _scramble(self, texts: list[str], code: str, rng: np.random.Generator) -> list[str]:
        """Every second word (character, in Japanese) replaced by a word drawn uniformly from the language's
        vocabulary, punctuation and spacing kept: every shingle of three words holds a drawn word, every four-word
        lead key two."""
        vocabulary = self._vocabulary[code]
        split = [_SPLIT[code in _NO_SPACES].split(t) for t in texts]  # separators at even places, words at odd
        draws = vocabulary[rng.integers(len(vocabulary), size=sum(len(t) for t in split) // 4 + len(split))].tolist()
        at, out = 0, []
        for parts, first in zip(split, rng.integers(2, size=len(split)).tolist()):
            count = len(range(1 + 2 * first, len(parts), 4))
            parts[1 + 2 * first :: 4] = draws[at : at + count]
            at += count
            out.append("".join(parts))
        return out

    def original_text(self, number: int) -> tuple[str, tuple[str, ...]]:
        """(headline, paragraphs) of original `number`."""
        code = CODES[self.language[number]]
        pool, rng = self.pools[code], np.random.default_rng((self.seed, number))
        target = self.lengths[int(rng.integers(len(self.lengths)))]
        glue = "" if code in _NO_SPACES else " "
        paragraphs, size = [], 0
        while size < target:
            # Paragraphs of 2-4 real units (sentences; for English also AG News descriptions), drawn 16 at a time.
            for units in np.split(rng.integers(len(pool.units), size=64), np.cumsum(rng.integers(2, 5, 16)))[:-1]:
                paragraph = glue.join(pool.units[u] for u in units.tolist())
                paragraphs.append(paragraph)
                size += len(paragraph) // 2 if code in _NO_SPACES else paragraph.count(" ") + 1
                if size >= target:
                    break
        title = pool.headlines[int(rng.integers(len(pool.headlines)))]
        title, *paragraphs = self._scramble([title, *paragraphs], code, rng)
        return title, tuple(paragraphs)

    def _furniture(self, rng: random.Random) -> str:
        headline = self.pools["en"].headlines[rng.randrange(len(self.pools["en"].headlines))]
        return rng.choice(FURNITURE).format(headline=headline, word=rng.choice(("World", "Business", "Sport")))

    def _edit(self, body: list[str], code: str, rate: float, rng: random.Random) -> list[str]:
        """Each word, with probability `rate`, deleted, replaced or followed by a vocabulary word, in equal parts."""
        vocabulary, changed = self.pools[code].vocabulary, []
        for paragraph in body:
            tokens = list(paragraph) if code in _NO_SPACES else paragraph.split()
            kept = []
            for token in tokens:
                if rng.random() >= rate:
                    kept.append(token)
                    continue
                op = rng.randrange(3)
                if op == 1:
                    kept.append(rng.choice(vocabulary))
                elif op == 2:
                    kept.extend((token, rng.choice(vocabulary)))
            changed.append(("" if code in _NO_SPACES else " ").join(kept))
        return [p for p in changed if p]

    def _near_copy(self, number: int, title: str, paragraphs: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
        code = CODES[self.language[number]]
        rng, kind = self._rng(number, 1), NEAR_KINDS[self.kind[number]]
        body = list(paragraphs)
        if kind == "edit":
            body = self._edit(body, code, rng.uniform(0.03, 0.12), rng)
        elif kind == "cut":
            share = rng.uniform(0.4, 0.8)
            if len(body) > 1:
                body = body[: max(1, round(share * len(body)))]
            else:
                tokens = list(body[0]) if code in _NO_SPACES else body[0].split()
                body = [("" if code in _NO_SPACES else " ").join(tokens[: max(3, round(share * len(tokens)))])]
        elif kind == "headline":
            headline = rng.choice(self.pools[code].headlines)
            title = self._scramble([headline], code, np.random.default_rng((self.seed, number, 1)))[0]
            body.append(f"Also read: {self._furniture(rng)}")
        else:
            # The outlet's lines above and below, and a light copy-edit: newsbeam's cleaning strips furniture lines,
            # and a copy that differed only by them would be an exact copy once cleaned.
            body = [self._furniture(rng), *self._edit(body, code, rng.uniform(0.01, 0.03), rng), self._furniture(rng)]
        if (title, tuple(body)) == (title, paragraphs):  # an edit that changed nothing is still a near copy
            body.append(self._furniture(rng))
        return title, tuple(body)

    def item(self, number: int) -> Item:
        """Article `number`, generated."""
        role, original = int(self.role[number]), int(self.original[number])
        title, paragraphs = self.original_text(original)
        if role == NEAR:
            title, paragraphs = self._near_copy(number, title, paragraphs)
        return Item(
            number,
            int(self.feed[number]),
            CODES[self.language[number]],
            role,
            original,
            NEAR_KINDS[self.kind[number]] if role == NEAR else "",
            title,
            paragraphs,
            START + dt.timedelta(seconds=int(self.seconds[number])),
        )

    # Feeds on disk.

    @property
    def key(self) -> str:
        return f"n{self.articles}-s{self.seed}-f{self.feeds}-v{VERSION}"

    def write(self, root: Path = Path("/tmp/newsbeam-scale")) -> Path:
        """Write every feed as `<root>/<key>/feed<f>.xml` (one feed in memory at a time); `manifest.json` last, so a
        directory with one is complete and is reused."""
        directory = root / self.key
        if (directory / "manifest.json").exists():
            return directory
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        from transforms.dedup import content_hash

        order = np.argsort(self.feed, kind="stable")
        bounds = np.searchsorted(self.feed[order], np.arange(self.feeds + 1))
        hashes = np.zeros(self.articles, dtype=np.uint64)  # newsbeam's content hash (64 bits of it), for `check`
        total = 0
        for f in range(self.feeds):
            declared = f"<language>{CODES[self.feed_language[f]]}</language>" if self.feed_language[f] >= 0 else ""
            parts = [
                '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                f"<title>Outlet {f}</title><link>https://feed{f}.example/</link>{declared}"
            ]
            for number in order[bounds[f] : bounds[f + 1]].tolist():
                item = self.item(number)
                hashes[number] = int(content_hash(item.title, "\n\n".join(item.paragraphs))[:16], 16)
                html = "".join(f"<p>{escape(p)}</p>" for p in item.paragraphs)
                parts.append(
                    f"<item><title>{escape(item.title)}</title>"
                    f"<link>https://feed{f}.example/news/a{number}?utm_source=rss</link>"
                    f"<guid>a{number}</guid><pubDate>{format_datetime(item.published)}</pubDate>"
                    f"<description>{escape(html)}</description></item>"
                )
            parts.append("</channel></rss>")
            body = "".join(parts).encode("utf-8")
            total += len(body)
            (directory / f"feed{f}.xml").write_bytes(body)
        np.save(directory / "content_hashes.npy", hashes)
        manifest = {
            **self.planned_rates(),
            "seed": self.seed,
            "version": VERSION,
            "bytes": total,
            "seconds": round(time.perf_counter() - started, 1),
        }
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
        return directory


def main() -> None:
    from benchmarks.scale_check import cached_check, format_rates

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--feeds",
        type=int,
        help="default: 100, or one per 1,000 articles above 100,000 (fewer than 11: mixed languages)",
    )
    parser.add_argument("--root", type=Path, default=Path("/tmp/newsbeam-scale"), help="where feeds are cached")
    parser.add_argument("--check", action="store_true", help="measure the rates (signs every article)")
    args = parser.parse_args()
    started = time.perf_counter()
    corpus = ScaleCorpus(args.articles, args.seed, args.feeds)
    directory = corpus.write(args.root)
    print(f"{directory} ({time.perf_counter() - started:.0f} s)")
    print(format_rates(corpus.planned_rates(), cached_check(corpus, directory) if args.check else None))


if __name__ == "__main__":
    main()
