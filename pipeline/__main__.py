"""`python -m pipeline`: the same as the `newsbeam` command."""

from pipeline.cli import command

command()
