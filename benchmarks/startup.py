"""Start-up to the first feed request, alone: `newsbeam run` launched as users launch it, stopped at its first request.

    python benchmarks/startup.py --runs 10                                # this checkout
    python benchmarks/startup.py --runs 10 --baseline ../main             # alternating with another checkout
    python benchmarks/startup.py --runs 10 --python /tmp/plain/bin/python # newsbeam from a plain install's venv
    python benchmarks/startup.py --profile [--baseline ../main]           # where one start-up's CPU goes (cProfile)

The corpus of benchmarks/e2e.py is served as `--feeds` feeds on loopback. Each run is a fresh `python -m pipeline run`
(from the checkout's directory, so that checkout's code runs); when its first feed request reaches the server, its
wall seconds since launch and its own CPU seconds (user + system, /proc/PID/stat) are read, and it is killed with its
forked children: what a run does after its first request is benchmarks/e2e.py's business, so a start-up costs about
2 s here rather than a whole run. Contenders alternate (A B A B) and the median of the paired differences is printed:
on a shared machine whose speed drifts by a third within minutes, a difference between neighbours is the figure to
trust, and CPU seconds more than wall.

--profile runs one start-up in-process under cProfile, from the interpreter's start to the first call of the fetch
step (`FetchFeedFn.process`, the moment before the first request), without forked feed processes, and prints the top
functions by cumulative and by own time and own time summed by package. cProfile times wall seconds (a CPU-time timer
costs a system call per function call and distorts small functions several times over), so profile on a quiet
machine and read it for where the time goes; the timed runs say how much. Imports count: `python -X importtime -c
"import pipeline.cli"` details them.
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.cpu_profile import by_package  # noqa: E402
from benchmarks.e2e import serve  # noqa: E402
from tests.feed_server import FeedServer  # noqa: E402

# Run by --profile in a fresh interpreter (argv: output directory, stats file, then `newsbeam run`'s arguments). The
# profile stops at the first call of the fetch step, which it takes over for that: nothing is fetched.
_PROFILED = """
import cProfile, os, sys
profile = cProfile.Profile()
profile.enable()
import transforms.fetch
from pipeline.cli import main

def stop(self, source):
    profile.disable()
    profile.dump_stats(sys.argv[2])
    os._exit(0)

transforms.fetch.FetchFeedFn.process = stop
sys.exit(main(["run", "--output", sys.argv[1], *sys.argv[3:]]))
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(python: str, config: Path, output: Path, server: FeedServer, cwd: Path) -> dict[str, float]:
    """One start-up: wall and CPU seconds from launch to the first feed request."""
    seen = len(server.requests)
    command = [python, "-m", "pipeline", "run", "--config", str(config), "--output", str(output), "--run_id", "bench"]
    started = time.time()
    # stderr to a file, not a pipe nobody reads while it runs; a session of its own, so the kill reaches the forked
    # feed processes too.
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
        try:
            while len(server.requests) == seen:
                if process.poll() is not None:
                    errors.seek(0)
                    sys.exit(f"{command} ended before its first feed request:\n{errors.read().decode()[-3000:]}")
                time.sleep(0.005)
            cpu = _cpu_seconds(process.pid)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return {"wall": min(r.time for r in server.requests[seen:]) - started, "cpu": cpu}


def profile(name: str, python: str, config: Path, cwd: Path, tmp: Path, top: int, save: Path | None) -> None:
    stats_file = save or tmp / "startup.prof"
    subprocess.run(
        [python, "-c", _PROFILED, str(tmp / f"profiled-{name}"), str(stats_file), "--config", str(config), "--quiet"]
        + ["--feed_processes=1"],
        cwd=cwd,
        check=True,
    )
    stats = pstats.Stats(str(stats_file))
    print(f"\n{name}: start-up under cProfile {stats.total_tt:.2f} s (profiling roughly doubles the time)\n")
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    totals = by_package(stats, cwd)
    print("own time by package:")
    for key, seconds in totals.most_common(top):
        print(f"  {seconds:6.3f} s {100 * seconds / stats.total_tt:5.1f}%  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--articles", type=int, default=1000, help="corpus size (start-up hardly depends on it)")
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--baseline", type=Path, help="another checkout (e.g. ../main) whose start-up alternates")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs newsbeam")
    parser.add_argument("--profile", action="store_true", help="profile one start-up instead")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--save", type=Path, help="with --profile: keep the profile here")
    args = parser.parse_args()
    contenders = [("newsbeam", REPO)]
    if args.baseline:
        contenders.append((f"baseline {args.baseline.name}", args.baseline.resolve()))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in contenders}
    with tempfile.TemporaryDirectory() as tmp, FeedServer() as server:
        config, _ = serve(server, Path(tmp), args.articles, args.feeds, 0, "")
        if args.profile:
            for name, cwd in contenders:
                profile(name, args.python, config, cwd, Path(tmp), args.top, args.save if cwd == REPO else None)
            return
        for run in range(args.runs):
            for name, cwd in contenders:
                result = measure(args.python, config, Path(tmp) / f"out-{run}-{len(results[name])}", server, cwd)
                results[name].append(result)
                print(f"  run {run + 1} {name}: {result['wall']:.2f} s wall, {result['cpu']:.2f} s CPU", flush=True)
    print(f"\nmedians of {args.runs} (load average {os.getloadavg()[0]:.1f} at the end):")
    for name, runs in results.items():
        wall, cpu = (statistics.median(r[key] for r in runs) for key in ("wall", "cpu"))
        print(f"  {name:<28} start-up {wall:5.2f} s wall, {cpu:5.2f} s CPU")
    if args.baseline:
        (name, mine), (base_name, base) = results.items()
        wall, cpu = (statistics.median(b[key] - m[key] for m, b in zip(mine, base)) for key in ("wall", "cpu"))
        print(f"  {name} starts {wall:.2f} s sooner ({cpu:.2f} s less CPU) than {base_name}: medians of pairs")


if __name__ == "__main__":
    main()
