"""The steps of a sweep DAG, one module each; `airflow/tasks.py` wraps them as TaskFlow tasks.

plan (`airflow.planning`) → download → serve (setup) → warmup → benchmark → evaluate → teardown, then
finalize. Every step takes typed payloads (`airflow.payloads`) and a `ChainDeps` a test can replace.
"""

from infersweep.airflow.steps.benchmark import benchmark, warmup
from infersweep.airflow.steps.download import download
from infersweep.airflow.steps.evaluate import evaluate
from infersweep.airflow.steps.finalize import demo_summary, finalize_run, report_and_gate
from infersweep.airflow.steps.serve import serve, teardown

__all__ = ["benchmark", "demo_summary", "download", "evaluate", "finalize_run", "report_and_gate", "serve",
           "teardown", "warmup"]
