"""What crosses the FnApiRunner's stage boundaries in one batch run: every PCollection the runner buffers between two
fused stages, with its element count and encoded size, on the real-text corpus of benchmarks/e2e.py.

    python benchmarks/stage_buffers.py --articles 10000          # the buffered PCollections, largest first

The batch graph of pipeline/build.py is built as `newsbeam run` builds it and run in this process on the local
default runner (the in-memory FnApiRunner). Its translation (`FnApiRunner.create_stages`) says where stages end:
each PCollection a stage writes to a runner data channel (the input of a GroupByKey, a Flatten, a side input, or a
stage that cannot be fused) is encoded into the runner's buffer, held there until the consuming stage has read all
of it, and decoded again. Beam's own metrics give each PCollection's element count and sampled encoded size (the
mean of a sample of elements, as the SDK measures it), so `elements x mean` is what that boundary holds and moves.
The sample favours a PCollection's first elements: for a Flatten of unlike elements (a CoGroupByKey's candidate
pairs and signature records), the rows of its inputs are the better estimate.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import apache_beam as beam  # noqa: E402
from apache_beam.metrics import monitoring_infos  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.runners.portability.fn_api_runner import fn_runner  # noqa: E402
from apache_beam.runners.worker import bundle_processor  # noqa: E402

from benchmarks.e2e import serve  # noqa: E402
from benchmarks.graph_size import fused_stages  # noqa: E402
from pipeline.build import build  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from tests.feed_server import FeedServer  # noqa: E402


def buffered(stages, producers: dict[str, str]) -> dict[str, str]:
    """PCollection id -> "<the step that made it> -> <the stage-ending step that hands it to the runner>"."""
    out = {}
    for stage in stages:
        for transform in stage.transforms:
            if transform.spec.urn == bundle_processor.DATA_OUTPUT_URN:
                pcoll = next(iter(transform.inputs.values()))
                writer = transform.unique_name
                made_by = producers.get(pcoll, "?")
                out[pcoll] = made_by if writer.startswith("ref_PCollection") else f"{made_by} -> {writer}"
    return out


def measured(result) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """Element counts and (sampled count, sampled bytes) per PCollection id, from the runner's monitoring infos."""
    counts: dict[str, int] = collections.Counter()
    sizes: dict[str, tuple[int, int]] = {}
    for info in result.monitoring_infos():
        pcoll = info.labels.get(monitoring_infos.PCOLLECTION_LABEL)
        if not pcoll:
            continue
        if info.urn == monitoring_infos.ELEMENT_COUNT_URN:
            counts[pcoll] = max(counts[pcoll], monitoring_infos.extract_counter_value(info))
        elif info.urn == monitoring_infos.SAMPLED_BYTE_SIZE_URN:
            count, total, _, _ = monitoring_infos.extract_distribution(info)
            before = sizes.get(pcoll, (0, 0))
            sizes[pcoll] = (before[0] + count, before[1] + total)
    return counts, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=10000)
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with FeedServer() as server, tempfile.TemporaryDirectory() as tmp:
        config_path, _ = serve(server, Path(tmp), args.articles, args.feeds, args.seed, "")
        config = dataclasses.replace(load_config(config_path), output=f"{tmp}/out")
        options = PipelineOptions([])
        p = beam.Pipeline(runner=fn_runner.FnApiRunner(), options=options)
        build(p, config, "buffers", dt.datetime.now(dt.timezone.utc))
        boundaries = buffered(*fused_stages(p))
        started = time.perf_counter()
        result = p.run()
        result.wait_until_finish()
        wall = time.perf_counter() - started
    counts, sizes = measured(result)
    rows = []
    for pcoll, writer in boundaries.items():
        sampled, total = sizes.get(pcoll, (0, 0))
        mean = total / sampled if sampled else 0.0
        rows.append((counts.get(pcoll, 0) * mean, counts.get(pcoll, 0), mean, writer))
    rows.sort(reverse=True)
    print(f"{args.articles:,} articles in {args.feeds} feeds, one in-memory run: {wall:.1f} s")
    print(f"{len(boundaries)} PCollections cross a stage boundary (encoded into the runner's buffers, decoded after):")
    print(f"{'MiB':>9} {'elements':>10} {'bytes/elt':>10}  written by")
    for total, count, mean, writer in rows:
        if count:
            print(f"{total / 2**20:9.1f} {count:10,} {mean:10,.0f}  {writer}")
    all_bytes = sum(r[0] for r in rows)
    print(
        f"total: {all_bytes / 2**20:,.0f} MiB and {sum(r[1] for r in rows):,} elements through the boundaries, "
        f"{all_bytes / args.articles / 1024:,.1f} KiB per article"
    )


if __name__ == "__main__":
    main()
