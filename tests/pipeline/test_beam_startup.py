"""pipeline.beam_startup: Beam's DoFn state/timer specs remembered per DoFn give Beam's own answers.

These tests are the alarm for a Beam upgrade: each fails when Beam changes what the memo relies on (see the module's
docstring for what to do then).
"""

import inspect
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import fn_runner  # noqa: F401 - imports the modules that call it
from apache_beam.transforms import userstate

from pipeline import beam_startup, runners
from transforms.dedup import DeduplicateWithState, DedupSettings
from transforms.neardup.streaming import DropNearCopiesWithState


def _dofns(transform: beam.PTransform) -> list:
    p = beam.Pipeline()
    p | beam.Create([]) | transform
    return _dofns_of(p)


def _dofns_of(p: beam.Pipeline) -> list:
    found = []

    def visit(node):
        if isinstance(node.transform, beam.ParDo):
            found.append(node.transform.fn)
        for part in node.parts:
            visit(part)

    visit(p.transforms_stack[0])
    return found


class _Unhashable(beam.DoFn):
    __hash__ = None

    def process(self, element):
        yield element


def test_remembered_specs_are_beams_own(monkeypatch):
    monkeypatch.setattr(userstate, "get_dofn_specs", beam_startup._beam_get_dofn_specs)
    dofns = _dofns(DeduplicateWithState(DedupSettings())) + _dofns(DropNearCopiesWithState())
    dofns += [beam.Map(str).fn, _Unhashable()]
    expected = [beam_startup._beam_get_dofn_specs(d) for d in dofns]
    assert any(state or timers for state, timers in expected)  # stateful DoFns among them
    beam_startup.install()
    assert userstate.get_dofn_specs is beam_startup._memoised_get_dofn_specs
    for _ in range(2):  # computed, then remembered
        assert [userstate.get_dofn_specs(d) for d in dofns] == expected
    assert [userstate.is_stateful_dofn(d) for d in dofns] == [bool(s or t) for s, t in expected]


def test_beams_function_still_takes_a_dofn_and_answers_two_sets():
    parameters = list(inspect.signature(beam_startup._beam_get_dofn_specs).parameters)
    assert parameters == ["dofn"]
    state, timers = beam_startup._beam_get_dofn_specs(_dofns(DeduplicateWithState(DedupSettings()))[-1])
    assert isinstance(state, set) and isinstance(timers, set) and state and timers


# Modules of Beam's that bind the function itself: the memo never reaches them. The bundle-based DirectRunner's
# evaluators; newsbeam runs on the FnApiRunner (pipeline/runners.py), which looks it up through the module.
_BOUND_ELSEWHERE = {"apache_beam.runners.direct.transform_evaluator"}


def test_beam_looks_the_function_up_through_its_module():
    import apache_beam.runners.direct.transform_evaluator  # noqa: F401 - one that binds it, imported to be seen

    bound = {
        name
        for name, module in list(sys.modules.items())
        if name.startswith("apache_beam.")
        and name != userstate.__name__
        and getattr(module, "get_dofn_specs", None) is beam_startup._beam_get_dofn_specs
    }
    assert bound == _BOUND_ELSEWHERE


def test_a_run_on_the_local_runner_asks_the_memo(monkeypatch):
    monkeypatch.setattr(userstate, "get_dofn_specs", beam_startup._beam_get_dofn_specs)
    monkeypatch.setattr(beam_startup, "_MEMO", type(beam_startup._MEMO)())
    beam_startup.install()
    options = PipelineOptions([])
    p = beam.Pipeline(runner=runners.local_runner(options), options=options)
    p | beam.Create([]) | DeduplicateWithState(DedupSettings())
    p.run().wait_until_finish()
    stateful = [d for d in _dofns_of(p) if userstate.is_stateful_dofn(d)]
    # Building and running the graph asked for its stateful DoFns' specs through the memo, which kept them.
    assert stateful and all(d in beam_startup._MEMO for d in stateful)
