"""The `newsbeam` command.

    newsbeam run [--config FILE] [--output DIR] [--all] [--report] [--quiet] [--streaming] [any Beam pipeline option]
    newsbeam compact OUTPUT [--older-than 1d] [Beam filesystem options]
    newsbeam report OUTPUT [--out FILE] [--since 7d] [Beam filesystem options]
    newsbeam reindex OUTPUT [Beam filesystem options]
    newsbeam train-topics --data CSV --out MODEL
    newsbeam train-language-pair --data DIR --languages A,B --out MODEL

`run` runs the pipeline (the bundled sample feeds by default, written to ./output), commits its files, updates the
feed state, prints the run summary and writes it to `<output>/_runs/<run_id>.json`. Exit status: 0 when the run
finished and its counts reconcile, 1 when the run failed or the counts do not reconcile, 2 for a bad command line,
config or model file (one line on stderr, no traceback). An output on an object store (s3://, gs://) is reached with
Beam's options for its filesystem (`--s3_endpoint_url`, `--s3_access_key_id`, ..., `--project`), given to every
command (docs/object-storage.md).

This module parses the command line and dispatches; each command lives in the module named for it: pipeline/run.py
(`run`), pipeline/maintenance.py (`compact`, `report`, `reindex`), pipeline/training.py (`train-topics`,
`train-language-pair`).
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
import threading
from collections.abc import Sequence

# Importing Beam logs a harmless "apitools not found" warning through the root logger, which would otherwise set
# up a stderr handler and print it on every command; a handler on root first keeps it quiet until we configure logging.
logging.getLogger().addHandler(logging.NullHandler())

from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from pipeline import storage
from pipeline.maintenance import compact_command, reindex_command, report_command
from pipeline.options import NewsbeamOptions, add_run_flags
from pipeline.run import run
from pipeline.training import train_language_pair_command, train_topics_command


class _RunParser(argparse.ArgumentParser):
    """The parser of `newsbeam run` (and of the Beam options `compact`, `report` and `reindex` take). It checks the command line and prints --help; Beam's PipelineOptions parses the
    pipeline options' values again from the same arguments, so a ValueProvider option is checked and shown here as
    the plain option it is on the command line. (Beam's own parser class for that, _BeamArgumentParser, is private.)
    """

    def add_value_provider_argument(self, *args, **kwargs) -> None:
        """What an options class that supports templates calls instead of add_argument."""
        self.add_argument(*args, **kwargs)


def run_parser() -> argparse.ArgumentParser:
    """The options of `newsbeam run`: ours, and every Apache Beam pipeline option, passed through to the runner."""
    parser = _RunParser(
        prog="newsbeam run",
        description="Fetch the configured feeds, clean, classify, deduplicate and window the articles, and write "
        "them as Parquet partitions. Every Apache Beam pipeline option below passes through to the runner.",
        allow_abbrev=False,
    )
    add_run_flags(parser)
    # Every options class Beam knows registers its options through `_add_argparse_args`, the hook Beam's docs tell
    # an options class to implement; a new method it calls on the parser fails tests/pipeline/test_cli.py.
    NewsbeamOptions._add_argparse_args(parser)
    _add_beam_options(parser)
    return parser


def _add_beam_options(parser: argparse.ArgumentParser) -> None:
    seen = {str(NewsbeamOptions)}
    for cls in PipelineOptions.__subclasses__():
        if str(cls) not in seen:
            seen.add(str(cls))
            cls._add_argparse_args(parser)


def _filesystem_options(command: str, beam_args: list[str]) -> PipelineOptions:
    """The Beam options given to a command that works on an existing output (they reach its filesystem); an
    unknown one exits 2 with one line, as `run` does."""
    parser = _RunParser(prog=f"newsbeam {command}", allow_abbrev=False)
    _add_beam_options(parser)
    parser.parse_args(beam_args)
    return PipelineOptions(beam_args)


_OUTPUT_HELP = (
    "the output of earlier runs: a directory, or s3://BUCKET/PATH or gs://BUCKET/PATH followed by the Beam options "
    "that reach it (--s3_endpoint_url, --s3_access_key_id, ...)"
)


def _main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newsbeam",
        description="newsbeam: RSS/Atom/JSON feeds to clean, classified, deduplicated Parquet partitions, on Apache Beam.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the pipeline (see `newsbeam run --help` for every option)", add_help=False)
    compact_parser = commands.add_parser("compact", help="merge the small files of each partition into one")
    compact_parser.add_argument("output", help=_OUTPUT_HELP)
    compact_parser.add_argument(
        "--older-than",
        default="1d",
        help="only partitions whose window ended at least this long ago (default 1d: late articles have arrived)",
    )
    report = commands.add_parser(
        "report",
        help="write one self-contained HTML page about an output: runs, feed health, articles, dead letters",
    )
    report.add_argument("output", help=_OUTPUT_HELP)
    report.add_argument("--out", default=None, help="HTML file to write (default OUTPUT/_report/index.html)")
    report.add_argument("--since", default="7d", help="the period shown: 24h, 7d, 30d, ...; 0 for all (default 7d)")
    reindex_parser = commands.add_parser(
        "reindex", help="rebuild the key index of what was written (_state/seen/) from the output's articles"
    )
    reindex_parser.add_argument("output", help=_OUTPUT_HELP)
    train = commands.add_parser(
        "train-topics",
        help="train a topic model from a CSV of label,title,text (AG News' format included)",
        description="Train a topic classifier, print its cross-validated accuracy and write a model file that "
        "`classify: {topic_model: FILE}` in a config can point at. Numeric labels are mapped through a classes.txt "
        "next to the CSV when there is one. Training is seeded: the same data gives the same file.",
    )
    train.add_argument("--data", required=True, help="CSV file: label,title,text")
    train.add_argument("--out", required=True, help="model file to write (.npz)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    train.add_argument(
        "--language", action="append", default=None, help="language(s) of the training data (default en; repeatable)"
    )
    pair = commands.add_parser(
        "train-language-pair",
        help="train a model that tells close languages apart (say Indonesian and Malay) from sentence files",
        description="Train a language pair model from DIR/<code>.txt files (one sentence per line), print its "
        "cross-validated accuracy and write a model file that `classify: {language: {pair_models: [...]}}` in a "
        "config can list. When the detectors' best guess is one of the model's languages, the model helps choose "
        "between them. Training is seeded: the same data gives the same file.",
    )
    pair.add_argument("--data", required=True, help="directory with one <code>.txt file of sentences per language")
    pair.add_argument("--languages", required=True, help="comma-separated ISO 639-1 codes, e.g. id,ms")
    pair.add_argument("--out", required=True, help="model file to write (.npz)")
    pair.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    pair.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    return parser


def command() -> None:
    """The `newsbeam` console script and `python -m pipeline`: main(), then the process ends without the
    interpreter's teardown. Freeing a run's heap object by object (the language models' arrays, Beam's graph and
    runner state) took about 0.3 s after the run was done and committed (0.83 against 0.53 s from the last article
    file to the exit, 10,000 articles); the operating system frees it at once. Everything a normal exit does first
    still happens, in its order: the threads still running are waited for, then the atexit functions (logging's
    flush, temporary directories' removal) run, then the standard streams are flushed. `threading._shutdown` is
    private, but it is the function the interpreter calls for this (tests/pipeline/test_cli.py fails without it)."""
    code = main()
    # What the interpreter's own exit runs first, in its order: threading's exit hooks (an executor left open gets its
    # workers told to finish), then every non-daemon thread joined.
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said on it
            pass
    os._exit(code if isinstance(code, int) else 0)


def main(argv: Sequence[str] | None = None) -> int:
    """What the `newsbeam` command runs (`command()`), callable in-process: the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        args = run_parser().parse_args(argv[1:])  # exits 2 with a one-line error on an unknown option
        configure_logging(args.verbose)
        return run(argv[1:], args)
    parser = _main_parser()
    args, beam_args = parser.parse_known_args(argv)  # exits 2 on an unknown command, 0 after --help
    if args.command in ("compact", "report", "reindex"):
        configure_logging(False)
        storage.use_options(_filesystem_options(args.command, beam_args))
    elif beam_args:
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    if args.command == "compact":
        return compact_command(args.output, args.older_than)
    if args.command == "report":
        return report_command(args.output, args.out, args.since)
    if args.command == "reindex":
        return reindex_command(args.output)
    if args.command == "train-topics":
        return train_topics_command(args)
    if args.command == "train-language-pair":
        return train_language_pair_command(args)
    _main_parser().print_help()
    return 2


def configure_logging(verbose: bool) -> None:
    """WARNING and up on stderr (INFO with --verbose), without the noise known to say nothing about a run."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.NullHandler)]:
        root.removeHandler(handler)  # the import-time guard has done its job
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    for handler in root.handlers:
        handler.addFilter(_drop_known_noise)


# Beam 2.77's RunInference imports its ModelManager with torch, and without torch it warns on every batch that it
# cannot measure memory; the warning says nothing about this run.
_KNOWN_NOISE = ("Resource module is not available for current platform",)


def _drop_known_noise(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_KNOWN_NOISE)
