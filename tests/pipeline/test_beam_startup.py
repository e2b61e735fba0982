"""pipeline.beam_startup: Beam's DoFn state/timer specs remembered per DoFn give Beam's own answers."""

import apache_beam as beam
from apache_beam.transforms import userstate

from pipeline import beam_startup
from transforms.dedup import DeduplicateWithState, DedupSettings
from transforms.neardup.streaming import DropNearCopiesWithState


def _dofns(transform: beam.PTransform) -> list:
    p = beam.Pipeline()
    p | beam.Create([]) | transform
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
