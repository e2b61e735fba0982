"""Does a change keep every answer? `newsbeam run` from this checkout and from another one, on the end-to-end
benchmark's real-text corpus (benchmarks/corpus.py) served over loopback, then the written rows compared.

    git worktree add /tmp/before <commit>
    python benchmarks/same_rows.py --baseline /tmp/before --articles 10000 [beam options...]

Both runs get the same --now and --run_id; rows are compared whole (every column, sorted), and so are the run
records' counts and Beam counters. Prints the first differences and exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.dataset as ds

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.e2e import newsbeam_command, serve  # noqa: E402
from tests.feed_server import FeedServer  # noqa: E402

NOW = "2026-12-01T00:00:00Z"


def rows(output: Path) -> list[tuple]:
    table = ds.dataset(str(output / "articles"), format="parquet", partitioning="hive").to_table()
    return sorted(tuple(sorted((k, repr(v)) for k, v in r.items())) for r in table.to_pylist())


def counts(output: Path) -> dict:
    (record,) = (output / "_runs").glob("*.json")
    data = json.loads(record.read_text())
    return {k: v for k, v in data.items() if isinstance(v, (int, dict)) and k != "feeds"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="the other checkout")
    parser.add_argument("--articles", type=int, default=10000)
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args, beam_args = parser.parse_known_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp, FeedServer() as server:
        config, _ = serve(server, Path(tmp), args.articles, args.feeds, args.seed, "")
        for name, checkout in (("this", REPO), ("baseline", args.baseline.resolve())):
            out = Path(tmp) / name
            command = newsbeam_command(config, out, [*beam_args, "--now", NOW, "--quiet"])
            done = subprocess.run(command, cwd=checkout, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{name} failed:\n{done.stderr[-3000:]}")
                return 1
            results[name] = (rows(out), counts(out))
    (this_rows, this_counts), (base_rows, base_counts) = results["this"], results["baseline"]
    print(f"rows: {len(this_rows)} here, {len(base_rows)} in the baseline")
    same = this_rows == base_rows
    if not same:
        extra = sorted(set(this_rows) - set(base_rows))[:3]
        missing = sorted(set(base_rows) - set(this_rows))[:3]
        print("only here:", *extra, "only in the baseline:", *missing, sep="\n  ")
    for key in sorted(set(this_counts) | set(base_counts)):
        if this_counts.get(key) != base_counts.get(key):
            same = False
            print(f"count {key}: {this_counts.get(key)} here, {base_counts.get(key)} in the baseline")
    print("same rows and counts" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
