"""Where a run's CPU goes: `newsbeam run` in this process under cProfile, on the real-text corpus of the end-to-end
benchmark (benchmarks/corpus.py) served over loopback.

    python benchmarks/cpu_profile.py --articles 10000                 # top functions, then own time summed by package
    python benchmarks/cpu_profile.py --articles 10000 --save run.prof # keep the profile for pstats / snakeviz

The in-memory DirectRunner runs every stage in this process, so one profile covers the graph's construction, Beam's
own per-element work and every stage. Own time (tottime) is summed by where the code lives: `beam/<subpackage>`,
`ours/<module>` (transforms/ and pipeline/), `lib/<package>`, `stdlib/<module>` and built-ins by name; cProfile
roughly doubles the run time, so compare shares and before/after pairs, not seconds with `benchmarks/e2e.py`.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.e2e import serve  # noqa: E402
from pipeline.cli import main as newsbeam  # noqa: E402
from tests.feed_server import FeedServer  # noqa: E402


def by_package(stats: pstats.Stats, root: Path = REPO) -> collections.Counter:
    """Own time (seconds) summed by where the code lives (`root`: the checkout whose code counts as ours)."""
    totals: collections.Counter = collections.Counter()
    for (file, _, name), (_, _, own, _, _) in stats.stats.items():
        if "apache_beam/" in file:
            key = "beam/" + file.split("apache_beam/", 1)[1].split("/", 1)[0]
        elif "site-packages/" in file:
            key = "lib/" + file.split("site-packages/", 1)[1].split("/", 1)[0]
        elif file.startswith(str(root)):
            key = "ours/" + file[len(str(root)) + 1 :]
        elif file == "~":
            key = "builtin " + name
        else:
            key = "stdlib/" + file.rsplit("/", 1)[-1]
        totals[key] += own
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=10000)
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--save", type=Path, help="write the profile here")
    args = parser.parse_args()
    with FeedServer() as server, tempfile.TemporaryDirectory() as tmp:
        config, _ = serve(server, Path(tmp), args.articles, args.feeds, args.seed, "")
        profile = cProfile.Profile()
        started, started_cpu = time.perf_counter(), time.process_time()
        profile.enable()
        # In memory and without forked feed processes: the profile sees only this process.
        command = ["run", "--config", str(config), "--output", f"{tmp}/out", "--run_id", "profile", "--quiet"]
        status = newsbeam([*command, "--direct_running_mode=in_memory", "--feed_processes=1"])
        profile.disable()
        wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    if status != 0:
        sys.exit(f"newsbeam run exited {status}")
    if args.save:
        profile.dump_stats(args.save)
    stats = pstats.Stats(profile)
    print(f"\n{args.articles:,} articles: {wall:.1f} s wall, {cpu:.1f} s CPU under cProfile\n")
    stats.sort_stats("tottime").print_stats(args.top)
    totals = by_package(stats)
    total = sum(totals.values())
    print("own time by package:")
    for key, seconds in totals.most_common(args.top):
        print(f"  {seconds:8.2f} s {100 * seconds / total:5.1f}%  {key}")


if __name__ == "__main__":
    main()
