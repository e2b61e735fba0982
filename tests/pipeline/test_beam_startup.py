"""pipeline.beam_startup: Beam's DoFn state/timer specs remembered per DoFn, and views of pipeline options remembered
per options object, give Beam's own answers.

These tests are the alarm for a Beam upgrade: each fails when Beam changes what the memo relies on (see the module's
docstring for what to do then).
"""

import copy
import inspect
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TypeOptions,
)
from apache_beam.runners.portability.fn_api_runner import fn_runner  # noqa: F401 - imports the modules that call it
from apache_beam.transforms import userstate

from pipeline import beam_startup, runners
from pipeline.options import NewsbeamOptions
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

    # A module imported after a run installed the memo binds the memo itself: it is counted all the same (it would
    # bind Beam's function in a process that never ran), so the answer does not depend on which tests ran first.
    bound = {
        name
        for name, module in list(sys.modules.items())
        if name.startswith("apache_beam.")
        and name != userstate.__name__
        and getattr(module, "get_dofn_specs", None)
        in (beam_startup._beam_get_dofn_specs, beam_startup._memoised_get_dofn_specs)
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


# Views of pipeline options

FLAGS = ["--streaming", "--feed_processes", "3", "--project=p", "--disable_beartype", "--direct_num_workers=2"]


def _option_classes() -> list[type]:
    found, todo = [], [PipelineOptions]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def _values(view: PipelineOptions) -> dict:
    return {name: getattr(view, name) for name in view._visible_option_list()}


def test_remembered_views_are_beams_own(monkeypatch):
    monkeypatch.setattr(PipelineOptions, "view_as", beam_startup._beam_view_as)
    classes = _option_classes()
    assert NewsbeamOptions in classes and len(classes) > 20
    expected = [_values(PipelineOptions(FLAGS).view_as(cls)) for cls in classes]
    assert expected[classes.index(TypeOptions)]["disable_beartype"] is True  # the flags reached the views
    beam_startup.install()
    assert PipelineOptions.view_as is beam_startup._memoised_view_as
    options = PipelineOptions(FLAGS)
    for _ in range(2):  # built, then remembered
        assert [_values(options.view_as(cls)) for cls in classes] == expected
    assert options.view_as(StandardOptions) is options.view_as(StandardOptions)
    reference = PipelineOptions(FLAGS)
    for cls in classes:
        beam_startup._beam_view_as(reference, cls)
    assert options.get_all_options() == reference.get_all_options()


def test_a_remembered_view_writes_where_beams_views_read(monkeypatch):
    monkeypatch.setattr(PipelineOptions, "view_as", beam_startup._beam_view_as)
    beam_startup.install()
    options = PipelineOptions(["--feed_processes", "3"])
    options.view_as(StandardOptions).runner = "SomeRunner"
    options.view_as(NewsbeamOptions).feed_processes = 5
    assert beam_startup._beam_view_as(options, StandardOptions).runner == "SomeRunner"
    assert options.view_as(NewsbeamOptions).feed_processes == 5
    assert options.get_all_options()["runner"] == "SomeRunner"
    # A view of a view, and a deep copy (Beam's Pipeline copies its options) with a life of its own.
    assert options.view_as(DirectOptions).view_as(StandardOptions).runner == "SomeRunner"
    copied = copy.deepcopy(options)
    copied.view_as(StandardOptions).runner = "Other"
    assert options.view_as(StandardOptions).runner == "SomeRunner"
    assert copied.view_as(StandardOptions).runner == "Other"


def test_a_view_is_built_again_when_its_options_change_underneath(monkeypatch):
    monkeypatch.setattr(PipelineOptions, "view_as", beam_startup._beam_view_as)
    beam_startup.install()
    options = PipelineOptions(["--project=one"])
    first = options.view_as(GoogleCloudOptions)
    assert first.project == "one"
    options._flags.append("--region=r")  # the same list, changed in place: parsed again, as Beam would
    second = options.view_as(GoogleCloudOptions)
    assert second is not first and second._visible_options.region == "r"
    assert _values(second) == _values(beam_startup._beam_view_as(options, GoogleCloudOptions))
    options._all_options = dict(options._all_options, project="two")  # the values replaced
    assert options.view_as(GoogleCloudOptions).project == "two"


def test_beams_view_as_still_takes_a_class_and_shares_the_values():
    assert list(inspect.signature(beam_startup._beam_view_as).parameters) == ["self", "cls"]
    options = PipelineOptions(["--runner=X"])
    view = beam_startup._beam_view_as(options, StandardOptions)
    # What makes one view as good as another: it holds no values of its own, only the options object's dict.
    assert view._all_options is options._all_options and view._flags is options._flags
    assert set(vars(view)) == {"_flags", "_visible_options", "_all_options"}
