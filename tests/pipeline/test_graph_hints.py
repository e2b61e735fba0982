"""The batch and streaming graphs build on the installed Beam with pipeline type checking on, and without one
type-hint warning: Beam 2.78 reads tagged outputs from a DoFn's return hint (`TaggedOutput[Literal[tag], T]`) and
warns about every hint it cannot use, and a wrong hint is a TypeCheckError before the first feed is read."""

import dataclasses
import logging

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TypeOptions

from pipeline.build import build
from pipeline.config import DEFAULT_CONFIG, load_config
from pipeline.streaming import build_streaming
from transforms.clock import utcnow
from transforms.poll import StreamSettings

# What Beam logs for hints it ignores or cannot read (apache_beam/typehints/decorators.py, ptransform.py).
HINT_WARNINGS = ("type hint", "typehint", "TaggedOutput", "type-checking")


def _hint_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and any(word in r.getMessage() for word in HINT_WARNINGS)
    ]


@pytest.fixture
def config(tmp_path):
    config = load_config(DEFAULT_CONFIG)
    # Every optional stage on: page extraction, near-duplicates (and their streaming half), the topic model.
    extract = dataclasses.replace(config.extract, mode="when_short")
    neardup = dataclasses.replace(config.neardup, enabled=True)
    return dataclasses.replace(config, output=str(tmp_path / "out"), extract=extract, neardup=neardup)


def test_batch_graph_builds_type_checked_without_hint_warnings(config, caplog):
    options = PipelineOptions([])
    assert options.view_as(TypeOptions).pipeline_type_check  # the default, and it stays on
    caplog.set_level(logging.WARNING)
    build(beam.Pipeline(options=options), config, "hints", utcnow())
    assert _hint_warnings(caplog) == []


def test_streaming_graph_builds_type_checked_without_hint_warnings(config, caplog):
    options = PipelineOptions([])
    options.view_as(StandardOptions).streaming = True
    caplog.set_level(logging.WARNING)
    stream = StreamSettings(poll_interval_seconds=60, near_duplicates=True)
    build_streaming(beam.Pipeline(options=options), config, "hints", stream=stream)
    assert _hint_warnings(caplog) == []


def test_main_outputs_are_typed_as_their_element(config):  # the batch plane's steps
    """A DoFn's tagged outputs do not leak into its main output's type (what broke on Beam 2.78)."""
    p = beam.Pipeline()
    build(p, config, "hints", utcnow())
    by_label = {}

    def visit(node):
        by_label[node.full_label] = node
        for part in node.parts:
            visit(part)

    visit(p.transforms_stack[0])
    assert by_label["Stage/Feeds"].outputs[None].element_type.__name__ == "StagedChunk"
    assert by_label["Decide/Decide"].outputs[None].element_type.__name__ == "WindowShard"
    for label in ("Stage/Feeds", "Decide/Decide"):
        assert "TaggedOutput" not in str(by_label[label].outputs[None].element_type)
