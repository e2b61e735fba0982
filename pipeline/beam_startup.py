"""A start-up speed-up for Apache Beam's graph construction, installed by `newsbeam run` before it builds the graph.

Beam derives a DoFn's state and timer specs (`userstate.get_dofn_specs`) from the signatures of all of its methods,
and asks again at every step of building, validating, translating and running a graph: about ten times per DoFn,
which made it a large share of a run's start-up (`python benchmarks/cpu_profile.py` shows where start-up goes). The
answer depends only on the DoFn object, so it is remembered per object: the first call does Beam's work, the others
return the same specs.

This replaces a function of Beam's (public in name, but not an extension point). tests/pipeline/test_beam_startup.py
fails when a Beam upgrade changes what this relies on: the function's signature, its answers, or its callers
looking it up as `userstate.get_dofn_specs` (a caller holding its own reference would bypass the memo). If it fails,
delete this module and its `install()` call in pipeline/run.py (runs only start slower), then measure whether the
new Beam still needs it before adapting the memo.
"""

from __future__ import annotations

import weakref

from apache_beam.transforms import userstate

_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _memoised_get_dofn_specs(dofn):
    try:
        specs = _MEMO.get(dofn)
    except TypeError:  # an unhashable DoFn: asked every time, as Beam does
        return _beam_get_dofn_specs(dofn)
    if specs is None:
        specs = _MEMO[dofn] = _beam_get_dofn_specs(dofn)
    state_specs, timer_specs = specs
    return set(state_specs), set(timer_specs)  # copies: a caller may change what it gets


_beam_get_dofn_specs = userstate.get_dofn_specs


def install() -> None:
    """Remember each DoFn's state and timer specs in this process (idempotent)."""
    userstate.get_dofn_specs = _memoised_get_dofn_specs
