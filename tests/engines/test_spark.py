"""The batch graph on Apache Spark (`--spark_master_url=local[2]`: two executor threads in the job server's JVM), the
Python work in Beam's worker pool's processes (`--environment_type=EXTERNAL`).

The job server is Beam 2.62.0's Spark 3 runner on Spark 3.5.0 (see .ci/engines.sh for why not 2.78).
"""

from __future__ import annotations

import pytest

from tests.engines.conftest import check_batch_on_samples, job_server_jar, worker_pool

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def spark_jar() -> str:
    return job_server_jar("NEWSBEAM_SPARK_JOB_SERVER_JAR", "spark-3-2.62.0", "Spark job server")


def test_samples_on_spark_give_the_local_rows_once(spark_jar, samples_reference, tmp_path):
    with worker_pool(tmp_path / "pool.log") as pool:
        engine = [
            "--runner=SparkRunner",
            "--spark_master_url=local[2]",
            f"--spark_job_server_jar={spark_jar}",
            "--environment_type=EXTERNAL",
            f"--environment_config={pool}",
        ]
        check_batch_on_samples(engine, tmp_path / "pool.log", samples_reference, tmp_path / "out", "SparkRunner")
