"""Cross-run deduplication against a large written history, through the key index: time and peak memory.

    python benchmarks/history.py --history 1000000,5000000 --new 10000 [--runs 3]

Writes a synthetic output of `--history` articles in daily partitions over 700 days (the real article schema, only
the columns the index reads filled in; the keys are synthetic: this measures the index, not text), then:

- `newsbeam reindex` on it (pipeline.seen_index.reindex): the one step whose cost grows with the output;
- the cross-run part of a run of `--new` new entries, half of them already written, in a fresh subprocess each time:
  load the index generation in force, expire it, stage it (pipeline.seen_index.load_seen_index); the Beam step
  (ReadWrittenKeys + DeduplicateArticles, writing the kept articles and the seen keys as a run does); and the next
  generation with its journal (pipeline.seen_index.write_seen_index). Printed: median wall and CPU seconds of that part,
  and the subprocess's own peak RSS (VmHWM, Linux), for three indexes over the same output:
    empty     - the baseline (a first run);
    steady    - what `dedup.forget_after: 30d` leaves: the articles seen in the last 30 days (N * 30 / 700);
    worst     - every article ever written still in some feed, the whole history in the index.
The 700 partitions are never opened by a run (only the index is read), which is the point.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline import seen_index, storage  # noqa: E402
from pipeline.layout import OutputLayout  # noqa: E402
from transforms.article import ARTICLE_SCHEMA  # noqa: E402

NOW = dt.datetime(2027, 1, 10, 12, tzinfo=dt.timezone.utc)
DAYS = 700


def article_id(i: np.ndarray) -> pa.Array:
    return pc.utf8_lpad(pa.array(np.char.mod("%x", i)), 32, "0")


def write_history(base: Path, total: int) -> None:
    """`total` articles in one file per day over DAYS days (newest last), built column-wise with pyarrow."""
    per_day = total // DAYS
    for day in range(DAYS):
        start = NOW - dt.timedelta(days=DAYS - day)
        ids = np.arange(day * per_day, (day + 1) * per_day, dtype=np.int64)
        aid = article_id(ids)
        n = len(ids)
        stamp = pa.array([start] * n, pa.timestamp("us", tz="UTC"))
        columns = {
            "article_id": aid,
            "url": pc.binary_join_element_wise("https://hist.test/", aid, ""),
            "content_hash": pc.utf8_reverse(aid),
            "feed_url": pa.array(["https://hist.test/rss"] * n),
            "published_at": stamp,
            "fetched_at": stamp,
        }
        table = pa.table(
            {f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in ARTICLE_SCHEMA}, schema=ARTICLE_SCHEMA
        )
        directory = base / "articles" / f"date={start:%Y-%m-%d}"
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, directory / "part-hist.parquet", compression="zstd")


def put_index(output: Path, full: pa.Table, rows: int, label: str) -> None:
    """Make an index of the last `rows` articles the generation in force (as a finished run leaves it)."""
    for path in (output / "_state" / "seen").glob("*"):
        path.unlink()
    for path in (output / "_runs").glob("*"):
        path.unlink()
    table = full.slice(full.num_rows - min(rows, full.num_rows))
    name = f"gen-000000000001-{label}.parquet"
    storage.write_parquet(
        OutputLayout(str(output)).seen(name),
        table.replace_schema_metadata({b"newsbeam.written_at": NOW.isoformat().encode()}),
    )
    (output / "_runs").mkdir(exist_ok=True)
    (output / "_runs" / f"{label}.json").write_text("{}")


CHILD = r"""
import datetime as dt, sys, time
sys.path.insert(0, {repo!r})
import apache_beam as beam
from pipeline import seen_index
from pipeline.layout import STAGED_SEEN_KEYS, STAGED_SIGNATURES, STAGED_WORK, OutputLayout
from pipeline.plane.decide import Decide, DecideSettings
from pipeline.plane.finalize import WriteWindows
from pipeline.plane.staging import StageSettings, stage_chunk
from transforms.article import Article
from transforms.neardup import NearDedupSettings
from transforms.sink import SinkSettings
output, new, history = {output!r}, {new}, {history}
now = dt.datetime(2027, 1, 10, 12, 30, tzinfo=dt.timezone.utc)
run_id = "bench-" + str(time.monotonic_ns())
cpu = time.process_time(); wall = time.perf_counter()
index = seen_index.load_seen_index(output, run_id, now, 30 * 86400)
# Half the new entries are among the last written articles (still in their feeds), half are new.
old = [format(i, "x").rjust(32, "0") for i in range(history - new // 2, history)]
articles = [Article(article_id=aid, feed_url="https://hist.test/rss", source="s", url="https://hist.test/" + aid,
                    title="t", text=aid, published_at=now) for aid in old]
articles += [Article(article_id=f"new{{i:029d}}", feed_url="https://new.test/rss", source="s",
                     url=f"https://new.test/{{i}}", title=f"t{{i}}", text=f"body {{i}}", published_at=now)
             for i in range(new - len(old))]
layout = OutputLayout(output)
sink = SinkSettings(layout.run_staging(run_id), run_id, 86400, temp_path=layout.temp)
work = layout.staged(run_id, STAGED_WORK)
off = NearDedupSettings(enabled=False)
stage = StageSettings(work, 86400, off)
chunks = [stage_chunk(articles[i : i + 2000], 0, i // 2000, stage)[0] for i in range(0, len(articles), 2000)]
p = beam.Pipeline()
decided = p | beam.Create(chunks) | Decide(DecideSettings(
    work, layout.staged(run_id, STAGED_SEEN_KEYS), layout.staged(run_id, STAGED_SIGNATURES), run_id,
    neardup=off, written_index=index.base_path))
decided.shards | WriteWindows(sink)
run = p.run(); run.wait_until_finish()
name = seen_index.write_seen_index(output, run_id, index, now, [])
counters = {{c.key.metric.name: c.committed for c in run.metrics().query()["counters"]}}
# VmHWM: this program's own peak (ru_maxrss would also count the parent's pages between fork and exec).
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(counters.get("already_written", 0), index.table.num_rows, time.perf_counter() - wall, time.process_time() - cpu,
      peak)
"""


def run_child(output: str, new: int, history: int) -> tuple[float, float, float, int, int]:
    """(wall s, cpu s, peak RSS MiB, already written, index rows) of one run in a fresh process."""
    code = CHILD.format(repo=str(REPO), output=output, new=new, history=history)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    matched, rows, wall, cpu, peak_kib = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu), int(peak_kib) / 1024, int(matched), int(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", default="1000000,5000000", help="comma-separated history sizes")
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for total in (int(h) for h in args.history.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            output = Path(tmp) / "out"
            started = time.perf_counter()
            write_history(output, total)
            size = sum(f.stat().st_size for f in (output / "articles").rglob("*.parquet")) / 2**20
            print(
                f"history: {total:,} articles in {DAYS} daily partitions, {size:,.0f} MiB, built in "
                f"{time.perf_counter() - started:.1f} s"
            )
            cpu, wall = time.process_time(), time.perf_counter()
            _, rows = seen_index.reindex(str(output), NOW)
            print(
                f"  newsbeam reindex: {rows:,} rows, {time.perf_counter() - wall:.1f} s wall, "
                f"{time.process_time() - cpu:.1f} s CPU"
            )
            [generation] = (output / "_state" / "seen").glob("gen-*.parquet")
            full = pq.read_table(generation)
            written = full.num_rows  # whole days' worth: a few short of `total`
            steady = written * 30 // DAYS
            for label, rows in (("empty", 0), ("steady", steady), ("worst", written)):
                put_index(output, full, rows, label)
                walls, cpus, peaks = [], [], []
                for _ in range(args.runs):
                    wall, cpu, peak, matched, index_rows = run_child(str(output), args.new, written if rows else 0)
                    walls.append(wall), cpus.append(cpu), peaks.append(peak)
                    put_index(output, full, rows, label)  # every run starts from the same index
                    for leftover in ("_staging", "_temp"):
                        subprocess.run(["rm", "-rf", str(output / leftover)], check=True)
                print(
                    f"  index {label:6s} {index_rows:>9,} rows: {args.new:,} new entries, {matched:,} already "
                    f"written; median {statistics.median(walls):.1f} s wall, {statistics.median(cpus):.1f} s CPU; "
                    f"peak RSS {max(peaks):,.0f} MiB"
                )


if __name__ == "__main__":
    main()
