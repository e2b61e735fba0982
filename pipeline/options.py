"""newsbeam's own pipeline options, carried with every Beam option through `PipelineOptions`."""

from __future__ import annotations

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
            "--run_id",
            default=None,
            help="identifier of this run, used in file names and the run record (default: UTC time + random suffix)",
        )
