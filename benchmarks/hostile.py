"""Parsing one very large feed: peak memory and CPU time of ParseEntries' reader, per entry and in total.

    python benchmarks/hostile.py parse --entries 100000 --runs 3 [--compare 5000]
    python benchmarks/hostile.py run --entries 100000 [--config-extra 'neardup: {enabled: false}']
                                                                # the whole `newsbeam run`, over loopback HTTP:
                                                                # peak tree RSS, and per stage (as scale.py)
    python benchmarks/hostile.py run --python /tmp/plain/bin/python   # newsbeam as a plain install runs it

The feed is RSS 2.0 of many small items made of real AG News headlines and the start of their text
(../shared/data/agnews-train), each with its own link and date: about 19 MB for 100,000 entries, larger than the
8 MB feed of 100,000 entries that used to take 4.2 GiB.
`parse` reads it with `iter_feed` (what ParseEntries does) in a fresh subprocess per run, consuming articles as
they come, and prints CPU time and peak RSS; `--compare N` also times the feedparser reader (the fallback for
malformed documents, and the only reader before) on the first N entries, in the same process, for a ratio.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
AGNEWS = REPO.parent / "shared" / "data" / "agnews-train" / "train.csv"


def make_feed(entries: int) -> bytes:
    with open(AGNEWS, newline="", encoding="utf-8") as handle:
        rows = [(row[1], row[2]) for row in csv.reader(handle)]
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    items = []
    for i in range(entries):
        title, text = rows[i % len(rows)]
        # A different cut of the text on each pass over the corpus, so that later copies are not duplicates.
        cut = 40 + (i // len(rows)) * 3
        items.append(
            f"<item><title>{escape(title[:40])}</title><link>https://big.test/{i}</link>"
            f"<pubDate>{format_datetime(start + dt.timedelta(seconds=i))}</pubDate>"
            f"<description>{escape(text[:cut])}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Big</title>'
        + "".join(items)
        + "</channel></rss>"
    ).encode("utf-8")


def _child_parse(path: str, compare: int) -> None:
    """In a fresh process: read the feed the way ParseEntries does, and report as JSON on stdout."""
    from transforms.feed import FeedSource, FetchedFeed
    from transforms.parse import iter_feed
    from transforms.readers.base import EntryReader, FeedStats, ParseSettings
    from transforms.readers.salvage import read_salvaged

    body = Path(path).read_bytes()
    fetched_at = dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)
    feed = FetchedFeed(
        FeedSource("big", "https://big.test/rss"), "https://big.test/rss", 200, "application/rss+xml", body, fetched_at
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = FeedStats()
    cpu = time.process_time()
    articles = sum(1 for _ in iter_feed(feed, ParseSettings(), stats))
    cpu = time.process_time() - cpu
    result = {
        "articles": articles,
        "entries_read": stats.entries_read,
        "parser": stats.parser,
        "cpu_s": cpu,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_before_kib": rss_before,
    }
    if compare:
        # Both readers on the same first `compare` entries, in this process: a ratio that the machine's load
        # affects alike. (The feedparser reader keeps the whole document's entries in memory.)
        head = body[: body.index(b"<item>")] + b"".join(
            b"<item>" + part for part in body.split(b"<item>")[1 : compare + 1]
        )
        head = head.replace(b"</channel></rss>", b"") + b"</channel></rss>"
        small = FetchedFeed(feed.source, feed.url, 200, feed.content_type, head, fetched_at)
        cpu = time.process_time()
        sum(1 for _ in iter_feed(small, ParseSettings(), FeedStats()))
        result["lxml_small_cpu_s"] = time.process_time() - cpu
        stats = FeedStats()
        entries = EntryReader(small, ParseSettings(), stats)
        cpu = time.process_time()
        sum(1 for _ in read_salvaged(small, head, entries))
        result["feedparser_small_cpu_s"] = time.process_time() - cpu
    print(json.dumps(result))


def bench_parse(entries: int, runs: int, compare: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.xml"
        path.write_bytes(make_feed(entries))
        print(f"feed: {entries:,} entries, {path.stat().st_size / 2**20:.1f} MiB")
        results = []
        for run in range(runs):
            done = subprocess.run(
                [sys.executable, __file__, "_child", str(path), str(compare if run == 0 else 0)],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(result)
            print(
                f"run {run + 1}: {result['articles']:,} articles ({result['parser']}), CPU {result['cpu_s']:.1f} s "
                f"= {result['cpu_s'] / entries * 1e6:.0f} µs/entry, peak RSS {result['peak_rss_kib'] / 1024:.0f} MiB "
                f"(after imports and reading the file: {result['rss_before_kib'] / 1024:.0f} MiB)"
            )
            if "feedparser_small_cpu_s" in result:
                lx, fp = result["lxml_small_cpu_s"], result["feedparser_small_cpu_s"]
                print(
                    f"  first {compare:,} entries: lxml reader {lx / compare * 1e6:.0f} µs/entry, "
                    f"feedparser reader {fp / compare * 1e6:.0f} µs/entry: {fp / lx:.1f}x"
                )
        print(
            f"median CPU {statistics.median(r['cpu_s'] for r in results):.1f} s, "
            f"max peak RSS {max(r['peak_rss_kib'] for r in results) / 1024:.0f} MiB over {runs} runs"
        )


def bench_run(entries: int, config_extra: str) -> None:
    from benchmarks.e2e import newsbeam_command
    from benchmarks.scale import measure, phase_peaks
    from tests.feed_server import FeedServer

    with tempfile.TemporaryDirectory() as tmp, FeedServer() as server:
        server.add("/big.xml", make_feed(entries), content_type="application/rss+xml")
        config = Path(tmp) / "big.yaml"
        config.write_text(
            f'feeds:\n  - {{name: big, url: "{server.url("/big.xml")}"}}\n'
            "fetch: {max_bytes: 50000000}\n" + config_extra + "\n"  # the feed is larger than the default cap of 10 MB
        )
        out = Path(tmp) / "out"
        # scale.py's sampler: the peak of the whole process tree (forks included) and of each stage of the graph.
        result = measure(newsbeam_command(config, out, []), [], timeout=0, memory_limit=0, every=0.5, output=out)
        if result["exit"] != 0:
            sys.exit(f"run failed ({result['exit']}):\n{result['stderr'][-3000:]}")
        record = json.loads((out / "_runs" / "bench.json").read_text())
        print(
            f"newsbeam run, one feed of {entries:,} entries: {result['wall']:.0f} s wall, {result['cpu']:.0f} s CPU, "
            f"peak tree RSS {result['peak_mib']:,.0f} MiB ({result['processes']} processes; "
            f"PSS {result['peak_pss_mib']:,.0f} MiB), entries read {record['entries_read']:,}, "
            f"written {record['articles_written']:,}, reconciled {record['reconciled']}"
        )
        print("\n".join(phase_peaks(result["timeline"])))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _child_parse(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["parse", "run"])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", type=int, default=5000, help="entries for the lxml/feedparser ratio (0: none)")
    parser.add_argument(
        "--config-extra", default="", help="run: YAML added to the config, e.g. 'neardup: {enabled: false}'"
    )
    parser.add_argument(
        "--python", help="run: the interpreter that runs newsbeam, e.g. a venv with a plain `pip install -e .`"
    )
    args = parser.parse_args()
    if args.python:
        from benchmarks import e2e

        e2e.NEWSBEAM_PYTHON[0] = args.python
    if not AGNEWS.exists():
        sys.exit(f"needs {AGNEWS} (../shared/data)")
    if args.what == "parse":
        bench_parse(args.entries, args.runs, args.compare)
    else:
        bench_run(args.entries, args.config_extra)


if __name__ == "__main__":
    main()
