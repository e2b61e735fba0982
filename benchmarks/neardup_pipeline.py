"""Near-duplicate recall of the WHOLE pipeline (fetch, parse, clean, classify, exact dedup, near-dup), issue 13.

`benchmarks/dedup.py quality` feeds the development set's Articles straight to the near-duplicate functions. This
script serves the same set (benchmarks/neardup_corpus.py, seed 13) as 6 RSS feeds over loopback HTTP, runs
`newsbeam run` on it as a subprocess and reads the Parquet back, so whatever the earlier stages do to an article
(language detection, furniture removal, title and text cleaning) is in the figure.

    python benchmarks/neardup_pipeline.py                                   # this checkout's newsbeam
    python benchmarks/neardup_pipeline.py --newsbeam /work/main/.venv/bin/newsbeam --label old
    python benchmarks/neardup_pipeline.py --originals 150 --diagnose        # smaller; why copies were missed

Feeds: each article goes to one of 6 feeds; a copy to another feed than its original's. Links are the development
set's (a copy's is another host's URL with wire tracking parameters), pubDate is its published time, the title is
<title> and the paragraphs are <p> elements in <description>. The run is in `mark` mode, so every article is written
and a copy is found when it carries `duplicate_of`; a copy that is not written at all counts as found too (dropped as
an exact duplicate), an original that is not written or is marked a copy of another story counts as lost.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import email.utils
import html
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.neardup_corpus import build_devset  # noqa: E402
from tests.feed_server import FeedServer  # noqa: E402

FEEDS = 6


def feed_of(devset) -> dict[str, int]:
    """article_id -> feed number; a copy never in its original's feed."""
    out: dict[str, int] = {}
    for number, article in enumerate(devset.articles):
        copy = devset.copies.get(article.article_id)
        if copy is None:
            out[article.article_id] = number % FEEDS
        else:
            out[article.article_id] = (out[copy["original"]] + 1 + number % (FEEDS - 1)) % FEEDS
    return out


def rss(items, host: str = "") -> bytes:
    """One RSS 2.0 document: title, link, guid, pubDate and the paragraphs as <p> HTML in <description>."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>devset</title>'
        "<link>https://devset.test/</link><description>devset</description>"
    ]
    for a in items:
        if host:  # every link on one host, as when a harness serves the articles too
            a = dataclasses.replace(a, url=host + "/" + a.url.split("://", 1)[1].split("/", 1)[1])
        body = "".join(f"<p>{html.escape(p)}</p>" for p in a.text.split("\n\n"))
        parts.append(
            f"<item><title>{escape(a.title)}</title><link>{escape(a.url)}</link>"
            f'<guid isPermaLink="true">{escape(a.url)}</guid>'
            f"<pubDate>{email.utils.format_datetime(a.published_at)}</pubDate>"
            f"<description>{escape(body)}</description></item>"
        )
    parts.append("</channel></rss>\n")
    return "".join(parts).encode("utf-8")


def subset(devset, originals: int | None, language: str = ""):
    """The first `originals` originals (by order in the set, of `language` if given) with their copies; the
    negatives are left out."""
    if not originals and not language:
        return devset.articles
    copy_of = {cid: c["original"] for cid, c in devset.copies.items()}
    first = [
        a.article_id
        for a in devset.articles
        if a.article_id not in copy_of
        and devset.truth[a.article_id] == a.article_id
        and a.language == (language or a.language)
    ]
    first = first[:originals] if originals else first
    keep = set(first) | {cid for cid, oid in copy_of.items() if oid in set(first)}
    return [a for a in devset.articles if a.article_id in keep]


def run(
    newsbeam: str, articles, devset, workdir: Path, mode: str = "mark", one_host: bool = False
) -> tuple[dict, float]:
    """Serve the feeds, run newsbeam once in mark mode, return {url: row} of the written articles and CPU seconds."""
    feeds = collections.defaultdict(list)
    where = feed_of(devset)
    for a in articles:
        feeds[where[a.article_id]].append(a)
    out = workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    with FeedServer() as server:
        lines = ["output: " + str(out), "neardup:", "  mode: " + mode, "feeds:"]
        for n, items in sorted(feeds.items()):
            host = server.url("").rstrip("/") if one_host else ""
            server.add(f"/feed{n}.xml", body=rss(items, host), content_type="application/rss+xml; charset=utf-8")
            lines += [f"  - name: feed{n}", f"    url: {server.url(f'/feed{n}.xml')}"]
        config = workdir / "config.yaml"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        before = time.time()
        proc = subprocess.run(
            [newsbeam, "run", "--config", str(config), "--output", str(out)], capture_output=True, text=True
        )
        seconds = time.time() - before
    if proc.returncode != 0:
        sys.exit(f"newsbeam failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = {}
    for path in out.rglob("*.parquet"):
        if "_" in path.relative_to(out).parts[0][:1]:  # _state, _dead_letters, _runs
            continue
        table = pq.read_table(path)
        for row in table.to_pylist():
            if "url" in row:
                rows[row["url"]] = row
    return rows, seconds


def path_key(url: str) -> str:
    """The devset number of a URL (its path, /news/N), whatever the pipeline did to host and query."""
    return "/" + url.split("://", 1)[-1].split("?", 1)[0].split("#", 1)[0].split("/", 1)[-1].lower()


def score(articles, devset, rows: dict) -> dict:
    """Recall per copy kind and originals lost."""
    by_path = {path_key(u): r for u, r in rows.items()}
    id_of = {path_key(a.url): a.article_id for a in articles}
    written_id = {r["article_id"]: path_key(u) for u, r in rows.items()}
    groups = collections.defaultdict(lambda: [0, 0])
    missed = []
    lost = 0
    originals = 0
    for a in articles:
        row = by_path.get(path_key(a.url))
        copy = devset.copies.get(a.article_id)
        if copy is None:
            originals += 1
            if row is None or (
                row.get("duplicate_of")
                and id_of.get(written_id.get(row["duplicate_of"])) is not None
                and devset.truth[id_of[written_id[row["duplicate_of"]]]] != a.article_id
            ):
                lost += 1
            continue
        found = row is None or bool(row.get("duplicate_of"))
        keys = [copy["kind"]]
        if copy["kind"] == "edit":
            rate = copy["edit_rate"]
            keys.append("edit " + ("5-10%" if rate < 0.10 else "10-15%" if rate < 0.15 else "15-20%"))
            if copy["paragraphs_cut"]:
                keys.append("edit + last paragraphs cut")
            if copy["furniture"]:
                keys.append("edit + furniture lines")
            if copy["headline_shuffled"]:
                keys.append("edit + headline shuffled")
        else:
            keys.append("cut + new headline" if copy["new_headline"] else "cut, same headline")
        for key in keys:
            groups[key][0] += 1
            groups[key][1] += found
        if not found:
            missed.append(a)
    ids = {a.article_id for a in articles}
    row_of = {a.article_id: by_path.get(path_key(a.url)) for a in articles}
    merged = collections.Counter()
    pairs = collections.Counter()
    for x, y, kind in devset.negatives:
        if x in ids and y in ids:
            pairs[kind] += 1
            rx, ry = row_of[x], row_of[y]
            merged[kind] += (
                rx is None or ry is None or bool(rx.get("cluster_id")) and rx.get("cluster_id") == ry.get("cluster_id")
            )
    negatives = {kind: (pairs[kind], merged[kind]) for kind in pairs}
    return {"groups": dict(groups), "lost": lost, "originals": originals, "missed": missed, "negatives": negatives}


def diagnose(articles, devset, rows: dict) -> None:
    """For missed copies: what reached the near-dup stage (language, title, text) against the original."""
    by_path = {path_key(u): r for u, r in rows.items()}
    by_id = {a.article_id: a for a in articles}
    lang_split = 0
    reasons = collections.Counter()
    examples = []
    for a in articles:
        copy = devset.copies.get(a.article_id)
        if copy is None:
            continue
        row = by_path.get(path_key(a.url))
        if row is None or row.get("duplicate_of"):
            continue
        orig = by_path.get(path_key(by_id[copy["original"]].url))
        if orig is None:
            reasons["original not written"] += 1
            continue
        if orig["language"] != row["language"]:
            lang_split += 1
            reasons[f"language {orig['language']} vs {row['language']} (truth {a.language})"] += 1
        else:
            reasons[f"same language {row['language']}"] += 1
        if len(examples) < 3:
            examples.append((by_id[copy["original"]], orig, a, row))
    print(f"missed copies whose original was detected in another language: {lang_split}")
    stages = collections.Counter()
    for a in articles:
        row = by_path.get(path_key(a.url))
        if row is None:
            continue
        stages["articles written"] += 1
        stages["language detected != recipe language"] += row["language"] != a.language
        stages["title changed by the pipeline"] += row["title"] != a.title
        stages["text changed by the pipeline"] += row["text"] != a.text
        copy = devset.copies.get(a.article_id)
        orig = copy and by_path.get(path_key(by_id[copy["original"]].url))
        if orig is not None:
            stages["copy/original pairs both written"] += 1
            stages["pairs detected in two languages"] += orig["language"] != row["language"]
        if copy and copy["kind"] == "edit" and copy["furniture"]:
            stages["edit copies with furniture"] += 1
            lines = [p for p in a.text.split("\n\n") if p not in by_id[copy["original"]].text]
            stages["... furniture line still in the written text"] += any(
                line.startswith(
                    (
                        "Also Read",
                        "Follow us",
                        "Home >",
                        "Advertisement",
                        "Click here",
                        "Share this",
                        "READ MORE",
                        "Download the app",
                        "Story continues",
                    )
                )
                and line in row["text"]
                for line in lines
            )
    print("what reached the near-dup stage (all articles, not only missed ones):")
    for key, n in stages.items():
        print(f"  {n:5d}  {key}")
    for reason, n in reasons.most_common(20):
        print(f"  {n:4d}  {reason}")
    for o, orow, c, crow in examples:
        print("--- original", o.language, "->", orow["language"], repr(orow["title"][:80]))
        print("    text in :", repr(o.text[:160]))
        print("    text out:", repr(orow["text"][:160]))
        print("--- copy", c.language, "->", crow["language"], repr(crow["title"][:80]))
        print("    text in :", repr(c.text[:160]))
        print("    text out:", repr(crow["text"][:160]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--newsbeam", default=str(Path(sys.executable).with_name("newsbeam")))
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--originals", type=int, default=200, help="first N originals and their copies (0: all)")
    parser.add_argument("--mode", choices=("mark", "drop"), default="mark", help="drop: the default run")
    parser.add_argument("--language", default="", help="only originals of this language (and their copies)")
    parser.add_argument(
        "--one-host", action="store_true", help="every link on the feed server's host (127.0.0.1), not on its outlet's"
    )
    parser.add_argument("--diagnose", action="store_true")
    args = parser.parse_args()
    devset = build_devset(args.seed)
    articles = subset(devset, args.originals, args.language)
    with tempfile.TemporaryDirectory() as tmp:
        rows, seconds = run(args.newsbeam, articles, devset, Path(tmp), args.mode, args.one_host)
    result = score(articles, devset, rows)
    how = args.mode + (", one host" if args.one_host else "")
    print(
        f"{args.label}: {args.newsbeam} ({how}), {len(articles)} articles in {FEEDS} feeds, {len(rows)} written, "
        f"{seconds:.0f} s wall (loaded machine)"
    )
    print(f"{'copies':32s} {'n':>5s} {'found':>6s}")
    for key in sorted(result["groups"]):
        n, found = result["groups"][key]
        print(f"{key:32s} {n:5d} {found / n:6.3f}")
    total = [
        sum(v[0] for k, v in result["groups"].items() if k in ("edit", "cut")),
        sum(v[1] for k, v in result["groups"].items() if k in ("edit", "cut")),
    ]
    print(f"{'all copies':32s} {total[0]:5d} {total[1] / max(total[0], 1):6.3f}")
    print(f"originals lost (not written, or marked a copy of another story): {result['lost']} of {result['originals']}")
    for kind, (n, bad) in sorted(result["negatives"].items()):
        print(f"hard negatives {kind:18s} {n:5d} pairs, merged {bad / n:6.3f}")
    if args.diagnose:
        diagnose(articles, devset, rows)


if __name__ == "__main__":
    main()
