"""scikit-learn is the `train` extra: the training commands say how to get it, and workers never import it."""

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [["train-topics"], ["train-language-pair", "--languages", "zu,xh"]])
def test_training_without_sklearn_says_how_to_install_it(command, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn` raise ImportError
    data = tmp_path / "data.csv"
    data.write_text("label,text\nWorld,a\n")
    assert main([*command, "--data", str(data), "--out", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["newsbeam: error: training needs scikit-learn: pip install 'newsbeam[train]'"]
    assert not (tmp_path / "m.npz").exists()


def test_worker_code_runs_without_importing_sklearn():
    # A fresh interpreter: this test process has imported sklearn through other tests.
    script = (
        "import sys\n"
        "import pipeline.build, pipeline.streaming, transforms.classify, transforms.language\n"
        "from transforms.topic_model import load_topic_model\n"
        "labels, _ = load_topic_model().predict_proba(['Shares fell as the central bank raised rates.'])\n"
        "assert labels, labels\n"
        "print('sklearn' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
