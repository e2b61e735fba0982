"""newsbeam's options: those carried with every Beam option through `PipelineOptions`, and the flags of
`newsbeam run` itself, which Beam never sees.

    newsbeam run --config feeds.yaml --output ./news --all --runner=DirectRunner
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions


class NewsbeamOptions(PipelineOptions):
    """`--config`, `--output` and `--run_id`, beside Beam's own options (`--runner`, `--direct_num_workers`, ...)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--config",
            default=None,
            help="YAML config file (default: the bundled sample feeds, configs/default.yaml)",
        )
        parser.add_argument(
            "--output",
            default=None,
            help="output directory or URL (default: the config's `output`, ./output for the bundled config)",
        )
        parser.add_argument(
            "--feed_processes",
            type=int,
            default=None,
            help="on the local runner, feeds finished (and windows written) at once by forked processes "
            "(default: one per core; 1: none)",
        )
        parser.add_argument(
            "--run_id",
            default=None,
            help="identifier of this run, used in file names and the run record (default: UTC time + random suffix)",
        )


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of `newsbeam run` that are not pipeline options: the one list of them, for its parser
    (pipeline/cli.py) and for `beam_args`, which keeps them from Beam."""
    parser.add_argument("-v", "--verbose", action="store_true", help="log Beam's progress (INFO level)")
    parser.add_argument("--all", action="store_true", help="poll every feed, also those not due yet")
    parser.add_argument("--report", action="store_true", help="write the HTML report to OUTPUT/_report/index.html")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr while the run works")
    parser.add_argument("--now", help=argparse.SUPPRESS)  # the run's clock, for tests (as NEWSBEAM_NOW)


def beam_args(argv: Sequence[str]) -> list[str]:
    """`argv` without the flags of `add_run_flags` (in any spelling argparse accepts): what PipelineOptions reads."""
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_run_flags(own)
    return own.parse_known_args(list(argv))[1]
