"""A near-duplicate development set made from real text only (../shared/data), the way issue 13 describes it.

    from benchmarks.neardup_corpus import build_devset
    devset = build_devset(seed=13)        # DevSet(articles, truth, copies, negatives)

Originals:
- the article bodies of extraction-dev/ground-truth.json (English news; paragraphs split on blank lines, then on
  line breaks), titled with the words of their URL slug;
- the sentences of langid-dev, grouped by language into articles of 3-8 paragraphs of 2-4 sentences (every sentence
  used once), titled with the first words of one more sentence.

Copies of an original (each in another feed, 10 minutes to 6 hours later, a wire link with tracking parameters):
- `edit`: 60% of the originals get one. Half of those with 4 or more paragraphs lose their last 1 or 2 paragraphs;
  a word edit rate drawn uniformly from 5% to 20%, each word being deleted, replaced by a word of another article or
  followed by an inserted word of another article, in equal parts; 70% get a furniture line at a random position and
  another at the end; 40% get their headline's words shuffled.
- `cut`: originals of 3 or more paragraphs, 40% of them, cut from the top to 30-70% of their paragraphs (at least
  one), with up to 5% of the words edited as above, one paragraph of another article (of the corpus, so chaining
  through it can happen) added at a random position, and half get another headline (the first words of their lead).

Hard negatives (pairs that must stay apart; made from a third of the originals, kept out of the copy pool, each used
once):
- `same_event`: an original already written, and another article whose numbers and capitalised names are replaced
  by draws from the first's (same names, places and numbers, different text);
- `template`: the first 1-3 paragraphs of an article with at least 3 numbers, and the same with every number changed
  and, for half of them, the names swapped for another article's (weather, market closes, results);
- `shared_quote`: two articles of 3 or more paragraphs that both carry one long paragraph (30+ words) of a third.

Everything is drawn from one seeded numpy generator: the same seed gives the same set.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path

import numpy as np

from transforms.article import Article, stable_id
from transforms.clock import UTC

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
T0 = dt.datetime(2026, 11, 20, tzinfo=UTC)

FURNITURE = (
    "Also Read :- {headline}",
    "Also Read: {headline}",
    "Follow us on Facebook and Twitter for the latest news and updates.",
    "Home > World > {word}",
    "Advertisement",
    "Click here to subscribe to our daily newsletter.",
    "Share this article on WhatsApp",
    "READ MORE: {headline}",
    "Download the app for breaking news alerts.",
    "Story continues below advertisement",
)
TRACKING = "?utm_source=wire&utm_medium=syndication&utm_campaign=feed&ref=rss"
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NAME = re.compile(r"(?<=[a-z,;] )[A-Z][\w'’-]+")
_NO_SPACES = {"ja", "zh", "th"}


@dataclasses.dataclass
class Original:
    key: str
    language: str
    title: str
    paragraphs: list[str]


@dataclasses.dataclass
class DevSet:
    articles: list[Article]
    truth: dict[str, str]  # article_id -> story id (its own id for an original)
    copies: dict[str, dict]  # copy article_id -> {"kind", "original", "edit_rate", ...}
    negatives: list[tuple[str, str, str]]  # (article_id, article_id, kind)


def _slug_title(url: str) -> str:
    path = url.rstrip("/").rsplit("/", 1)[-1]
    path = re.sub(r"\.\w+$", "", path)
    words = [w for w in re.split(r"[-_]+", path) if w.isalpha()]
    return " ".join(words[:14]).capitalize()


def load_originals(data: Path = DATA, rng: np.random.Generator | None = None) -> list[Original]:
    """The originals, from ground-truth.json article bodies and langid-dev sentences grouped into articles."""
    rng = rng or np.random.default_rng(0)
    out = []
    truth = json.loads((data / "extraction-dev" / "ground-truth.json").read_text(encoding="utf-8"))
    for key in sorted(truth):
        body, url = truth[key]["articleBody"], truth[key]["url"]
        blocks = [b for b in re.split(r"\n\s*\n", body) if b.strip()]
        paragraphs = [line.strip() for b in blocks for line in b.split("\n") if line.strip()]
        title = _slug_title(url) or " ".join(body.split()[:10])
        if sum(len(p.split()) for p in paragraphs) >= 30:
            out.append(Original(f"gt-{key[:12]}", "en", title, paragraphs))
    for path in sorted((data / "langid-dev").glob("*.txt")):
        if len(path.stem) != 2:
            continue
        lines = [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
        lines = [lines[i] for i in rng.permutation(len(lines))]
        at, number = 0, 0
        while True:
            n_par = int(rng.integers(3, 9))
            sizes = rng.integers(2, 5, n_par)
            need = 1 + int(sizes.sum())
            if at + need > len(lines):
                break
            title = " ".join(lines[at].split()[:10]) if path.stem not in _NO_SPACES else lines[at][:24]
            at += 1
            paragraphs = []
            for size in sizes.tolist():
                glue = "" if path.stem in {"ja", "zh"} else " "
                paragraphs.append(glue.join(lines[at : at + size]))
                at += size
            out.append(Original(f"lid-{path.stem}-{number}", path.stem, title, paragraphs))
            number += 1
    return out


def _tokens(paragraph: str, language: str) -> tuple[list[str], str]:
    """The words of a paragraph and the glue between them (2-character chunks where words take no spaces)."""
    if language in _NO_SPACES:
        return [paragraph[i : i + 2] for i in range(0, len(paragraph), 2)], ""
    return paragraph.split(), " "


def edit_words(paragraphs: list[str], rate: float, language: str, donors: list[str], rng) -> list[str]:
    """Each word, with probability `rate`, deleted, replaced by a donor word or followed by one, in equal parts."""
    out = []
    for paragraph in paragraphs:
        words, glue = _tokens(paragraph, language)
        kept = []
        for word in words:
            if rng.random() >= rate:
                kept.append(word)
                continue
            op = int(rng.integers(3))
            donor = donors[int(rng.integers(len(donors)))]
            if op == 1:
                kept.append(donor)
            elif op == 2:
                kept.extend((word, donor))
        if kept:
            out.append(glue.join(kept))
    return out


def _furniture(rng, headlines: list[str], words: list[str]) -> str:
    line = FURNITURE[int(rng.integers(len(FURNITURE)))]
    return line.format(headline=headlines[int(rng.integers(len(headlines)))], word=words[int(rng.integers(len(words)))])


def _replace_facts(text: str, numbers: list[str], names: list[str], rng) -> str:
    """`text` with its numbers and names replaced by draws from `numbers` / `names` (kept when a list is empty)."""
    if numbers:
        text = _NUMBER.sub(lambda m: numbers[int(rng.integers(len(numbers)))], text)
    if names:
        text = _NAME.sub(lambda m: names[int(rng.integers(len(names)))], text)
    return text


def _other_number(token: str, rng) -> str:
    digits = [c for c in token if c.isdigit()]
    while True:
        new = [str(int(rng.integers(1 if i == 0 and len(digits) > 1 else 0, 10))) for i in range(len(digits))]
        if new != digits:
            break
    it = iter(new)
    return "".join(next(it) if c.isdigit() else c for c in token)


def build_devset(seed: int = 13, data: Path = DATA, negatives_per_kind: int = 150) -> DevSet:
    """The development set: originals, their `edit` and `cut` copies, and hard-negative pairs, as Articles."""
    rng = np.random.default_rng(seed)
    originals = load_originals(data, rng)
    order = rng.permutation(len(originals))
    originals = [originals[i] for i in order]
    by_language: dict[str, list[Original]] = {}
    for o in originals:
        by_language.setdefault(o.language, []).append(o)
    donor_words = {
        lang: [w for o in group for p in o.paragraphs for w in _tokens(p, lang)[0]]
        for lang, group in by_language.items()
    }
    headlines = [o.title for o in originals if o.language == "en"]
    articles: list[Article] = []
    truth: dict[str, str] = {}
    copies: dict[str, dict] = {}

    def add(title: str, paragraphs: list[str], language: str, story: str, outlet: str, minutes: float) -> str:
        number = len(articles)
        url = f"https://{outlet}/news/{number}" + (TRACKING if story else "")
        article = Article(
            article_id=stable_id("devset", str(seed), str(number)),
            feed_url=f"https://{outlet}/feed.xml",
            source=outlet,
            url=url,
            guid=url,
            title=title,
            text="\n\n".join(paragraphs),
            language=language,
            published_at=T0 + dt.timedelta(minutes=minutes),
        )
        articles.append(article)
        truth[article.article_id] = story or article.article_id
        return article.article_id

    # A third of the originals (at random) are kept for the hard negatives; the rest are written and copied.
    n_neg = len(originals) // 3
    negative_pool, pool = originals[:n_neg], originals[n_neg:]
    written: list[tuple[Original, str, float]] = []
    for i, o in enumerate(pool):
        minutes = float(rng.uniform(0, 7 * 24 * 60))
        aid = add(o.title, o.paragraphs, o.language, "", f"outlet{i % 6}.test", minutes)
        written.append((o, aid, minutes))

    for o, aid, minutes in written:
        donors = donor_words[o.language]
        later = minutes + float(rng.uniform(10, 360))
        outlet = f"wire{int(rng.integers(6))}.test"
        if rng.random() < 0.6:
            paragraphs = list(o.paragraphs)
            cut = 0
            if len(paragraphs) >= 4 and rng.random() < 0.5:
                cut = int(rng.integers(1, 3))
                paragraphs = paragraphs[:-cut]
            rate = float(rng.uniform(0.05, 0.20))
            paragraphs = edit_words(paragraphs, rate, o.language, donors, rng)
            furniture = rng.random() < 0.7
            if furniture:
                paragraphs.insert(int(rng.integers(len(paragraphs) + 1)), _furniture(rng, headlines, donors))
                paragraphs.append(_furniture(rng, headlines, donors))
            title, shuffled = o.title, rng.random() < 0.4
            if shuffled:
                words, glue = _tokens(title, o.language)
                title = glue.join(words[i] for i in rng.permutation(len(words)))
            cid = add(title, paragraphs, o.language, aid, outlet, later)
            copies[cid] = {
                "kind": "edit",
                "original": aid,
                "edit_rate": rate,
                "paragraphs_cut": cut,
                "furniture": furniture,
                "headline_shuffled": shuffled,
            }
        if len(o.paragraphs) >= 3 and rng.random() < 0.4:
            share = float(rng.uniform(0.3, 0.7))
            keep = max(1, int(round(share * len(o.paragraphs))))
            rate = float(rng.uniform(0.0, 0.05))
            paragraphs = edit_words(o.paragraphs[:keep], rate, o.language, donors, rng)
            same_language = by_language[o.language]
            local = same_language[int(rng.integers(len(same_language)))]
            while local is o and len(same_language) > 1:
                local = same_language[int(rng.integers(len(same_language)))]
            at = int(rng.integers(len(paragraphs) + 1))  # drawn before the paragraph: the seed's set stays the same
            paragraphs.insert(at, local.paragraphs[int(rng.integers(len(local.paragraphs)))])
            title, new_title = o.title, rng.random() < 0.5
            if new_title:
                words, glue = _tokens(o.paragraphs[0], o.language)
                title = glue.join(words[: int(rng.integers(6, 11))])
            cid = add(title, paragraphs, o.language, aid, f"regional{int(rng.integers(6))}.test", later + 30)
            copies[cid] = {
                "kind": "cut",
                "original": aid,
                "kept_share": keep / len(o.paragraphs),
                "edit_rate": rate,
                "new_headline": new_title,
            }

    negatives = _negatives(negative_pool, written, add, rng, negatives_per_kind)
    return DevSet(articles, truth, copies, negatives)


def _negatives(pool: list[Original], written, add, rng, per_kind: int) -> list[tuple[str, str, str]]:
    """Up to `per_kind` pairs of each kind, in turn, until the pool has no original left that fits."""
    out = []
    with_names: dict[str, list[tuple[Original, str]]] = {}
    for o, aid, _ in written:
        if len(_NAME.findall(" ".join(o.paragraphs))) >= 3:
            with_names.setdefault(o.language, []).append((o, aid))
    available = list(pool)

    def draw(predicate) -> Original:
        """A random original that fits, used once: two negatives never share an article."""
        fits = [i for i, o in enumerate(available) if predicate(o)]
        if not fits:
            raise LookupError("no original left that fits")
        return available.pop(fits[int(rng.integers(len(fits)))])

    def when() -> float:
        return float(rng.uniform(0, 7 * 24 * 60))

    def same_event() -> tuple[str, str]:
        # B's text, the facts of A, an original already written (another outlet's own story on its event).
        b = draw(lambda o: len(o.paragraphs) >= 2 and o.language in with_names)
        a, ia = with_names[b.language][int(rng.integers(len(with_names[b.language])))]
        text_a = " ".join(a.paragraphs)
        numbers, names = _NUMBER.findall(text_a), _NAME.findall(text_a)
        b_paragraphs = [_replace_facts(p, numbers, names, rng) for p in b.paragraphs]
        title_b = _replace_facts(b.title, numbers, names, rng)
        return ia, add(title_b, b_paragraphs, b.language, "", "event-b.test", when())

    def template() -> tuple[str, str]:
        # The same paragraphs with other numbers (and, for half, other names).
        a = draw(lambda o: len(_NUMBER.findall(" ".join(o.paragraphs[:3]))) >= 3)
        take = 1
        while len(_NUMBER.findall(" ".join(a.paragraphs[:take]))) < 3:
            take += 1
        take = max(take, int(rng.integers(1, min(3, len(a.paragraphs)) + 1)))
        first = a.paragraphs[:take]
        names = []
        if rng.random() < 0.5:
            donors = [o for o in pool if o.language == a.language and len(_NAME.findall(" ".join(o.paragraphs))) >= 3]
            names = _NAME.findall(" ".join(donors[int(rng.integers(len(donors)))].paragraphs)) if donors else []
        second = [_NUMBER.sub(lambda m: _other_number(m.group(), rng), p) for p in first]
        second = [_replace_facts(p, [], names, rng) for p in second]
        title = _NUMBER.sub(lambda m: _other_number(m.group(), rng), a.title)
        ia = add(a.title, first, a.language, "", "template-a.test", when())
        return ia, add(title, second, a.language, "", "template-b.test", when())

    def shared_quote() -> tuple[str, str]:
        # Two unrelated articles carry one long paragraph of a third.
        a = draw(lambda o: len(o.paragraphs) >= 3)
        b = draw(lambda o: o.language == a.language and len(o.paragraphs) >= 3)
        q = draw(lambda o: o.language == a.language and max(len(_tokens(p, o.language)[0]) for p in o.paragraphs) >= 30)
        quote = max(q.paragraphs, key=lambda p: len(_tokens(p, q.language)[0]))
        pa, pb = list(a.paragraphs), list(b.paragraphs)
        pa.insert(int(rng.integers(len(pa) + 1)), quote)
        pb.insert(int(rng.integers(len(pb) + 1)), quote)
        ia = add(a.title, pa, a.language, "", "quote-a.test", when())
        return ia, add(b.title, pb, b.language, "", "quote-b.test", when())

    makers = {"shared_quote": shared_quote, "same_event": same_event, "template": template}
    for _ in range(per_kind):
        for kind in list(makers):
            saved = list(available)
            try:
                out.append((*makers[kind](), kind))
            except LookupError:
                available[:] = saved  # put back what this attempt drew
                del makers[kind]
    return out
