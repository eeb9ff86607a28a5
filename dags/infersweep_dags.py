"""Sweep DAGs: one per config key in the sweep files (INFERSWEEP_CONFIGS, default configs/).

All logic lives in `infersweep.airflow.factory`; this file only asks it to register the DAGs here.
"""

from infersweep.airflow.factory import load_dags
from infersweep.airflow.report_dag import build_report_dag

load_dags(globals())
infersweep_report = build_report_dag()
