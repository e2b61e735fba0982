"""Scale: `newsbeam run`, as users run it, on 10,000 to 1,000,000 articles served over loopback HTTP.

    python benchmarks/scale.py --articles 100000                              # one run, the default runner
    python benchmarks/scale.py --articles 1000000 --timeout 7200 --memory-limit 16
    python benchmarks/scale.py --articles 10000 --runs 3 --workers 0,2        # default vs 2 workers, alternating
    python benchmarks/scale.py --articles 30000 --plain                       # + benchmarks/plain_script.py
    python benchmarks/scale.py --articles 100000 --feeds 1                    # one feed of 100,000 entries
    python benchmarks/scale.py --articles 100000 --python /tmp/plain/bin/python   # as a plain install runs it

The corpus is benchmarks/scale_corpus.py: synthetic text made of real words whose duplicate rates stay the same at
every size (about 10% exact copies, 10% near copies, the rest far apart, eleven languages, real article lengths).
Its feeds are written to disk once per (size, seed, feed count) and cached under --corpus-root, then served from
disk by a threaded HTTP server on 127.0.0.1 (no step holds the corpus). Before the runs the benchmark prints the
rates the generator drew and the rates measured in what it wrote (`ScaleCorpus.check`, cached beside the feeds;
--no-check skips it: it signs every article, minutes at a million).

With fewer feeds than the corpus has languages (`--feeds 1`: one feed of 600 MB at 100,000 articles) every feed
carries every language (benchmarks/scale_corpus.py).

Each run is a fresh `python -m pipeline run` in its own process group. A sampler reads /proc every --sample seconds:
the resident memory of the whole process tree (the command and every descendant, e.g. multi-processing workers,
summed: an upper bound, shared pages count once per process) and its peak, and the tree's proportional set size
(PSS, from smaps_rollup: a page shared by k processes counts 1/k in each; stage A's forks share the models so).
After each run it prints, for each stage of the batch graph (told apart by the files it leaves in the run's staging:
A stages feeds until the last key file, B decides until the first keep file, C writes windows until the last
partition file, then the driver commits), the stage's peak tree RSS and each process's share at that moment;
--rss-log keeps the whole timeline. CPU is user + system time of the tree from os.wait4 (the command and every
descendant it waited for). A run that passes --timeout or whose tree passes --memory-limit GiB is killed (the whole
process group) and reported as such, with how far it got (feeds requested); one the kernel kills is reported with
its signal. Figures are load-sensitive: the load average is printed at the start and end, and contenders
(--workers, --plain) alternate run by run.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.e2e import NEWSBEAM_PYTHON, newsbeam_command, plain_command  # noqa: E402
from benchmarks.scale_check import cached_check, format_rates  # noqa: E402
from benchmarks.scale_corpus import ScaleCorpus  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


class _FeedHandler(http.server.SimpleHTTPRequestHandler):
    """Files of the corpus directory, streamed from disk, keep-alive (as e2e's server), each request logged."""

    protocol_version = "HTTP/1.1"
    extensions_map = {".xml": "application/rss+xml; charset=utf-8"}
    disable_nagle_algorithm = True  # TCP_NODELAY, as real servers: see tests/feed_server.py

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def log_request(self, code="-", size="-"):
        self.server.requests.append(time.time())


class FeedDirectoryServer:
    """A threaded HTTP server on 127.0.0.1 serving `directory`; `requests` holds the time of each request."""

    def __init__(self, directory: Path):
        handler = functools.partial(_FeedHandler, directory=str(directory))
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.requests = []
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def requests(self) -> list[float]:
        return self._httpd.requests

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{name}"

    def __enter__(self) -> FeedDirectoryServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, resident bytes, CPU ticks) of every process still readable."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command name: state, ppid (1), ... utime (11), stime (12), ..., rss in pages (21).
        table[int(entry)] = (int(fields[1]), int(fields[21]) * PAGE, int(fields[11]) + int(fields[12]))
    return table


def tree_usage(root: int) -> tuple[int, int, int]:
    """(resident bytes, CPU ticks, process count) of `root` and all its descendants, now."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    rss = ticks = count = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            rss += table[pid][1]
            ticks += table[pid][2]
            count += 1
        stack.extend(children.get(pid, ()))
    return rss, ticks, count


def tree_processes(root: int) -> list[tuple[int, int]]:
    """(pid, resident bytes) of `root` and each descendant, `root` first."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            out.append((pid, table[pid][1]))
        stack.extend(sorted(children.get(pid, ()), reverse=True))
    return out


def tree_pss(root: int) -> int:
    """Proportional set size of `root` and its descendants, summed: pages shared between processes (a fork's copy-on-
    write pages, the models stage A's forks inherit) count once in all, where the RSS sum counts them in each."""
    total = 0
    for pid, _ in tree_processes(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
                for line in handle:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def _count_files(pattern_root: Path, pattern: str) -> int:
    try:
        return sum(1 for _ in pattern_root.glob(pattern))
    except OSError:  # the driver's commit moves the staging away while we look
        return 0


# The stages of the batch graph, told apart by what they leave in the run's staging (pipeline/plane/): stage A
# writes work/keys/*, stage B writes work/keep/* at its end, stage C writes the partitions under articles/.
_MARKERS = {
    "keys": "_staging/*/work/keys/*",
    "keep": "_staging/*/work/keep/*",
    "written": "_staging/*/articles/**/*.parquet",
}


def phases(timeline: list[dict]) -> list[tuple[str, float, float]]:
    """(name, start, end) of each stage in a run's timeline (seconds since start): A until the last key file
    appeared, B until the first keep file, C until the last partition file, then the driver's commit."""
    if not timeline:
        return []
    end = timeline[-1]["t"]

    def first(what: str, value: int) -> float:
        return next((s["t"] for s in timeline if s[what] >= value), end)

    last_keys = max(s["keys"] for s in timeline)
    a_end = first("keys", last_keys) if last_keys else end
    b_end = first("keep", 1)
    c_end = first("written", max(s["written"] for s in timeline) or 1)
    bounds = [("A stage feeds", 0.0, a_end), ("B decide", a_end, b_end), ("C write windows", b_end, c_end)]
    bounds.append(("commit", c_end, end))
    return [(name, lo, max(lo, hi)) for name, lo, hi in bounds]


def phase_peaks(timeline: list[dict]) -> list[str]:
    """Per stage: its duration, the peak tree RSS and each process's RSS at that peak (the driver first)."""
    lines = []
    for name, lo, hi in phases(timeline):
        inside = [s for s in timeline if lo <= s["t"] <= hi]
        if not inside:
            continue
        peak = max(inside, key=lambda s: s["rss"])
        per = ", ".join(f"{mib:,.0f}" for mib in peak["per_process_mib"])
        lines.append(
            f"    {name:<16} {lo:7.1f}-{hi:7.1f} s: peak tree RSS {peak['rss'] / 2**20:7,.0f} MiB at {peak['t']:.0f} s "
            f"(per process, driver first: {per} MiB)"
        )
    return lines


def measure(
    command: list[str],
    requests: list[float],
    timeout: float,
    memory_limit: float,
    every: float,
    output: Path | None = None,
) -> dict:
    """Run `command`; its wall and CPU seconds, peak tree RSS, start-up, how it ended, and (with `output`, the
    run's output directory) a timeline of per-process RSS and staged file counts."""
    seen = len(requests)
    timeline: list[dict] = []
    out_file, err_file = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    started_wall, started = time.time(), time.perf_counter()
    # Its own session: the whole tree (multi-processing workers too) can be killed at once.
    process = subprocess.Popen(command, cwd=REPO, stdout=out_file, stderr=err_file, start_new_session=True)
    state = {"peak": 0, "processes": 0, "stopped": "", "last_ticks": 0, "peak_pss": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss, ticks, count = tree_usage(process.pid)
            state["last_ticks"] = max(state["last_ticks"], ticks)
            if rss > state["peak"]:
                state["peak"], state["processes"] = rss, count
            state["peak_pss"] = max(state["peak_pss"], tree_pss(process.pid))
            elapsed = time.perf_counter() - started
            if output is not None:
                timeline.append(
                    {
                        "t": elapsed,
                        "rss": rss,
                        "per_process_mib": [r / 2**20 for _, r in tree_processes(process.pid)],
                        **{what: _count_files(output, pattern) for what, pattern in _MARKERS.items()},
                    }
                )
            reason = ""
            if memory_limit and rss > memory_limit * 2**30:
                reason = (
                    f"memory ceiling: the tree held {rss / 2**30:.1f} GiB > {memory_limit:g} GiB at {elapsed:.0f} s"
                )
            elif timeout and elapsed > timeout:
                reason = f"timeout: still running after {timeout:g} s"
            if reason:
                state["stopped"] = reason
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return
            done.wait(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    if not state["stopped"]:
        try:  # workers the command left behind (it exited, they did not) must not outlive the measurement
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out_file.seek(0)
    err_file.seek(0)
    mine = requests[seen:]
    return {
        "wall": wall,
        # rusage covers the waited-for tree; a killed run's workers were never waited for: the sampled ticks then.
        "cpu": max(usage.ru_utime + usage.ru_stime, state["last_ticks"] / TICK),
        "peak_mib": max(state["peak"], usage.ru_maxrss * 1024) / 2**20,
        "peak_pss_mib": state["peak_pss"] / 2**20,
        "processes": state["processes"],
        "startup": (min(mine) - started_wall) if mine else float("nan"),
        "requests": len(mine),
        "exit": code,
        "stopped": state["stopped"]
        or (f"killed by signal {-code} (the kernel's OOM killer sends SIGKILL)" if code < 0 else ""),
        "stdout": out_file.read().decode(errors="replace"),
        "stderr": err_file.read().decode(errors="replace"),
        "timeline": timeline,
    }


def run_record(output: Path) -> dict:
    """The run record newsbeam wrote (`_runs/<run_id>.json`), or {} when it did not get that far."""
    records = sorted((output / "_runs").glob("*.json")) if (output / "_runs").exists() else []
    return json.loads(records[-1].read_text()) if records else {}


def contenders(workers: str, plain: bool) -> list[tuple[str, list[str] | None]]:
    """(name, extra Beam arguments) per contender; None is the plain script. Worker count 0: newsbeam's default."""
    out = []
    for n in (int(w) for w in workers.split(",") if w):
        if n == 0:
            out.append(("newsbeam (default runner)", []))
        else:
            out.append(
                (
                    f"newsbeam multi_processing x{n}",
                    ["--direct_running_mode=multi_processing", f"--direct_num_workers={n}"],
                )
            )
    if plain:
        out.append(("plain script", None))
    return out


def line(name: str, articles: int, result: dict) -> str:
    if result["stopped"] or result["exit"] != 0:
        why = result["stopped"] or f"exit {result['exit']}: {result['stderr'].strip().splitlines()[-1:]}"
        return (
            f"{name}: DID NOT FINISH ({why}); {result['wall']:.0f} s wall, {result['cpu']:.0f} s CPU, "
            f"peak tree RSS {result['peak_mib']:,.0f} MiB, {result['requests']} feed requests served"
        )
    return (
        f"{name}: {result['wall']:.1f} s wall, {articles / result['wall']:,.0f} art/s, "
        f"CPU {1000 * result['cpu'] / articles:.2f} ms/art, peak tree RSS {result['peak_mib']:,.0f} MiB "
        f"({result['processes']} processes; peak tree PSS {result['peak_pss_mib']:,.0f} MiB), "
        f"start-up {result['startup']:.2f} s"
    )


def counts(record: dict) -> str:
    if not record:
        return ""
    counters = record.get("counters", {})
    return (
        f"    entries read {record.get('entries_read', 0):,}, written {record.get('articles_written', 0):,}, "
        f"exact duplicates {record.get('duplicates', 0) - record.get('near_duplicates_dropped', 0):,}, "
        f"near copies dropped {record.get('near_duplicates_dropped', 0):,}, "
        f"entry dead letters {record.get('entry_dead_letters', 0):,}, reconciled {record.get('reconciled')}; "
        f"near-duplicate candidate pairs {counters.get('neardup/candidate_pairs', 0):,}, "
        f"verified {counters.get('neardup/pairs_verified', 0):,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument(
        "--feeds", type=int, help="default: 100, or one per 1,000 articles above 100,000 (1: one feed of them all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--workers", default="0", help="comma-separated: 0 = newsbeam's default, N = N multi-processing workers"
    )
    parser.add_argument("--plain", action="store_true", help="also run benchmarks/plain_script.py")
    parser.add_argument("--timeout", type=float, default=0, help="seconds before a run is killed (0: none)")
    parser.add_argument(
        "--memory-limit", type=float, default=16, help="GiB of tree RSS before a run is killed (0: none)"
    )
    parser.add_argument("--sample", type=float, default=0.5, help="seconds between /proc samples")
    parser.add_argument("--corpus-root", type=Path, default=Path("/tmp/newsbeam-scale"))
    parser.add_argument("--no-check", action="store_true", help="skip measuring the corpus's rates")
    parser.add_argument("--config-extra", default="", help="YAML appended to the config")
    parser.add_argument("--rss-log", type=Path, help="append each run's RSS timeline (JSON lines) to this file")
    parser.add_argument(
        "--python", help="the interpreter that runs newsbeam, e.g. a venv with a plain `pip install -e .` (as users)"
    )
    args, beam_args = parser.parse_known_args()
    if args.python:
        NEWSBEAM_PYTHON[0] = args.python

    started = time.perf_counter()
    corpus = ScaleCorpus(args.articles, args.seed, args.feeds)
    directory = corpus.write(args.corpus_root)
    manifest = json.loads((directory / "manifest.json").read_text())
    print(f"corpus {directory}: {manifest['bytes'] / 2**20:,.0f} MiB of feeds ({time.perf_counter() - started:.0f} s)")
    print(format_rates(corpus.planned_rates(), None if args.no_check else cached_check(corpus, directory)), flush=True)

    who = contenders(args.workers, args.plain)
    results: dict[str, list[dict]] = {name: [] for name, _ in who}
    with tempfile.TemporaryDirectory(prefix="newsbeam-scale-run-") as tmp, FeedDirectoryServer(directory) as server:
        tmp_path = Path(tmp)
        urls = [server.url(f"feed{f}.xml") for f in range(corpus.feeds)]
        config = tmp_path / "scale.yaml"
        # Feeds of a few MB: the fetch cap is raised (as in benchmarks/e2e.py) so no feed is cut.
        config.write_text(
            "fetch: {max_bytes: 1000000000, read_timeout: 300}\nfeeds:\n"
            + "".join(f'  - {{name: outlet{i}, url: "{u}"}}\n' for i, u in enumerate(urls))
            + args.config_extra
            + "\n"
        )
        url_list = tmp_path / "urls.txt"
        url_list.write_text("\n".join(urls) + "\n")
        print(
            f"load at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min), {os.cpu_count()} cores"
        )
        for run in range(args.runs):
            for name, extra in who:  # A B A B: a change of load hits every contender
                out = tmp_path / "out"
                command = (
                    plain_command(url_list, out)
                    if extra is None
                    else newsbeam_command(config, out, [*extra, *beam_args])
                )
                result = measure(
                    command,
                    server.requests,
                    args.timeout,
                    args.memory_limit,
                    args.sample,
                    out if extra is not None else None,
                )
                record = run_record(out) if extra is not None else {}
                if result["exit"] != 0 and not result["stopped"]:  # newsbeam's own failure: keep what it left
                    kept = args.corpus_root / f"failed-n{args.articles}-run{run + 1}-{int(time.time())}"
                    shutil.move(str(out), kept)
                    (kept / "stderr.txt").write_text(result["stderr"])
                    print(f"  output and stderr of the failed run kept in {kept}")
                shutil.rmtree(out, ignore_errors=True)
                results[name].append(result)
                print(f"  N={args.articles} run {run + 1} " + line(name, args.articles, result), flush=True)
                if record:
                    print(counts(record), flush=True)
                if extra is not None:
                    print("\n".join(phase_peaks(result["timeline"])), flush=True)
                if args.rss_log:
                    with args.rss_log.open("a") as log:
                        log.write(json.dumps({"name": name, "run": run + 1, "timeline": result["timeline"]}) + "\n")
        print(f"load at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")

    print(f"\nmedians of {args.runs} run(s), N={args.articles:,}:")
    for name, runs in results.items():
        finished = [r for r in runs if not r["stopped"] and r["exit"] == 0]
        if not finished:
            print(f"  {name}: no run finished")
            continue
        wall = statistics.median(r["wall"] for r in finished)
        cpu = statistics.median(r["cpu"] for r in finished)
        print(
            f"  {name:<32} wall {wall:8.1f} s  {args.articles / wall:8,.0f} art/s  CPU {1000 * cpu / args.articles:6.2f} ms/art  "
            f"peak tree RSS {max(r['peak_mib'] for r in finished):8,.0f} MiB  "
            f"PSS {max(r['peak_pss_mib'] for r in finished):8,.0f} MiB  ({len(finished)}/{len(runs)} finished)"
        )


if __name__ == "__main__":
    main()
