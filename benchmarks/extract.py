"""Article body extraction: our `transforms.page_html.extract_page` against trafilatura's settings, on two sets of real
pages with the bodies marked, each split in two fixed halves.

    python benchmarks/extract.py [--repeat 3] [--data DIR ...] [--limit N]

Sets (each a folder with html/<key>.html.gz, ground-truth.json and its scorer evaluate.py; default: both):
- ../shared/data/extraction-dev: the Article Extraction Benchmark (181 pages, bodies marked by people);
- ../shared/data/extraction-dev-2: Mozilla Readability's test pages (121; the truth is Readability's own output).

Halves: a page is in half A when the SHA-256 of its key (the file name without .html.gz) is even, else in half B.
Every extraction rule was chosen on extraction-dev half A only; its half B and extraction-dev-2 are unseen pages.

Scored with each set's own evaluate.py (`string_shingle_matching`, per-page precision and recall averaged, F1 of the
two averages), imported from the data folder. Speed is pages per second of CPU time with the process pinned to one
core, from the bytes as fetched to the text. Every method runs on each page in turn (round robin), so a load change
on a shared machine hits them all alike: compare the ratios to trafilatura's default, measured in the same run. With
--repeat N each page is extracted N times per method and the median CPU time per page is used.

Rows: "ours" is extract_page as the stage calls it; "ours + clean" is what lands in the `text` column (CleanArticles
then removes furniture lines); "trafilatura ..." call trafilatura.extract on the raw bytes with its own defaults
(comments included); "trafilatura default, our parse" is its default mode (comments off) on the tree extract_page
parses and prunes, to tell the speed of the single parse from the speed of fast mode.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from transforms.charsets import decode_html  # noqa: E402
from transforms.clean import clean_text  # noqa: E402
from transforms.page_html import extract_page, parse_html  # noqa: E402
from transforms.page_text import prune  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
DEFAULT_SETS = (DATA / "extraction-dev", DATA / "extraction-dev-2")


def half(key: str) -> str:
    """The fixed half a page belongs to: A when the SHA-256 of its key is even."""
    return "A" if int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % 2 == 0 else "B"


def load_scorer(data: Path):
    """The set's evaluate.py, imported from the data folder (so the scoring is exactly its own)."""
    spec = importlib.util.spec_from_file_location(f"evaluate_{data.name.replace('-', '_')}", data / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _default_on_our_parse(html: bytes, url: str) -> str:
    import trafilatura

    tree = parse_html(decode_html(html)[0])
    if tree is None:
        return ""
    prune(tree)
    return trafilatura.extract(tree, url=url or None, include_comments=False) or ""


def methods() -> dict:
    import trafilatura

    return {
        "ours": lambda html, url: extract_page(html, url).text,
        "ours + clean": lambda html, url: clean_text(extract_page(html, url).text),
        "trafilatura default": lambda html, url: trafilatura.extract(html, url=url) or "",
        "trafilatura fast": lambda html, url: trafilatura.extract(html, url=url, fast=True) or "",
        "trafilatura favor_precision": lambda html, url: trafilatura.extract(html, url=url, favor_precision=True) or "",
        "trafilatura default, our parse": _default_on_our_parse,
    }


def one_core() -> str:
    """Pins the process to one core (the last one the OS lets it use); says which."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    core = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"pinned to core {core}"


def run_set(data: Path, runs: dict, repeat: int, limit: int) -> None:
    scorer = load_scorer(data)
    truth = json.loads((data / "ground-truth.json").read_text(encoding="utf-8"))
    keys = sorted(truth)[: limit or None]
    pages = {k: gzip.decompress((data / "html" / f"{k}.html.gz").read_bytes()) for k in keys}
    for fn in runs.values():  # warm up: imports and lazily built tables are not per-page costs
        fn(pages[keys[0]], truth[keys[0]].get("url", ""))
    seconds = {name: 0.0 for name in runs}
    scores: dict[str, dict[str, tuple]] = {name: {} for name in runs}
    for key in keys:
        html, url = pages[key], truth[key].get("url", "")
        for name, fn in runs.items():
            times = []
            for _ in range(repeat):
                start = time.process_time()
                text = fn(html, url)
                times.append(time.process_time() - start)
            seconds[name] += statistics.median(times)
            scores[name][key] = scorer.string_shingle_matching(true=truth[key].get("articleBody", ""), pred=text)

    parts = {"A": [k for k in keys if half(k) == "A"], "B": [k for k in keys if half(k) == "B"], "all": keys}
    sizes = ", ".join(f"{name} {len(part)}" for name, part in parts.items())
    print(f"\n{data.name}: {sizes} pages; F1 (precision/recall) by half, CPU time on one core")
    print(f"{'method':31s} {'half A':>19s} {'half B':>19s} {'all':>19s} {'pages/s':>8s} {'x default':>9s}")
    base = len(keys) / seconds["trafilatura default"]
    for name in runs:
        cells = []
        for part in parts.values():
            m = scorer.metrics_from_tp_fp_fns([scores[name][k] for k in part]) if part else None
            cells.append(f"{m['f1']:.3f} ({m['precision']:.3f}/{m['recall']:.3f})" if m else "-")
        speed = len(keys) / seconds[name]
        print(f"{name:31s} {cells[0]:>19s} {cells[1]:>19s} {cells[2]:>19s} {speed:8.1f} {speed / base:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, action="append", help="a set's folder (repeatable; default: both sets)")
    parser.add_argument("--repeat", type=int, default=1, help="extractions per page and method (median time)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N pages of each set (a quick look)")
    args = parser.parse_args()
    sets = [d for d in (args.data or DEFAULT_SETS) if (d / "ground-truth.json").exists()]
    if not sets:
        sys.exit(f"no benchmark data in {', '.join(str(d) for d in args.data or DEFAULT_SETS)}")
    pinned = one_core()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"CPU time, {pinned}, every method in the same run; load average {load} on {os.cpu_count()} cores")
    runs = methods()
    for data in sets:
        run_set(data, runs, args.repeat, args.limit)


if __name__ == "__main__":
    main()
