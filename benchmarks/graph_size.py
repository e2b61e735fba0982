"""How big the graphs are: the transforms pipeline/build.py (batch) and pipeline/streaming.py wire, and the fused
stages Beam's FnApiRunner (the local default) cuts the batch graph into.

    python benchmarks/graph_size.py                  # counts for the bundled default config
    python benchmarks/graph_size.py --config my.yaml --list

Counts AppliedPTransforms of the built graph (nothing runs): leaves (primitives or user steps without parts: what
executes), composites (named groups of them), and among the leaves those that move data between workers or wait
for all of their input: GroupByKey, CoGroupByKey's parts, combines, Reshuffle, Flatten, and the side inputs read.
Then the batch graph's runner proto goes through the same translation phases the FnApiRunner applies before a run
(`FnApiRunner.create_stages`): each stage is one fused chain of steps, and every PCollection that leaves a stage is
buffered in full by the runner (in memory, encoded) before the next stage reads it.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.pipeline import PipelineVisitor  # noqa: E402

from pipeline.build import build  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.streaming import build_streaming  # noqa: E402


class _Count(PipelineVisitor):
    def __init__(self):
        self.leaves: list[beam.pipeline.AppliedPTransform] = []
        self.composites: list[beam.pipeline.AppliedPTransform] = []

    def visit_transform(self, node):
        self.leaves.append(node)

    def enter_composite_transform(self, node):
        if node.full_label:  # the unnamed root
            self.composites.append(node)


def count(p: beam.Pipeline) -> dict:
    """Transforms of the graph built into `p`, by kind."""
    visitor = _Count()
    p.visit(visitor)
    return {
        "applied": len(visitor.leaves) + len(visitor.composites),
        "leaves": len(visitor.leaves),
        "composites": len(visitor.composites),
        "leaf_kinds": collections.Counter(type(node.transform).__name__ for node in visitor.leaves),
        # GroupByKey (every CombinePerKey, CoGroupByKey, Reshuffle and file write has one) and Flatten: the leaves
        # at which the FnApiRunner ends a fused stage.
        "groupings": [n.full_label for n in visitor.leaves if type(n.transform).__name__ in ("GroupByKey", "Flatten")],
        "side_input_readers": [n.full_label for n in visitor.leaves if n.side_inputs],
    }


def fused_stages(p: beam.Pipeline) -> tuple[list, dict[str, str]]:
    """The batch graph's stages as the FnApiRunner fuses them (the translation it runs before executing), and the
    label of the leaf step that produces each PCollection id."""
    from apache_beam.runners.pipeline_utils import merge_common_environments, merge_superset_dep_environments
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    runner = fn_runner.FnApiRunner()
    proto = p.to_runner_api(default_environment=runner._default_environment)
    proto = merge_common_environments(runner.resolve_any_environments(merge_superset_dep_environments(proto)))
    context, stages = runner.create_stages(proto)
    producers = {}
    # The translation adds steps (combiner lifting, flatten transcoding): their outputs are named after them.
    for stage in stages:
        for transform in stage.transforms:
            if transform.spec.urn != "beam:runner:source:v1":
                for pcoll in transform.outputs.values():
                    producers.setdefault(pcoll, transform.unique_name)
    for components in (context.components, proto.components):
        for transform in components.transforms.values():
            if not transform.subtransforms:
                for pcoll in transform.outputs.values():
                    producers.setdefault(pcoll, transform.unique_name)
    return stages, producers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a newsbeam config (default: the bundled one)")
    parser.add_argument("--list", action="store_true", help="list the barriers, side inputs and stages")
    args = parser.parse_args()
    config = load_config(args.config)
    now = dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc)

    batch = beam.Pipeline(options=PipelineOptions([]))
    build(batch, config, "graph", now)
    streaming = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    build_streaming(streaming, config, "graph")
    for name, p in (("batch", batch), ("streaming", streaming)):
        c = count(p)
        print(
            f"{name}: {c['applied']} applied transforms = {c['leaves']} leaves + {c['composites']} composites; "
            f"{len(c['side_input_readers'])} steps read a side input"
        )
        print("  leaves by kind: " + ", ".join(f"{k} {v}" for k, v in c["leaf_kinds"].most_common()))
        if args.list:
            for label in c["groupings"]:
                print(f"  groups or flattens: {label}")
            for label in c["side_input_readers"]:
                print(f"  reads side input: {label}")
    stages, _ = fused_stages(batch)
    print(f"batch on the FnApiRunner: {len(stages)} fused stages")
    if args.list:
        for stage in stages:
            print(f"  {len(stage.transforms):3} transforms: {stage.name.replace('ref_AppliedPTransform_', '')}")


if __name__ == "__main__":
    main()
