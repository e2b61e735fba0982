"""pipeline.cli and pipeline.options: `newsbeam run` takes its own flags and every Beam option, and Beam is given
exactly the Beam ones."""

import argparse
import os
import subprocess
import sys
import textwrap

import pytest
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from pipeline.cli import _RunParser, run_parser
from pipeline.options import NewsbeamOptions, beam_args


def _pipeline_option_strings() -> set[str]:
    """The option strings every PipelineOptions class registers (ours among them)."""
    parser = _RunParser(add_help=False, allow_abbrev=False)
    for cls in {NewsbeamOptions, *PipelineOptions.__subclasses__()}:
        cls._add_argparse_args(parser)
    return {s for action in parser._actions for s in action.option_strings}


def _run_flags() -> list[argparse.Action]:
    """The actions of `newsbeam run` that are not pipeline options: its own flags."""
    beam = _pipeline_option_strings()
    return [a for a in run_parser()._actions if a.option_strings and not set(a.option_strings) & (beam | {"-h"})]


def test_run_parser_takes_every_beam_option():
    # Fails when Beam's options classes ask the parser for something it lacks (see _RunParser in pipeline/cli.py).
    parser = run_parser()
    known = {s for action in parser._actions for s in action.option_strings}
    assert _pipeline_option_strings() <= known
    args = parser.parse_args(
        ["--runner=DirectRunner", "--direct_num_workers", "2", "--streaming", "--temp_location=/tmp/x", "--all"]
    )
    assert (args.runner, args.direct_num_workers, args.streaming, args.all) == ("DirectRunner", 2, True, True)


def test_an_unknown_or_abbreviated_option_is_a_one_line_error(capsys):
    for argv in (["--no-such-option"], ["--rep"]):
        with pytest.raises(SystemExit) as exited:
            run_parser().parse_args(argv)
        assert exited.value.code == 2
    assert "unrecognized arguments: --rep" in capsys.readouterr().err


def test_beam_is_given_every_argument_but_the_run_flags():
    flags = _run_flags()
    assert {s for a in flags for s in a.option_strings} == {"-v", "--verbose", "--all", "--report", "--quiet", "--now"}
    beam = ["--runner=DirectRunner", "--direct_num_workers", "2", "--config", "a.yaml"]
    for action in flags:
        for spelling in action.option_strings:
            given = [spelling] if action.nargs == 0 else [spelling, "2027-01-10T00:00:00Z"]
            assert beam_args(beam[:1] + given + beam[1:]) == beam
            if action.nargs != 0:
                assert beam_args([*beam, f"{spelling}=2027-01-10T00:00:00Z"]) == beam
    options = PipelineOptions(beam_args([*beam, "--all", "-v"]))
    assert options.view_as(StandardOptions).runner == "DirectRunner"
    assert (options.view_as(DirectOptions).direct_num_workers, options.view_as(NewsbeamOptions).config) == (2, "a.yaml")


def _command(args: list[str], tmp_path, prelude: str = "") -> subprocess.CompletedProcess:
    """`python -m pipeline ARGS` as the console script runs it, output block-buffered (a pipe, PYTHONUNBUFFERED
    unset), with `prelude` run first in the same interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    code = f"{prelude}\nimport runpy, sys\nsys.argv = ['newsbeam', *{args!r}]\nrunpy.run_module('pipeline', run_name='__main__')"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path
    )


def test_the_command_ends_quickly_but_as_a_normal_exit_would(tmp_path):
    # command() ends the process with os._exit: the exit status, buffered output, atexit functions and threads
    # still running must all come out as a normal interpreter exit leaves them.
    prelude = textwrap.dedent(
        """
        import atexit, concurrent.futures, threading, time
        atexit.register(lambda: open("atexit-ran", "w").close())
        def late(name):
            time.sleep(0.5)
            open(name, "w").close()
        threading.Thread(target=late, args=("thread-finished",)).start()
        # An executor never shut down: a normal exit tells its idle workers to end (else they wait forever).
        POOL = concurrent.futures.ThreadPoolExecutor(2)  # kept: its workers wait for more work
        POOL.submit(late, "task-finished")
        """
    )
    done = _command(["run", "--output", str(tmp_path / "out"), "--quiet"], tmp_path, prelude)
    assert done.returncode == 0, done.stderr
    assert "reconciled" in done.stdout and done.stdout.rstrip().endswith(tuple("0123456789")), done.stdout[-300:]
    assert (tmp_path / "atexit-ran").exists() and (tmp_path / "thread-finished").exists()
    assert (tmp_path / "task-finished").exists()

    bad = _command(["run", "--config", str(tmp_path / "missing.yaml")], tmp_path)
    assert bad.returncode == 2
    assert "config file not found" in bad.stderr
