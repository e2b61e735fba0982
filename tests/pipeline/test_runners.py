"""The runner a run uses is newsbeam's choice, not Beam's guess (pipeline/runners.py): with no `--runner`, Beam's
in-process FnApiRunner, built the way DirectRunner builds it, so Prism is never downloaded behind the user's back."""

import json
import subprocess
import sys

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import fn_runner

from pipeline import runners


def test_no_runner_given_means_the_in_process_fn_api_runner():
    options = PipelineOptions(["--job_name=newsbeam-runner-test"])
    assert runners.runner_name(options) == "FnApiRunner"
    runner = runners.local_runner(options)
    assert isinstance(runner, fn_runner.FnApiRunner)
    # The workers see the run's options (Beam's internal provision info: this fails if Beam moves it).
    provided = runner._provision_info.provision_info.pipeline_options.fields
    assert provided["beam:option:job_name:v1"].string_value == "newsbeam-runner-test"


def test_streaming_without_runner_uses_the_same_local_runner():
    options = PipelineOptions(["--streaming"])
    assert runners.runner_name(options) == "FnApiRunner"
    assert isinstance(runners.local_runner(options), fn_runner.FnApiRunner)


def test_a_named_runner_is_left_to_beam():
    options = PipelineOptions(["--runner=PortableRunner"])
    assert runners.runner_name(options) == "PortableRunner"
    assert runners.local_runner(options) is None


def test_a_default_run_records_the_runner_the_readme_names(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--output", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    (record_file,) = (out / "_runs").glob("*.json")
    assert json.loads(record_file.read_text())["runner"] == "FnApiRunner"
    assert "Prism" not in done.stderr
