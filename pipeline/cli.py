"""The `newsbeam` command.

    newsbeam run [--config FILE] [--output DIR] [--all] [--report] [--quiet] [--streaming] [any Beam pipeline option]
    newsbeam compact OUTPUT [--older-than 1d]
    newsbeam report OUTPUT [--out FILE] [--since 7d]
    newsbeam reindex OUTPUT
    newsbeam train-topics --data CSV --out MODEL

`run` runs the pipeline (the bundled sample feeds by default, written to ./output), commits its files, updates the
feed state, prints the run summary and writes it to `<output>/_runs/<run_id>.json`. Exit status: 0 when the run
finished and its counts reconcile, 1 when the run failed or the counts do not reconcile, 2 for a bad command line,
config or model file (one line on stderr, no traceback).
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
from pathlib import Path

# Importing Beam logs a harmless "apitools not found" warning through the root logger, which would otherwise set
# up a stderr handler and print it on every command; a handler on root first keeps it quiet until we configure logging.
logging.getLogger().addHandler(logging.NullHandler())

import apache_beam as beam  # noqa: E402
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, _BeamArgumentParser

from pipeline import progress, schedule, state
from pipeline.build import build
from pipeline.compact import compact, recover_compactions
from pipeline.config import (
    DEFAULT_CONFIG,
    Config,
    ConfigError,
    check_feeds,
    check_output,
    load_config,
    parse_duration,
)
from pipeline.options import NewsbeamOptions
from pipeline.streaming import build_streaming
from pipeline.summary import RunSummary, counter_values, feed_table, format_table, summarise
from transforms.article import NOW_ENV, parse_instant, utcnow
from transforms.language import check_detector
from transforms.sink import ARTICLES_DIR
from transforms.text_classifier import ClassifierError
from transforms.topic_model import load_topic_model

_LOG = logging.getLogger("newsbeam")


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique run id: UTC time to the second plus a random suffix, e.g. 20261125T231500Z-3f9a1c."""
    now = now or utcnow()
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _run_parser() -> argparse.ArgumentParser:
    parser = _BeamArgumentParser(
        prog="newsbeam run",
        description="Fetch the configured feeds, clean, classify, deduplicate and window the articles, and write "
        "them as Parquet partitions. Every Apache Beam pipeline option below passes through to the runner.",
        allow_abbrev=False,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log Beam's progress (INFO level)")
    parser.add_argument("--all", action="store_true", help="poll every feed, also those not due yet")
    parser.add_argument("--report", action="store_true", help="write the HTML report to OUTPUT/_report/index.html")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr while the run works")
    parser.add_argument("--now", help=argparse.SUPPRESS)  # the run's clock, for tests (as NEWSBEAM_NOW)
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
    compact_parser = commands.add_parser("compact", help="merge the small files of each partition into one")
    compact_parser.add_argument("output", help="the output directory of earlier runs")
    compact_parser.add_argument(
        "--older-than",
        default="1d",
        help="only partitions whose window ended at least this long ago (default 1d: late articles have arrived)",
    )
    report = commands.add_parser(
        "report",
        help="write one self-contained HTML page about an output: runs, feed health, articles, dead letters",
    )
    report.add_argument("output", help="the output directory of earlier runs")
    report.add_argument("--out", default=None, help="HTML file to write (default OUTPUT/_report/index.html)")
    report.add_argument("--since", default="7d", help="the period shown: 24h, 7d, 30d, ...; 0 for all (default 7d)")
    reindex_parser = commands.add_parser(
        "reindex", help="rebuild the key index of what was written (_state/seen/) from the output's articles"
    )
    reindex_parser.add_argument("output", help="the output directory of earlier runs")
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


def train_topics_command(args: argparse.Namespace) -> int:
    """`newsbeam train-topics`: train, report cross-validated accuracy, save. Returns the exit status."""
    from pipeline.training import train_from_csv

    trained = _train_and_save(
        args,
        lambda: train_from_csv(args.data, seed=args.seed, folds=args.folds, languages=tuple(args.language or ["en"])),
    )
    if trained is None:
        return 2
    model, accuracy, path = trained
    print(f"{args.folds}-fold cross-validated accuracy: {accuracy:.4f}")
    print(f"wrote {path} (labels: {', '.join(model.labels)}; languages: {', '.join(model.languages)})")
    return 0


def train_language_pair_command(args: argparse.Namespace) -> int:
    """`newsbeam train-language-pair`: train, report cross-validated accuracy, save. Returns the exit status."""
    from pipeline.training import read_sentences, train_pair_model

    def train():
        texts, labels = read_sentences(args.data, args.languages.split(","))
        return train_pair_model(texts, labels, seed=args.seed, folds=args.folds, source=Path(args.data).name)

    trained = _train_and_save(args, train)
    if trained is None:
        return 2
    model, accuracy, path = trained
    print(f"{args.folds}-fold cross-validated accuracy between {', '.join(model.labels)}: {accuracy:.4f}")
    print(f"wrote {path}")
    return 0


def _train_and_save(args: argparse.Namespace, train):
    """(model, cross-validated accuracy, path written) from `train()` saved to `args.out`; None after printing a
    one-line error when the training data is unusable."""
    from transforms.classifier_file import save_model

    try:
        import sklearn  # noqa: F401  (workers do not need it, so it is an extra)
    except ImportError:
        print("newsbeam: error: training needs scikit-learn: pip install 'newsbeam[train]'", file=sys.stderr)
        return None
    try:
        model, accuracy = train()
    except (OSError, ValueError, ClassifierError) as err:
        print(f"newsbeam: error: {args.data}: {err}", file=sys.stderr)
        return None
    return model, accuracy, save_model(model, args.out)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `newsbeam` console script and `python -m pipeline`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        return run(argv[1:])
    args = _main_parser().parse_args(argv)  # exits 2 on an unknown command, 0 after --help
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


def compact_command(output: str, older_than: str) -> int:
    """`newsbeam compact`: merge each old-enough partition's files into one. Returns the exit status."""
    _configure_logging(False)
    try:
        age = dt.timedelta(seconds=parse_duration(older_than))
        result = compact(output, age)
    except ValueError as err:
        print(f"newsbeam: error: --older-than: {err}", file=sys.stderr)
        return 2
    except state.LockHeld as err:
        print(f"newsbeam: error: another run is changing this output: {err}", file=sys.stderr)
        return 1
    print(
        f"compacted {result.partitions_compacted} partition(s): {result.files_before} files -> "
        f"{result.files_after}, {result.rows} rows ({result.atomic_swaps} swapped atomically)"
    )
    return 0


def report_command(output: str, out: str | None, since: str) -> int:
    """`newsbeam report`: write the HTML report of an output. Returns the exit status."""
    from pipeline.report import write_report

    _configure_logging(False)
    try:
        since_seconds = parse_duration(since)
    except ValueError as err:
        print(f"newsbeam: error: --since: {err}", file=sys.stderr)
        return 2
    if not FileSystems.exists(output):
        print(f"newsbeam: error: {output}: no such output", file=sys.stderr)
        return 2
    print(f"wrote {write_report(output, out, since_seconds)}")
    return 0


def reindex_command(output: str) -> int:
    """`newsbeam reindex`: rebuild the key index from the dataset. Returns the exit status."""
    _configure_logging(False)
    if not Path(output).is_dir() and "://" not in output:
        print(f"newsbeam: error: {output}: no such output directory", file=sys.stderr)
        return 2
    try:
        with state.OutputLock(output, "reindex"):
            name, rows = state.reindex(output, utcnow())
    except state.LockHeld as err:
        print(f"newsbeam: error: another run is changing this output: {err}", file=sys.stderr)
        return 1
    print(f"reindexed {rows} article(s) into {state.seen_path(output, name)}")
    return 0


def _without_option(argv: Sequence[str], name: str) -> list[str]:
    """`argv` without `name VALUE` / `name=VALUE`."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            kept.append(arg)
    return kept


def run(argv: Sequence[str]) -> int:
    """`newsbeam run`: parse options, load the config, run the pipeline, commit, report. Returns the exit status.

    The hidden `--now INSTANT` runs with the clock fixed at INSTANT (as NEWSBEAM_NOW does), for tests."""
    args = _run_parser().parse_args(argv)  # exits 2 with a one-line error on an unknown option
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
    os.environ[NOW_ENV] = args.now  # the fetch and parse stages read the clock too (transforms.article.utcnow)
    try:
        return _run(_without_option(argv, "--now"), args)
    finally:
        if before is None:
            os.environ.pop(NOW_ENV, None)
        else:
            os.environ[NOW_ENV] = before


def _run(argv: Sequence[str], args: argparse.Namespace) -> int:
    _configure_logging(args.verbose)
    options = PipelineOptions([a for a in argv if a not in ("-v", "--verbose", "--all", "--report", "--quiet")])
    ours = options.view_as(NewsbeamOptions)
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
        with state.OutputLock(config.output, f"run {run_id}"):
            if options.view_as(StandardOptions).streaming:
                return run_streaming(config, options, run_id)
            return _run_locked(config, options, run_id, poll_all=args.all, report=args.report, quiet=args.quiet)
    except state.LockHeld as err:
        print(f"newsbeam: error: another run is changing this output: {err}", file=sys.stderr)
        return 1


def _run_locked(
    config: Config, options: PipelineOptions, run_id: str, poll_all: bool, report: bool = False, quiet: bool = False
) -> int:
    now = utcnow()
    recover_compactions(config.output)  # before clean_leftovers removes the journals
    state.clean_leftovers(config.output, keep=run_id)
    seen = state.load_seen_index(config.output, run_id, now, config.dedup.forget_after_seconds)
    health = schedule.load_feed_health(config.output)
    due, skipped = schedule.schedule_feeds(config, health, now, poll_all)
    summary = RunSummary(
        run_id=run_id,
        output=config.output,
        started_at=_now(),
        feeds_configured=len(config.feeds),
        feeds_skipped=len(skipped),
    )
    if due:
        pipeline = beam.Pipeline(options=options)
        build(pipeline, dataclasses.replace(config, feeds=tuple(due)), run_id, now, seen.base_path)
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
    staged = state.staged_files(config.output, run_id, ARTICLES_DIR)
    summarise(summary, counters, staged)
    reports = state.read_reports(config.output, run_id)
    read = {r.feed_url for r in reports if r.ok and not r.not_modified}
    seen_index = state.write_seen_index(config.output, run_id, seen, now, {f.url for f in config.feeds} - read)
    summary.article_files, summary.dead_letter_files = state.commit(config.output, run_id)
    new_health = dict(health)
    for feed_report in reports:
        new_health[feed_report.feed_url] = schedule.next_health(
            health.get(feed_report.feed_url), feed_report, now, config.schedule
        )
    schedule.save_feed_health(config.output, new_health.values())
    summary.feeds = feed_table(config, new_health, {r.feed_url for r in reports})
    summary.finished_at = _now()
    record = {**summary.record(), "seen_index": seen_index}
    state.write_json(state.run_record_path(config.output, run_id), record)  # last: the commit point
    state.settle_seen_index(config.output, seen_index)
    state.finish(config.output, run_id)
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
    pipeline = beam.Pipeline(options=options)
    try:
        build_streaming(pipeline, config, run_id)
    except ValueError as err:  # e.g. streaming.poll_overrides naming no feed
        print(f"newsbeam: error: {err}", file=sys.stderr)
        return 2
    try:
        result = pipeline.run()
        print(f"newsbeam: streaming run {run_id} started, writing to {config.output}", file=sys.stderr)
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


def _configure_logging(verbose: bool) -> None:
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


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
