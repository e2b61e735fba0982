"""Article body extraction: our `transforms.extract.extract_page` against trafilatura's settings, on the Article
Extraction Benchmark (../shared/data/extraction-dev: 181 real pages and the bodies a person marked).

    python benchmarks/extract.py [--repeat 3] [--data ../shared/data/extraction-dev]

Scored with the benchmark's own evaluate.py (`string_shingle_matching`, per-page precision and recall averaged, F1
of the two averages), imported from the data folder. Speed is pages per second of CPU time on one core, from the
bytes as fetched to the text. Every method runs on each page in turn (round robin), so a load change on a shared
machine hits them all alike: compare the ratios to trafilatura's default, measured in the same run. With --repeat N
each page is extracted N times per method and the median CPU time per page is used.

Rows: "ours" is extract_page as the stage calls it; "ours + clean" is what lands in the `text` column (CleanArticles
then removes furniture lines); "trafilatura ..." call trafilatura.extract on the raw bytes.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from transforms.clean import clean_text  # noqa: E402
from transforms.extract import extract_page  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "extraction-dev"


def load_scorer(data: Path):
    """The benchmark's evaluate.py, imported from the data folder (so the scoring is exactly its own)."""
    spec = importlib.util.spec_from_file_location("aeb_evaluate", data / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def methods() -> dict:
    import trafilatura

    return {
        "ours": lambda html, url: extract_page(html, url).text,
        "ours + clean": lambda html, url: clean_text(extract_page(html, url).text),
        "trafilatura default": lambda html, url: trafilatura.extract(html, url=url) or "",
        "trafilatura fast": lambda html, url: trafilatura.extract(html, url=url, fast=True) or "",
        "trafilatura favor_precision": lambda html, url: trafilatura.extract(html, url=url, favor_precision=True) or "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=1, help="extractions per page and method (median time)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N pages (a quick look)")
    args = parser.parse_args()
    if not (args.data / "ground-truth.json").exists():
        sys.exit(f"no benchmark data in {args.data}")
    scorer = load_scorer(args.data)
    truth = json.loads((args.data / "ground-truth.json").read_text(encoding="utf-8"))
    keys = sorted(truth)[: args.limit or None]
    pages = {k: gzip.decompress((args.data / "html" / f"{k}.html.gz").read_bytes()) for k in keys}

    runs = methods()
    for fn in runs.values():  # warm up: imports and lazily built tables are not per-page costs
        fn(pages[keys[0]], truth[keys[0]].get("url", ""))
    seconds = {name: 0.0 for name in runs}
    scores: dict[str, list] = {name: [] for name in runs}
    for key in keys:
        html, url = pages[key], truth[key].get("url", "")
        for name, fn in runs.items():
            times = []
            for _ in range(args.repeat):
                start = time.process_time()
                text = fn(html, url)
                times.append(time.process_time() - start)
            seconds[name] += statistics.median(times)
            scores[name].append(scorer.string_shingle_matching(true=truth[key].get("articleBody", ""), pred=text))

    base = len(keys) / seconds["trafilatura default"]
    print(f"{len(keys)} pages, CPU time on one core, every method in the same run (machine shared and loaded)")
    print(f"{'method':30s} {'F1':>6s} {'prec':>6s} {'recall':>6s} {'pages/s':>8s} {'x default':>9s}")
    for name in runs:
        m = scorer.metrics_from_tp_fp_fns(scores[name])
        speed = len(keys) / seconds[name]
        print(f"{name:30s} {m['f1']:6.3f} {m['precision']:6.3f} {m['recall']:6.3f} {speed:8.1f} {speed / base:9.2f}")


if __name__ == "__main__":
    main()
