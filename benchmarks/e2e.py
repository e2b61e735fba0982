"""End to end, as a user runs it: `newsbeam run` against the plain script (benchmarks/plain_script.py), on real text.

    python benchmarks/e2e.py --articles 10000 --runs 3 [beam options...]     # newsbeam vs plain script, A B A B
    python benchmarks/e2e.py --articles 10000 --runs 3 --workers             # + 1 vs 2 feed processes (the default's)
    python benchmarks/e2e.py --articles 10000 --runs 3 --beam-workers 1,2    # + Beam's multi-processing workers
    python benchmarks/e2e.py --sizes 10000,100000 --runs 1 --no-plain        # cost per article against corpus size
    python benchmarks/e2e.py --baseline ../main                              # + another checkout's newsbeam (before)
    python benchmarks/e2e.py --python /tmp/plain/bin/python                  # newsbeam from a plain install's venv

The corpus (benchmarks/corpus.py: AG News, extraction-dev bodies and langid-dev sentences, 11 languages, about 10%
syndicated copies, seeded) is served as `--feeds` RSS feeds by the loopback server the tests use. Each run is a fresh
subprocess; its wall time, CPU time (user + system, its worker processes included) and peak RSS (of its largest
process) come from os.wait4. Start-up is the time from launching the command to the first feed request reaching the
server, and the command's own CPU seconds until then (less sensitive to machine load). Runs alternate between the
contenders, so a change in machine load hits both; figures are medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.corpus import build_corpus, feed_documents  # noqa: E402
from tests.feed_server import FeedServer  # noqa: E402  (the same loopback server the tests use)


def measure(command: list[str], server: FeedServer, cwd: Path = REPO) -> dict:
    """Run `command`; its wall and CPU seconds, peak RSS (MiB), start-up seconds and exit status."""
    seen = len(server.requests)
    started_wall = time.time()
    started = time.perf_counter()
    # Output goes to files, not pipes: read only after the process ends, a full pipe (multi-processing workers log
    # a line per file written) would block the command forever.
    out_file, err_file = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    process = subprocess.Popen(command, cwd=cwd, stdout=out_file, stderr=err_file)
    startup_cpu = []

    def watch() -> None:  # the command's own CPU seconds when the first feed request arrives (load-insensitive)
        while process.poll() is None and len(server.requests) == seen:
            time.sleep(0.01)
        try:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            startup_cpu.append((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
        except (OSError, IndexError, ValueError):
            pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    # os.wait4 gives this child's own rusage (its waited-for descendants included), so each run is measured alone.
    _, status, usage = os.wait4(process.pid, 0)
    watcher.join()
    wall = time.perf_counter() - started
    out_file.seek(0)
    err_file.seek(0)
    out, err = out_file.read(), err_file.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{command[:4]} failed ({process.returncode}):\n{err.decode()[-3000:]}\n{out.decode()[-2000:]}")
    first = min((r.time for r in server.requests[seen:]), default=float("nan"))
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024,
        "startup": first - started_wall,
        "startup_cpu": startup_cpu[0] if startup_cpu else float("nan"),
        "stdout": out.decode(),
    }


# The interpreter that runs newsbeam (--python): by default this one, whose venv has the bench extra; pandas among
# it, which Beam imports whenever it is installed (about 0.7 s of start-up a plain `pip install newsbeam` does not pay).
NEWSBEAM_PYTHON = [sys.executable]


def newsbeam_command(config: Path, output: Path, beam_args: list[str]) -> list[str]:
    # `python -m pipeline` run from a checkout imports that checkout's code (the current directory comes first).
    return [
        NEWSBEAM_PYTHON[0],
        "-m",
        "pipeline",
        "run",
        "--config",
        str(config),
        "--output",
        str(output),
        "--run_id",
        "bench",
        *beam_args,
    ]


def plain_command(urls: Path, output: Path) -> list[str]:
    return [sys.executable, str(REPO / "benchmarks" / "plain_script.py"), str(urls), str(output)]


def serve(server: FeedServer, tmp: Path, articles: int, feeds: int, seed: int, extra: str) -> tuple[Path, Path]:
    """Serve the corpus; the newsbeam config and the plain script's URL list."""
    documents = feed_documents(build_corpus(articles, seed=seed, feeds=feeds), feeds=feeds)
    urls = []
    for index, body in enumerate(documents):
        path = f"/n{articles}/feed{index}.xml"
        server.add(path, body, content_type="application/rss+xml; charset=utf-8")
        urls.append(server.url(path))
    config = tmp / f"bench-{articles}.yaml"
    # A feed of 10,000 entries is about 15 MB: raise the fetch cap so large corpora are not cut.
    config.write_text(
        "fetch: {max_bytes: 1000000000, read_timeout: 120}\nfeeds:\n"
        + "".join(f'  - {{name: outlet{i}, url: "{u}"}}\n' for i, u in enumerate(urls))
        + extra
        + "\n"
    )
    url_list = tmp / f"urls-{articles}.txt"
    url_list.write_text("\n".join(urls) + "\n")
    return config, url_list


def summary(name: str, runs: list[dict], articles: int) -> str:
    wall = statistics.median(r["wall"] for r in runs)
    cpu = statistics.median(r["cpu"] for r in runs)
    return (
        f"{name:<34} wall {wall:7.1f} s  {articles / wall:7,.0f} art/s  CPU {1000 * cpu / articles:6.2f} ms/art  "
        f"start-up {statistics.median(r['startup'] for r in runs):5.2f} s "
        f"({statistics.median(r['startup_cpu'] for r in runs):4.2f} s CPU)  peak RSS {max(r['rss_mib'] for r in runs):6,.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=10000)
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-plain", action="store_true", help="skip the plain script")
    parser.add_argument(
        "--workers",
        nargs="?",
        const="1,2",
        default="",
        help="also run with these --feed_processes counts (default 1,2: scaling)",
    )
    parser.add_argument(
        "--beam-workers", default="", help="also run Beam's multi-processing mode with these worker counts, e.g. 1,2"
    )
    parser.add_argument("--sizes", default="", help="comma-separated corpus sizes: cost per article against size")
    parser.add_argument("--baseline", type=Path, help="another checkout (e.g. ../main) whose newsbeam runs too")
    parser.add_argument(
        "--config-extra", default="", help="YAML appended to the config, e.g. 'neardup: {enabled: false}'"
    )
    parser.add_argument(
        "--python",
        help="the interpreter that runs newsbeam, e.g. a venv with a plain `pip install -e .` (as users install it)",
    )
    args, beam_args = parser.parse_known_args()
    if args.python:
        NEWSBEAM_PYTHON[0] = args.python
    sizes = [int(s) for s in args.sizes.split(",") if s] or [args.articles]

    contenders = [("newsbeam " + (" ".join(beam_args) or "(defaults)"), "newsbeam", beam_args)]
    if args.baseline:
        contenders.append(
            (f"baseline {args.baseline.name} " + (" ".join(beam_args) or "(defaults)"), "baseline", beam_args)
        )
    if args.workers:
        contenders += [
            (f"newsbeam feed processes x{n}", "newsbeam", [f"--feed_processes={n}"])
            for n in map(int, args.workers.split(","))
        ]
    if args.beam_workers:
        contenders += [
            (
                f"newsbeam multi_processing x{n}",
                "newsbeam",
                ["--direct_running_mode=multi_processing", f"--direct_num_workers={n}"],
            )
            for n in map(int, args.beam_workers.split(","))
        ]
    if not args.no_plain:
        contenders.append(("plain script", "plain", []))

    results: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp, FeedServer() as server:
        tmp_path = Path(tmp)
        for size in sizes:
            config, urls = serve(server, tmp_path, size, args.feeds, args.seed, args.config_extra)
            for run in range(args.runs):
                for name, kind, extra_args in contenders:  # A B A B: load changes hit every contender
                    out = tmp_path / "out"
                    command = plain_command(urls, out) if kind == "plain" else newsbeam_command(config, out, extra_args)
                    cwd = args.baseline.resolve() if kind == "baseline" else REPO
                    result = measure(command, server, cwd)
                    shutil.rmtree(out, ignore_errors=True)
                    results.setdefault((name, size), []).append(result)
                    print(
                        f"  N={size} run {run + 1} {name}: {result['wall']:.1f} s wall, {result['cpu']:.1f} s CPU, "
                        f"start-up {result['startup']:.2f} s ({result['startup_cpu']:.2f} s CPU), {result['rss_mib']:,.0f} MiB",
                        flush=True,
                    )

    print(f"\nmedians of {args.runs} ({os.cpu_count()} cores; figures are load-sensitive, compare within one run):")
    for size in sizes:
        for name, _, _ in contenders:
            print(f"N={size:<8}" + summary(name, results[(name, size)], size))
    size = sizes[0]

    def wall(name: str, n: int = size) -> float:
        return statistics.median(r["wall"] for r in results[(name, n)])

    main_name = contenders[0][0]
    if not args.no_plain:
        print(f"newsbeam / plain script speed (N={size}): {wall('plain script') / wall(main_name):.2f}x")
    if args.baseline:
        base_name = contenders[1][0]
        cpu = {n: statistics.median(r["cpu"] for r in results[(n, size)]) for n in (main_name, base_name)}
        print(
            f"newsbeam / baseline speed (N={size}): {wall(base_name) / wall(main_name):.2f}x wall, "
            f"{cpu[base_name] / cpu[main_name]:.2f}x CPU"
        )
    if args.workers == "1,2":
        print(
            f"2 feed processes / 1 speed (N={size}): "
            f"{wall('newsbeam feed processes x1') / wall('newsbeam feed processes x2'):.2f}x"
        )
    if len(sizes) > 1:
        base = statistics.median(r["cpu"] for r in results[(main_name, sizes[0])]) / sizes[0]
        for n in sizes[1:]:
            per = statistics.median(r["cpu"] for r in results[(main_name, n)]) / n
            print(
                f"CPU per article at N={n} / at N={sizes[0]}: {per / base:.2f}x; "
                f"wall per article: {(wall(main_name, n) / n) / (wall(main_name) / sizes[0]):.2f}x"
            )


if __name__ == "__main__":
    main()
