"""The `newsbeam` command.

    newsbeam run [--config FILE] [--output DIR] [any Beam pipeline option]

runs the pipeline (the bundled sample feeds by default, written to ./output), prints the run summary and writes it
to `<output>/_runs/<run_id>.json`. Exit status: 0 when the run finished and its counts reconcile, 1 when the run
failed or the counts do not reconcile, 2 for a bad command line or config (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import secrets
import sys
from typing import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from pipeline.build import build
from pipeline.config import ConfigError, load_config
from pipeline.options import NewsbeamOptions
from pipeline.summary import RunSummary, format_table, summarise, counter_values
from transforms.sink import partition_depth

_LOG = logging.getLogger("newsbeam")


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique run id: UTC time to the second plus a random suffix, e.g. 20261125T231500Z-3f9a1c."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _run_parser() -> argparse.ArgumentParser:
    parser = _BeamArgumentParser(
        prog="newsbeam run",
        description="Fetch the configured feeds, clean, classify, deduplicate and window the articles, and write "
        "them as Parquet partitions. Every Apache Beam pipeline option below passes through to the runner.",
        allow_abbrev=False,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log Beam's progress (INFO level)")
    NewsbeamOptions._add_argparse_args(parser)
    seen = {str(NewsbeamOptions)}
    for cls in PipelineOptions.__subclasses__():
        if str(cls) not in seen:
            seen.add(str(cls))
            cls._add_argparse_args(parser)
    return parser


def _main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newsbeam",
        description="newsbeam: RSS/Atom/JSON feeds to clean, classified, deduplicated Parquet partitions, on Apache Beam.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the pipeline (see `newsbeam run --help` for every option)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `newsbeam` console script and `python -m pipeline`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] != "run":
        parser = _main_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}")
        parser.print_help()
        return 0 if argv else 2
    return run(argv[1:])


def run(argv: Sequence[str]) -> int:
    """`newsbeam run`: parse options, load the config, run the pipeline, report. Returns the exit status."""
    args = _run_parser().parse_args(argv)  # exits 2 with a one-line error on an unknown option
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options = PipelineOptions([a for a in argv if a not in ("-v", "--verbose")])
    ours = options.view_as(NewsbeamOptions)
    try:
        config = load_config(ours.config)
    except ConfigError as err:
        print(f"newsbeam: error: {err}", file=sys.stderr)
        return 2
    if ours.output:
        config = dataclasses.replace(config, output=ours.output)
    run_id = ours.run_id or new_run_id()
    summary = RunSummary(run_id=run_id, output=config.output, started_at=_now(), feeds_configured=len(config.feeds))

    pipeline = beam.Pipeline(options=options)
    build(pipeline, config, run_id)
    try:
        result = pipeline.run()
        summary.state = str(result.wait_until_finish())
    except Exception as err:  # the runner's own error: say it in one line, keep the detail in the log
        _LOG.debug("pipeline failed", exc_info=True)
        print(f"newsbeam: run {run_id} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    summary.finished_at = _now()
    summarise(summary, counter_values(result.metrics()), partition_depth(config.window.size_seconds))
    _write_run_record(summary)
    _remove_temp(config.output, run_id)
    print(format_table(summary))
    if not summary.reconciled:
        print("newsbeam: error: the counts do not reconcile (see the run record)", file=sys.stderr)
        return 1
    return 0


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _write_run_record(summary: RunSummary) -> None:
    runs = FileSystems.join(summary.output, "_runs")
    try:
        FileSystems.mkdirs(runs)
    except IOError:
        pass  # exists
    with FileSystems.create(FileSystems.join(runs, f"{summary.run_id}.json")) as fh:
        fh.write(summary.to_json().encode("utf-8"))


def _remove_temp(output: str, run_id: str) -> None:
    # WriteToFiles leaves its (now empty) staging directories behind.
    temp = FileSystems.join(output, "_temp", run_id)
    try:
        FileSystems.delete([temp])
    except Exception:  # best effort: a leftover empty directory harms nobody
        _LOG.info("could not remove %s", temp)
