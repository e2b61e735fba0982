"""`newsbeam report` on a large output: build time (CPU), page size, and peak memory with and without many articles.

    python benchmarks/report.py [--runs 1000] [--feeds 500] [--articles 1000000] [--repeat 3]

Writes `--runs` run records ten minutes apart and the state of `--feeds` feeds (the shapes the pipeline writes, from
the report tests' generator), then builds the report in a fresh subprocess `--repeat` times and prints the median CPU
time, the page size and the peak RSS. Then adds `--articles` article rows (hourly partitions over the last week; the
columns the report reads plus a 1 KB text column it does not) and builds again: the peak RSS should barely move,
because the articles are aggregated batch by batch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.pipeline.test_report import _synthetic_output  # noqa: E402

# Peak RSS from VmHWM, which exec resets: ru_maxrss would count the pages the child shared with this (large)
# process between fork and exec.
_CHILD = """
import json, re, sys, time, datetime as dt
from pipeline.report import build_report
now = dt.datetime.fromisoformat(sys.argv[2])
started = time.process_time()
page = build_report(sys.argv[1], now=now)
hwm = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(json.dumps({"cpu": time.process_time() - started, "bytes": len(page.encode()), "rss_mb": hwm / 1024}))
"""


def build(output: Path, now: dt.datetime, repeat: int) -> dict:
    results = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(output), now.isoformat()],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def write_articles(output: Path, count: int, now: dt.datetime) -> None:
    languages = ["en", "de", "fr", "es", "it", "pt", "ru", "ja", "ar", "el"]
    topics = ["World", "Sports", "Business", "Sci/Tech", "unknown"]
    text = "x" * 1024
    per_file = 50_000
    for start in range(0, count, per_file):
        n = min(per_file, count - start)
        hour = now - dt.timedelta(hours=(start // per_file) % 168)
        fetched = [hour - dt.timedelta(seconds=i % 3600) for i in range(n)]
        table = pa.table(
            {
                "article_id": [f"{start + i:032x}" for i in range(n)],
                "feed_url": ["https://feed.test/rss"] * n,
                "text": [text] * n,
                "fetched_at": pa.array(fetched, pa.timestamp("us", tz="UTC")),
                "language": [languages[i % len(languages)] for i in range(n)],
                "topic": [topics[i % len(topics)] for i in range(n)],
            }
        )
        folder = output / "articles" / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"part-bench-{start}.parquet", compression="zstd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--feeds", type=int, default=500)
    parser.add_argument("--articles", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "out"
        _synthetic_output(output, args.runs, args.feeds, now)
        base = build(output, now, args.repeat)
        print(
            f"{args.runs} runs, {args.feeds} feeds: {base['cpu']:.2f} s CPU, page {base['bytes'] / 1e6:.2f} MB, "
            f"peak RSS {base['rss_mb']:.0f} MB (median of {args.repeat})"
        )
        write_articles(output, args.articles, now)
        more = build(output, now, args.repeat)
        print(
            f"+ {args.articles:,} articles: {more['cpu']:.2f} s CPU, page {more['bytes'] / 1e6:.2f} MB, "
            f"peak RSS {more['rss_mb']:.0f} MB (+{more['rss_mb'] - base['rss_mb']:.0f} MB)"
        )


if __name__ == "__main__":
    main()
