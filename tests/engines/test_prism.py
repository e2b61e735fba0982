"""The batch graph on Prism, Beam's portable runner in Go, built with `go install` at the installed apache-beam's
version (.ci/engines.sh), the Python work in Beam's worker pool's processes (`--environment_type=EXTERNAL`).

Prism keeps to the watermark in batch too: an element that reaches a window the watermark has passed is dropped at
the next GroupByKey. That is how it found the articles the batch graph lost (transforms/window.py).
"""

from __future__ import annotations

import pytest

from tests.engines.conftest import check_batch_on_samples, prism_binary, worker_pool

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def prism() -> str:
    return prism_binary()


def test_samples_on_prism_give_the_local_rows_once(prism, samples_reference, tmp_path):
    with worker_pool(tmp_path / "pool.log") as pool:
        engine = [
            "--runner=PrismRunner",
            f"--prism_location={prism}",
            "--environment_type=EXTERNAL",
            f"--environment_config={pool}",
        ]
        check_batch_on_samples(engine, tmp_path / "pool.log", samples_reference, tmp_path / "out", "PrismRunner")
