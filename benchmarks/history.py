"""Cross-run deduplication against a large written history: time and peak memory.

    python benchmarks/history.py --history 1000000 --new 10000 [--runs 3]

Writes a synthetic dataset of `--history` articles (hourly partitions over the last 14 days, the real schema), then
runs ReadWrittenKeys + DeduplicateArticles on `--new` articles of which half are already in the history, in a fresh
subprocess each time, and prints wall time and the subprocess's peak RSS. The same with an empty history is printed
as the baseline, so the memory the history costs is the difference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from transforms.article import ARTICLE_SCHEMA  # noqa: E402

NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.timezone.utc)


def write_history(base: Path, total: int) -> None:
    hours = 14 * 24
    per_file = total // hours
    for h in range(hours):
        start = NOW - dt.timedelta(hours=h + 1)
        ids = [f"{h:04d}{i:08d}".ljust(32, "0") for i in range(per_file)]
        n = len(ids)
        table = pa.table(
            {
                "article_id": ids,
                "url": [f"https://hist.test/{i}" for i in ids],
                "guid": ids,
                "feed_url": ["https://hist.test/rss"] * n,
                "source": ["hist"] * n,
                "title": ["t"] * n,
                "text": ["x"] * n,
                "authors": [[]] * n,
                "tags": [[]] * n,
                "published_at": [start] * n,
                "content_hash": [i[::-1] for i in ids],
                "window_start": [start] * n,
                "window_end": [start + dt.timedelta(hours=1)] * n,
            },
        )
        table = pa.table({f.name: table.column(f.name) if f.name in table.column_names else pa.nulls(n, f.type)
                          for f in ARTICLE_SCHEMA}, schema=ARTICLE_SCHEMA)
        directory = base / "articles" / f"date={start:%Y-%m-%d}" / f"hour={start:%H}"
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, directory / f"part-hist-{h}.parquet", compression="zstd")


CHILD = r"""
import datetime as dt, sys
import apache_beam as beam
from apache_beam.metrics import MetricsFilter
sys.path.insert(0, {repo!r})
from transforms.article import Article
from transforms.dedup import DeduplicateArticles, DedupSettings
from transforms.history import ReadWrittenKeys
now = dt.datetime(2026, 11, 25, 12, tzinfo=dt.timezone.utc)
new = {new}
articles = [Article(article_id=(f"{{(i % 336):04d}}{{(i // 336):08d}}".ljust(32, "0") if i % 2 else f"new{{i:029d}}"),
                    feed_url="f", source="s", url="", title=f"t{{i}}", text=f"body {{i}}", published_at=now)
            for i in range(new)]
p = beam.Pipeline()
written = p | ReadWrittenKeys({articles_path!r}, now, 14 * 86400)
kept = p | beam.Create(articles) | DeduplicateArticles(DedupSettings(), written) | beam.combiners.Count.Globally()
result = p.run(); result.wait_until_finish()
counters = {{c.key.metric.name: c.committed for c in result.metrics().query()["counters"]}}
print(counters.get("already_written", 0))
"""


def run_child(articles_path: str, new: int) -> tuple[float, float, int]:
    code = CHILD.format(repo=str(REPO), new=new, articles_path=articles_path)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return elapsed, peak, int(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty"
        full = Path(tmp) / "full"
        started = time.perf_counter()
        write_history(full, args.history)
        size = sum(f.stat().st_size for f in full.rglob("*.parquet")) / 2**20
        print(f"history: {args.history:,} articles in 336 files, {size:,.0f} MiB, written in "
              f"{time.perf_counter() - started:.1f} s")
        # Peak RSS of children only grows, so the baseline (smaller) runs first.
        for label, path in (("empty history", empty), (f"{args.history:,} history", full)):
            times, peak, matched = [], 0.0, 0
            for _ in range(args.runs):
                elapsed, peak, matched = run_child(str(path / "articles"), args.new)
                times.append(elapsed)
            print(f"{label}: {args.new:,} new articles, {matched:,} already written; "
                  f"median {statistics.median(times):.1f} s; peak RSS {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
