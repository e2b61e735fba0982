"""The batch graph's data plane (pipeline/plane/): no shuffle or side input carries an article, and every runner
writes the same rows."""

import datetime as dt
import subprocess
import sys
import typing

import apache_beam as beam
import pyarrow.dataset as ds
import pytest
from apache_beam.transforms.core import GroupByKey

from pipeline.build import build
from pipeline.config import load_config
from pipeline.plane.decide import WindowShard
from pipeline.plane.staging import StagedChunk
from transforms.article import Article
from transforms.dead_letter import DeadLetter
from transforms.feed import FeedSource
from transforms.feed_report import FeedReport

NOW = "2026-12-01T00:00:00Z"
# What may cross a Beam boundary: paths and counts, dead letters, reports, feed configs, keys and counts.
SMALL = {StagedChunk, WindowShard, DeadLetter, FeedReport, FeedSource, int, str, bytes, type(None), None}


def _leaves(hint) -> set:
    """The classes a type hint is made of (Tuple[int, X] -> {int, X})."""
    args = getattr(hint, "tuple_types", None) or getattr(hint, "union_types", None) or typing.get_args(hint)
    if hasattr(hint, "inner_type"):
        args = (hint.inner_type,)
    if args:
        return set().union(*(_leaves(a) for a in args))
    return {hint}


def _typed_sources(pcoll, seen=None) -> set:
    """The element types of `pcoll`, or of its nearest typed ancestors where it is untyped (Any)."""
    seen = seen if seen is not None else set()
    if id(pcoll) in seen:
        return set()
    seen.add(id(pcoll))
    hint = pcoll.element_type
    if hint is not None and "Any" not in str(hint):
        return _leaves(hint)
    producer = pcoll.producer
    found = set()
    for upstream in producer.main_inputs.values() if producer else ():
        found |= _typed_sources(upstream, seen)
    return found


def test_no_shuffle_or_side_input_carries_an_article():
    p = beam.Pipeline()
    build(p, load_config(), "graph", dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc))
    crossings, parts = [], list(p.transforms_stack[0].parts)
    while parts:
        part = parts.pop()
        parts.extend(part.parts)
        if isinstance(part.transform, GroupByKey):
            crossings += [(part.full_label, pcoll) for pcoll in part.main_inputs.values()]
        crossings += [(part.full_label, side.pvalue) for side in part.side_inputs]
    assert len(crossings) >= 5
    for label, pcoll in crossings:
        kinds = _typed_sources(pcoll)
        assert Article not in kinds, label
        assert kinds <= SMALL | {k for k in kinds if getattr(k, "__name__", "") in ("Timestamp", "PaneInfo")}, (
            label,
            kinds,
        )


def _rows(output) -> list[tuple]:
    table = ds.dataset(str(output / "articles"), format="parquet", partitioning="hive").to_table()
    return sorted(tuple(sorted((k, str(v)) for k, v in r.items() if k != "run_id")) for r in table.to_pylist())


@pytest.mark.parametrize(
    "runner_args",
    [
        ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"],
    ],
    ids=["multi_processing", "portable"],
)
def test_every_runner_writes_the_same_rows(tmp_path, runner_args):
    outputs = []
    for name, extra in (("in_memory", ["--direct_running_mode=in_memory"]), ("other", runner_args)):
        out = tmp_path / name
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "run", "--output", str(out), "--now", NOW, "--quiet", *extra],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(_rows(out))
    assert outputs[0] and outputs[0] == outputs[1]
