"""An Airflow DAG that runs newsbeam every 15 minutes with the Apache Beam provider, and compacts nightly.

Documentation only (not run in tests). Needs `apache-airflow-providers-apache-beam` and newsbeam installed on the
worker. One run at a time per output (max_active_runs=1): newsbeam also takes a lock on a local output directory.
BeamRunPythonPipelineOperator runs `python <py_file> <pipeline options>`; `examples/run_newsbeam.py` is that file.
"""

import datetime as dt

from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

OUTPUT = "/data/news"

with DAG(
    dag_id="newsbeam",
    schedule=dt.timedelta(minutes=15),
    start_date=dt.datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=2)},
) as dag:
    ingest = BeamRunPythonPipelineOperator(
        task_id="ingest",
        runner="DirectRunner",  # or DataflowRunner with setup_file, project, region and temp_location below
        py_file="/opt/newsbeam/examples/run_newsbeam.py",
        pipeline_options={
            "config": "/opt/newsbeam/feeds.yaml",
            "output": OUTPUT,
            "direct_running_mode": "multi_processing",
            "direct_num_workers": "2",
        },
    )
    compact = BashOperator(
        task_id="compact",
        bash_command=f"newsbeam compact {OUTPUT} --older-than 1d",
    )
    ingest >> compact
