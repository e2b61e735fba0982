"""The progress line of `newsbeam run` on a terminal counts each stage of the batch graph: the taps find the plane's
steps and their main outputs (Beam keys a main output by None, whatever name `with_outputs(main=...)` gave it)."""

import io
import json
import sys

from pipeline.cli import main


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_counts_every_stage_of_the_sample_run(tmp_path, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    output = tmp_path / "out"
    assert main(["run", "--output", str(output), "--run_id", "progress"]) == 0
    monkeypatch.undo()
    record = json.loads((output / "_runs" / "progress.json").read_text())
    last = [line for line in terminal.getvalue().replace("\r", "\n").splitlines() if "staged" in line][-1]
    assert f"feeds fetched {record['feeds_configured']}/{record['feeds_configured']}" in last
    assert f"staged {record['counters']['classify/articles']}" in last
    assert f"kept {record['articles_written']}" in last
