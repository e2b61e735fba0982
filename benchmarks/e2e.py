"""End-to-end throughput and memory: N synthetic articles over M feeds, served over loopback HTTP.

    python benchmarks/e2e.py --articles 10000 --feeds 20 --runs 3 [beam options...]

Each run is `newsbeam run` in a fresh subprocess (so its peak RSS is its own), against feeds served by a local
HTTP server; prints wall time, articles/s and peak RSS per run, then the medians.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
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

from tests.feed_server import FeedServer  # noqa: E402  (the same loopback server the tests use)

WORDS = (
    "government minister election market shares company city council police report season team match league "
    "coach players researchers study data climate energy prices inflation bank rates court judge ruling law "
    "hospital health patients school students teachers university technology software users phone network "
    "company profits quarter growth workers union strike weather storm flood rain wind road traffic rail "
    "airport flights border talks agreement summit leaders president parliament vote budget tax spending "
    "museum festival film music artist book prize award science space mission satellite launch rocket planet "
    "water river farmers harvest food supply chain factory plant jobs unemployment housing rent homes prices "
    "the a of and to in on for with at by from after before during over under about against between"
).split()


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 20))]
    return " ".join(words).capitalize() + "."


def make_feed(feed_index: int, count: int, rng: random.Random, start: dt.datetime) -> bytes:
    items = []
    for i in range(count):
        published = start + dt.timedelta(minutes=rng.randint(0, 72 * 60))
        paragraphs = "".join(f"<p>{escape(' '.join(sentence(rng) for _ in range(3)))}</p>" for _ in range(3))
        items.append(
            f"<item><title>{escape(sentence(rng))}</title>"
            f"<link>https://bench{feed_index}.test/story/{i}?utm_source=rss</link><guid>b{feed_index}-{i}</guid>"
            f"<pubDate>{format_datetime(published)}</pubDate><category>News</category>"
            f"<description>{escape(paragraphs)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Bench {feed_index}</title><link>https://bench{feed_index}.test/</link><language>en</language>"
        + "".join(items)
        + "</channel></rss>"
    ).encode("utf-8")


def run_once(config: Path, output: Path, beam_args: list[str]) -> tuple[float, int, dict]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--config", str(config), "--output", str(output),
         "--run_id", "bench", *beam_args],
        cwd=REPO, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    # ru_maxrss of children is the largest of any child so far; each run's child is measured in a fresh process
    # and runs only grow the maximum, so report the value after this run when it rose, else "<= previous".
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    record = json.loads((output / "_runs" / "bench.json").read_text())
    return elapsed, max(peak_kib, before), record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=10000)
    parser.add_argument("--feeds", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config-extra", default="", help="YAML appended to the generated config, e.g. 'neardup: {enabled: false}'")
    args, beam_args = parser.parse_known_args()

    rng = random.Random(args.seed)
    start = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    per_feed = [args.articles // args.feeds + (1 if i < args.articles % args.feeds else 0) for i in range(args.feeds)]
    with tempfile.TemporaryDirectory() as tmp, FeedServer() as server:
        tmp_path = Path(tmp)
        lines = []
        for index, count in enumerate(per_feed):
            server.add(f"/feed{index}.xml", make_feed(index, count, rng, start), content_type="application/rss+xml")
            lines.append(f'  - {{name: bench{index}, url: "{server.url(f"/feed{index}.xml")}"}}')
        config = tmp_path / "bench.yaml"
        config.write_text("feeds:\n" + "\n".join(lines) + "\n" + args.config_extra + "\n")
        times, peaks = [], []
        for run in range(args.runs):
            elapsed, peak_kib, record = run_once(config, tmp_path / f"out{run}", beam_args)
            times.append(elapsed)
            peaks.append(peak_kib)
            print(
                f"run {run + 1}: {elapsed:.1f} s, {args.articles / elapsed:,.0f} articles/s, "
                f"written {record['articles_written']}, duplicates {record['duplicates']}, "
                f"peak RSS so far {peak_kib / 1024:,.0f} MiB, reconciled {record['reconciled']}"
            )
        median = statistics.median(times)
        print(
            f"N={args.articles} M={args.feeds} {' '.join(beam_args) or '(DirectRunner defaults)'} {args.config_extra}: "
            f"median {median:.1f} s = {args.articles / median:,.0f} articles/s; peak RSS {max(peaks) / 1024:,.0f} MiB"
        )


if __name__ == "__main__":
    main()
