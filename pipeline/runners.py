"""Which runner a run uses: the one `--runner` names, or else a local runner newsbeam chooses, never Beam's guess.

Beam's `DirectRunner` (since 2.68) first tries the Prism runner, whose binary it downloads from the internet, and
falls back to its in-process runners when the download or the run fails. Whether it tries depends on what the graph
holds (today a DoFn with exception handling, a TestStream or an unsafe trigger turn Prism off), so on a machine with
internet access a run could land on a runner our tests never ran, and without it start-up could wait on a failed
download. When no `--runner` is given, newsbeam therefore builds the runner DirectRunner falls back to for both of
our graphs: Beam's in-process FnApiRunner, in memory. Its batch stage A forks one process per core
(`feed_processes`, pipeline/plane/pool.py) to finish feeds in parallel: a fork of the process that holds the models
costs milliseconds, where each of Beam's own worker processes (`--direct_running_mode=multi_processing`, still
there for whoever asks) imports Beam and loads the models again (docs/speed.md has the figures). It runs the
streaming graph too, stage by stage: the polling stage ends at `streaming.stop_after`, and only then do the later
stages see its articles, so a local streaming trial needs a `stop_after`. Prism, Flink, Spark or Dataflow are one `--runner=...` away.
"""

from __future__ import annotations

import os

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineRunner

from pipeline.options import NewsbeamOptions

DEFAULT = "FnApiRunner"


def feed_processes(options: PipelineOptions, feeds: int, cores: int | None = None) -> int:
    """How many forked processes finish feeds at once in stage A (pipeline/plane/pool.py): `--feed_processes` when
    given, else one per core (at most one per feed) on the local runner in memory; 1 (no fork) on any other runner,
    whose own workers use the cores, and with Beam's worker processes."""
    asked = options.view_as(NewsbeamOptions).feed_processes
    if options.view_as(StandardOptions).runner or options.view_as(StandardOptions).streaming:
        return 1
    if options.view_as(DirectOptions).direct_running_mode == "multi_processing":
        return 1
    if asked is not None:
        return max(1, asked)
    return max(1, min(cores or os.cpu_count() or 1, feeds))


def runner_name(options: PipelineOptions) -> str:
    """The name of the runner a run with `options` uses: `--runner` as given, or the local default (with its worker
    processes, when it has them)."""
    runner = options.view_as(StandardOptions).runner
    if not runner:
        direct = options.view_as(DirectOptions)
        if direct.direct_running_mode == "multi_processing":
            return f"{DEFAULT} (multi_processing x{direct.direct_num_workers or os.cpu_count()})"
        return DEFAULT
    return runner if isinstance(runner, str) else type(runner).__name__


def local_runner(options: PipelineOptions) -> PipelineRunner | None:
    """The runner to build the pipeline with: None when `--runner` names one (Beam builds it), else the default."""
    if options.view_as(StandardOptions).runner:
        return None
    return _fn_api_runner(options)


def _fn_api_runner(options: PipelineOptions) -> PipelineRunner:
    """The FnApiRunner as DirectRunner builds it: with the pipeline options in its provision info, where the SDK
    workers read them (a worker process's filesystems, for one, are configured from them).

    These are Beam's internal modules (`fn_runner`, `ExtendedProvisionInfo`); tests/pipeline/test_runners.py fails
    when they change. If it does, copy what `SwitchingDirectRunner.run_pipeline` in
    apache_beam/runners/direct/direct_runner.py does after its Prism attempt."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=provision)
