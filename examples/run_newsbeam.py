"""`newsbeam run` as a Python file, for launchers that run `python FILE OPTIONS` (Airflow's Beam operators)."""

import sys

from pipeline.cli import main

sys.exit(main(["run", *sys.argv[1:]]))
