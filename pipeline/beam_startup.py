"""Start-up speed-ups for Apache Beam's graph construction, installed by `newsbeam run` before it builds the graph.

Two answers Beam works out again and again while it builds, validates, translates and runs a graph, each the same
every time for the same object, are remembered per object: the first call does Beam's work, the others return it.

- A DoFn's state and timer specs (`userstate.get_dofn_specs`), derived from the signatures of all of its methods:
  about ten times per DoFn.
- A view of the pipeline options as one options class (`PipelineOptions.view_as`), which builds an argparse parser
  for that class and parses the command line again: about 490 times per run, mostly from Beam's type checks asking
  whether beartype is disabled (`typehints.is_consistent_with`), 0.16 s of CPU. A view holds no state of its own: it
  reads and writes the options object's one dict of values, so the same view serves every later request for the same
  class, as long as the options object still has the same flags and dict (checked at every call).

`python benchmarks/startup.py` shows where start-up goes. These replace a function and a method of Beam's (public in
name, but not extension points). tests/pipeline/test_beam_startup.py fails when a Beam upgrade changes what they rely
on: their signatures, their answers, or (for the specs) callers looking the function up as `userstate.get_dofn_specs`
(a caller holding its own reference would bypass the memo). If it fails, delete the memo concerned here (runs only
start slower), then measure whether the new Beam still needs it before adapting it.
"""

from __future__ import annotations

import weakref

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import userstate

_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _memoised_get_dofn_specs(dofn):
    try:
        specs = _MEMO.get(dofn)
    except TypeError:  # an unhashable DoFn: asked every time, as Beam does
        return _beam_get_dofn_specs(dofn)
    if specs is None:
        specs = _MEMO[dofn] = _beam_get_dofn_specs(dofn)
    state_specs, timer_specs = specs
    return set(state_specs), set(timer_specs)  # copies: a caller may change what it gets


def _memoised_view_as(self, cls):
    flags = self._flags
    key = (cls, tuple(flags) if flags is not None else None)
    try:
        views = _VIEWS.setdefault(self, {})
    except TypeError:  # options that cannot be weakly referenced or hashed: a new view every time, as Beam does
        return _beam_view_as(self, cls)
    view = views.get(key)
    # A view is current while it shares the options' dict of values (replaced only by whoever rebuilds the object).
    if view is None or view._all_options is not self._all_options:
        view = views[key] = _beam_view_as(self, cls)
    return view


_beam_get_dofn_specs = userstate.get_dofn_specs
_beam_view_as = PipelineOptions.view_as


def install() -> None:
    """Remember each DoFn's state and timer specs, and each view of a pipeline options object, in this process
    (idempotent)."""
    userstate.get_dofn_specs = _memoised_get_dofn_specs
    PipelineOptions.view_as = _memoised_view_as
