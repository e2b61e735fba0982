"""Memory and time of the batch plane's stages B and C (pipeline/plane/), each alone, on a staged scale corpus.

    python benchmarks/plane_memory.py stage --articles 1000000 --processes 2    # stage A once (cached): ~1 h at 1M
    python benchmarks/plane_memory.py decide --articles 1000000                # stage B in a fresh process
    python benchmarks/plane_memory.py write --articles 1000000 [--shards 5]     # stage C, shard after shard
    python benchmarks/plane_memory.py decide --hostile 100000   # stage B on hostile.py's feed of repeated rows

A whole `newsbeam run` at a million articles takes half an hour, most of it stage A (fetch, parse, clean, classify,
sign: the per-article work). Stages B and C read only what stage A staged, so this benchmark stages a corpus of
benchmarks/scale_corpus.py once (the feeds read from disk, through pipeline/plane/feeds.py and staging.py as a run
does, `--processes` feeds at a time) under --root, and then runs B or C alone, in a fresh process each time, on
those files: a change to decide.py or finalize.py is measured in minutes. The staged files are those of the
checkout that staged them: restage (`stage --force`) after a change to the staged format.

Each command prints wall and CPU seconds and the peak RSS of its process (with the RSS after imports, the floor
that is not the stage's), and where the peak was reached: a sampler thread reads the process's RSS and the main
thread's Python stack every --sample seconds and keeps the stack of the highest sample (pyarrow's own allocations,
`pa.total_allocated_bytes()`, at that moment too). `decide` writes the shards it emits beside the staged files, for
`write`; `write` writes the partitions into a scratch directory, removed afterwards, and measures from the end of its
first shard (the libraries' pages a worker touched in stage A are then in the floor).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


class PeakSampler:
    """Samples this process's RSS every `every` seconds in a thread; keeps the main thread's stack at the peak."""

    def __init__(self, every: float):
        import pyarrow as pa

        self._pa = pa
        self._every = every
        self._main = threading.main_thread().ident
        self.peak, self.stack, self.arrow = 0, "", 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            now = rss()
            if now > self.peak:
                frame = sys._current_frames().get(self._main)
                ours = [f for f in traceback.extract_stack(frame) if "site-packages" not in f.filename][-6:]
                del frame  # held until the next sample, it would keep the main thread's finished frames alive
                self.peak, self.arrow = now, self._pa.total_allocated_bytes()
                self.stack = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(ours))
            self._done.wait(self._every)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()


def _paths(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.hostile:
        # benchmarks/hostile.py's feed of repeated AG News rows, as one feed file.
        from benchmarks.hostile import make_feed

        corpus_dir = args.root / f"hostile-{args.hostile}"
        if not (corpus_dir / "feed0.xml").exists():
            corpus_dir.mkdir(parents=True, exist_ok=True)
            (corpus_dir / "feed0.xml").write_bytes(make_feed(args.hostile))
        return corpus_dir, args.root / "staged" / corpus_dir.name
    from benchmarks.scale_corpus import ScaleCorpus

    corpus = ScaleCorpus(args.articles, args.seed, args.feeds)
    return corpus.write(args.root), args.root / "staged" / corpus.key


def _settings():
    from pipeline.config import Config
    from pipeline.ingest import feed_settings
    from transforms.feed import FeedSource
    from transforms.fetch import FetchSettings

    config = Config(feeds=(FeedSource("x", "/dev/null"),), fetch=FetchSettings(max_bytes=10**9))
    return config, feed_settings(config, "bench")


def _stage_feeds(args: tuple[list[tuple[int, str]], str]) -> list[list]:
    """In a pool process: stage the given (index, path) feeds; their StagedChunks as lists."""
    from pipeline.plane.feeds import FeedProcessor
    from pipeline.plane.staging import StageSettings, stage_chunk
    from transforms.feed import FeedSource

    feeds, work = args
    config, settings = _settings()
    processor = FeedProcessor(settings)
    processor.setup()
    stage = StageSettings(work, config.window.size_seconds, config.neardup)
    out = []
    for index, path in feeds:
        chunk_no = 0
        for item in processor.process(FeedSource(f"outlet{index}", path)):
            if isinstance(item, list):
                out.append(list(stage_chunk(item, index, chunk_no, stage)[0]))
                chunk_no += 1
    return out


def stage(args: argparse.Namespace) -> None:
    corpus_dir, staged = _paths(args)
    if (staged / "chunks.json").exists() and not args.force:
        print(f"{staged}: already staged")
        return
    shutil.rmtree(staged, ignore_errors=True)
    work = staged / "work"
    feeds = sorted(corpus_dir.glob("feed*.xml"), key=lambda p: int(p.stem[4:]))
    parts = [[(i, str(p)) for i, p in enumerate(feeds) if i % args.processes == k] for k in range(args.processes)]
    started, cpu = time.perf_counter(), time.process_time()
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        chunks = sorted(c for part in pool.map(_stage_feeds, [(p, str(work)) for p in parts]) for c in part)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    (staged / "chunks.json").write_text(json.dumps(chunks))
    print(
        f"staged {sum(c[2] for c in chunks):,} articles in {len(chunks):,} chunks under {staged}: "
        f"{time.perf_counter() - started:.0f} s wall, {time.process_time() - cpu + children.ru_utime:.0f} s CPU"
    )


def _report(what: str, started: float, cpu: float, floor: int, sampler: PeakSampler) -> None:
    print(
        f"{what}: {time.perf_counter() - started:.1f} s wall, {time.process_time() - cpu:.1f} s CPU; peak RSS "
        f"{sampler.peak / 2**20:,.0f} MiB (sampled; ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f}), "
        f"{(sampler.peak - floor) / 2**20:,.0f} MiB above the {floor / 2**20:,.0f} MiB after imports; pyarrow held "
        f"{sampler.arrow / 2**20:,.0f} MiB then\n  peak at: {sampler.stack}"
    )


def decide(args: argparse.Namespace) -> None:
    from pipeline.plane.decide import DecideSettings, _DecideFn
    from pipeline.plane.staging import StagedChunk

    _, staged = _paths(args)
    chunks = [StagedChunk(*c) for c in json.loads((staged / "chunks.json").read_text())]
    config, _ = _settings()
    out = staged / "decided"
    shutil.rmtree(out, ignore_errors=True)
    settings = DecideSettings(
        work_dir=str(staged / "work"),
        seen_keys_dir=str(out / "seen_keys"),
        signatures_dir=str(out / "signatures"),
        run_id="bench",
        dedup=config.dedup,
        neardup=config.neardup,
        **({"shard_bytes": args.shard_bytes << 20} if args.shard_bytes else {}),
        writers=args.writers,
    )
    fn = _DecideFn(settings)
    floor = rss()
    started, cpu = time.perf_counter(), time.process_time()
    with PeakSampler(args.sample) as sampler:
        outputs = list(fn.process(chunks))
    _report(f"decide, {sum(c.articles for c in chunks):,} articles", started, cpu, floor, sampler)
    shards = [list(s) for s in outputs if not hasattr(s, "tag")]
    feeds = sum(1 for s in outputs if hasattr(s, "tag"))
    (staged / "shards.json").write_text(json.dumps(shards))
    print(
        f"  {len(shards)} shards of windows, {sum(s[-1] for s in shards):,} rows to write (largest shard "
        f"{max(s[-1] for s in shards):,}); {feeds} feeds with new entries"
    )


def write(args: argparse.Namespace) -> None:
    from pipeline.plane.decide import WindowShard
    from pipeline.plane.finalize import _WriteShardFn
    from transforms.sink import SinkSettings

    _, staged = _paths(args)
    shards = [
        WindowShard(s[0], s[1], s[2], tuple(s[3]), *s[4:]) for s in json.loads((staged / "shards.json").read_text())
    ]
    if args.shards:
        step = max(1, len(shards) // args.shards)
        shards = shards[::step][: args.shards]
    config, _ = _settings()
    out = staged / "written"
    shutil.rmtree(out, ignore_errors=True)
    fn = _WriteShardFn(SinkSettings(str(out), "bench", config.window.size_seconds))
    # A worker has read and written Parquet and IPC in stage A before: the libraries' pages are in its floor.
    warm, *shards = shards
    sum(1 for _ in fn.process(warm))
    floor = rss()
    started, cpu = time.perf_counter(), time.process_time()
    files = rows = 0
    with PeakSampler(args.sample) as sampler:
        for shard in shards:
            files += sum(1 for _ in fn.process(shard))
            rows += shard.articles
    _report(f"write, {len(shards)} shards, {rows:,} rows, {files} files", started, cpu, floor, sampler)
    shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["stage", "decide", "write"])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--feeds", type=int, help="as benchmarks/scale.py")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hostile", type=int, default=0, help="N: benchmarks/hostile.py's feed of N entries instead")
    parser.add_argument("--root", type=Path, default=Path("/tmp/newsbeam-scale"))
    parser.add_argument("--processes", type=int, default=2, help="stage: feeds staged at once")
    parser.add_argument("--force", action="store_true", help="stage: again, even if staged")
    parser.add_argument("--shards", type=int, default=0, help="write: only this many shards, spread over the run")
    parser.add_argument("--shard-bytes", type=int, default=0, help="decide: MiB of rows per shard (0: the default)")
    parser.add_argument(
        "--writers", type=int, default=os.cpu_count() or 1, help="decide: stage C's processes (a run's: one per core)"
    )
    parser.add_argument("--sample", type=float, default=0.05, help="seconds between RSS samples")
    args = parser.parse_args()
    {"stage": stage, "decide": decide, "write": write}[args.what](args)


if __name__ == "__main__":
    main()
