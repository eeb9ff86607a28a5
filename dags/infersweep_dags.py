"""infersweep's own DAG file: the report DAG, and the generated sweep DAG files kept in step with the configs.

The sweep DAGs (one per config key in INFERSWEEP_CONFIGS, default configs/) live in generated files under
infersweep_sweeps/, one source per file, so a broken sweep file costs only its own DAGs; this file reads no
config and always defines the report DAG. The logic is in `infersweep.airflow.dagfiles`.
"""

from infersweep.airflow.dagfiles import sync_from_dag_file
from infersweep.airflow.report_dag import build_report_dag

sync_from_dag_file(__file__)
infersweep_report = build_report_dag()
