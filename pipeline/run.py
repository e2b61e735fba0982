"""`newsbeam run`: one batch run from config to committed files and run record, or a streaming run.

A batch run takes the output's lock, cleans up what unfinished runs left, loads the key index and the feed
health, runs the graph of pipeline/build.py over the feeds that are due, commits the staged files, saves the feed
state, and writes the run record last (`_runs/<run_id>.json`, the commit point). A streaming run builds the graph of
pipeline/streaming.py and waits for it. Argument parsing is pipeline/cli.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import secrets
import sys
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline import beam_startup, commit, progress, runners, schedule, seen_index, storage
from pipeline.build import build
from pipeline.compact import recover_compactions
from pipeline.config import DEFAULT_CONFIG, Config, ConfigError, check_feeds, check_output, load_config
from pipeline.feed_reports import read_reports
from pipeline.layout import STAGED_ARTICLES, OutputLayout
from pipeline.lock import LockHeld, OutputLock
from pipeline.options import NewsbeamOptions, beam_args
from pipeline.streaming import build_streaming
from pipeline.summary import RunSummary, counter_values, feed_table, format_table, summarise
from transforms.clock import NOW_ENV, parse_instant, utcnow
from transforms.language import check_detector
from transforms.text_classifier import ClassifierError
from transforms.topic_model import load_topic_model

_LOG = logging.getLogger("newsbeam")


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique run id: UTC time to the second plus a random suffix, e.g. 20261125T231500Z-3f9a1c."""
    now = now or utcnow()
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def run(argv: Sequence[str], args: argparse.Namespace) -> int:
    """`newsbeam run`: load the config, run the pipeline, commit, report. `argv` are the command's arguments (Beam
    reads its own options from them), `args` the same parsed by `pipeline.cli.run_parser`. Returns the exit status.

    The hidden `--now INSTANT` runs with the clock fixed at INSTANT (as NEWSBEAM_NOW does), for tests."""
    for name, value in (("--now", args.now), (NOW_ENV, os.environ.get(NOW_ENV))):
        try:
            if value is not None:
                parse_instant(value)
        except ValueError:
            print(f"newsbeam: error: {name}: not an ISO 8601 instant: {value!r}", file=sys.stderr)
            return 2
    if args.now is None:
        return _run(argv, args)
    before = os.environ.get(NOW_ENV)
    os.environ[NOW_ENV] = args.now  # the fetch and parse stages read the clock too (transforms.clock.utcnow)
    try:
        return _run(argv, args)
    finally:
        if before is None:
            os.environ.pop(NOW_ENV, None)
        else:
            os.environ[NOW_ENV] = before


def _run(argv: Sequence[str], args: argparse.Namespace) -> int:
    beam_startup.install()
    options = PipelineOptions(beam_args(argv))
    ours = options.view_as(NewsbeamOptions)
    storage.use_options(options)  # the driver's own file operations reach the output as the workers do
    try:
        config = load_config(ours.config)
    except ConfigError as err:
        print(f"newsbeam: error: {err}", file=sys.stderr)
        return 2
    if ours.output:
        config = dataclasses.replace(config, output=ours.output)
    # Before any fetch: a feed that cannot be read or an output that cannot be written is a config error.
    try:
        check_feeds(config)
    except ConfigError as err:
        print(f"newsbeam: error: {ours.config or DEFAULT_CONFIG}: {err}", file=sys.stderr)
        return 2
    try:
        check_output(config.output)
    except ConfigError as err:
        print(f"newsbeam: error: {err}", file=sys.stderr)
        return 2
    try:
        check_models(config)
    except (ClassifierError, ImportError, ValueError) as err:
        print(f"newsbeam: error: {err}", file=sys.stderr)
        return 2
    run_id = ours.run_id or new_run_id()
    try:
        with OutputLock(config.output, f"run {run_id}"):
            if options.view_as(StandardOptions).streaming:
                return run_streaming(config, options, run_id)
            return _run_locked(config, options, run_id, poll_all=args.all, report=args.report, quiet=args.quiet)
    except LockHeld as err:
        print(f"newsbeam: error: another run is changing this output: {err}", file=sys.stderr)
        return 1


def _run_locked(
    config: Config, options: PipelineOptions, run_id: str, poll_all: bool, report: bool = False, quiet: bool = False
) -> int:
    now = utcnow()
    recover_compactions(config.output)  # before clean_leftovers removes the journals
    commit.clean_leftovers(config.output, keep=run_id)
    seen = seen_index.load_seen_index(config.output, run_id, now, config.dedup.forget_after_seconds)
    health = schedule.load_feed_health(config.output)
    due, skipped = schedule.schedule_feeds(config.feeds, config.schedule, health, now, poll_all)
    summary = RunSummary(
        run_id=run_id,
        output=config.output,
        started_at=_now(),
        runner=runners.runner_name(options),
        feeds_configured=len(config.feeds),
        feeds_skipped=len(skipped),
    )
    if due:
        pipeline = beam.Pipeline(runner=runners.local_runner(options), options=options)
        processes = runners.feed_processes(options, len(due))
        build(pipeline, dataclasses.replace(config, feeds=tuple(due)), run_id, now, seen.base_path, processes)
        token = None if quiet else progress.tap(pipeline)
        try:
            with progress.Progress(len(due), lambda: progress.local_counts(token), quiet=quiet) as shown:
                result = pipeline.run()
                shown.follow(result)
                summary.state = str(result.wait_until_finish())
        except Exception as err:  # the runner's own error: say it in one line, keep the detail in the log
            _LOG.debug("pipeline failed", exc_info=True)
            print(f"newsbeam: run {run_id} failed: {type(err).__name__}: {err}", file=sys.stderr)
            return 1
        counters = counter_values(result.metrics())
    else:
        summary.state = "NOTHING_DUE"
        counters = {}
    staged = commit.staged_files(config.output, run_id, STAGED_ARTICLES)
    summarise(summary, counters, staged)
    reports = read_reports(config.output, run_id)
    read = {r.feed_url for r in reports if r.ok and not r.not_modified}
    index_file = seen_index.write_seen_index(config.output, run_id, seen, now, {f.url for f in config.feeds} - read)
    summary.article_files, summary.dead_letter_files = commit.commit(config.output, run_id)
    new_health = dict(health)
    for feed_report in reports:
        new_health[feed_report.feed_url] = schedule.next_health(
            health.get(feed_report.feed_url), feed_report, now, config.schedule
        )
    schedule.save_feed_health(config.output, new_health.values())
    summary.feeds = feed_table(config, new_health, {r.feed_url for r in reports})
    summary.finished_at = _now()
    record = {**summary.record(), "seen_index": index_file}
    storage.write_json(OutputLayout(config.output).run_record(run_id), record)  # last: the commit point
    seen_index.settle_seen_index(config.output, index_file)
    commit.finish(config.output, run_id)
    print(format_table(summary))
    if report:
        from pipeline.report import write_report

        try:
            print(f"report: {write_report(config.output)}")
        except Exception as err:  # the run itself is done and recorded: a report that fails is not a failed run
            _LOG.debug("report failed", exc_info=True)
            print(f"newsbeam: warning: could not write the report: {type(err).__name__}: {err}", file=sys.stderr)
    if not summary.reconciled:
        print("newsbeam: error: the counts do not reconcile (see the run record)", file=sys.stderr)
        return 1
    return 0


def run_streaming(config: Config, options: PipelineOptions, run_id: str) -> int:
    """`newsbeam run --streaming`: run the streaming graph until it is drained or cancelled. No staging, commit or
    summary: windows are written as they fire. On a remote runner the job keeps running if this process stops."""
    pipeline = beam.Pipeline(runner=runners.local_runner(options), options=options)
    try:
        build_streaming(pipeline, config, run_id)
    except ValueError as err:  # e.g. streaming.poll_overrides naming no feed
        print(f"newsbeam: error: {err}", file=sys.stderr)
        return 2
    try:
        result = pipeline.run()
        print(
            f"newsbeam: streaming run {run_id} started on {runners.runner_name(options)}, writing to {config.output}",
            file=sys.stderr,
        )
        final = str(result.wait_until_finish())
    except KeyboardInterrupt:
        print(f"newsbeam: stopped waiting for run {run_id} (a job on a remote runner keeps running)", file=sys.stderr)
        return 130
    except Exception as err:  # the runner's own error: one line, detail in the log
        _LOG.debug("pipeline failed", exc_info=True)
        print(f"newsbeam: run {run_id} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0 if final.rsplit(".", 1)[-1] in ("DONE", "DRAINED", "CANCELLED") else 1


def check_models(config: Config) -> None:
    """Load the topic model and check the language detector's settings, packages and pair models, so a missing or
    corrupt model file (or a detector package that is not installed) is a clear error before any feed is fetched.
    The detector itself (seconds to load) is built by the workers that use it."""
    if config.classify.model_path:
        load_topic_model(config.classify.model_path)
    check_detector(config.classify.language)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
