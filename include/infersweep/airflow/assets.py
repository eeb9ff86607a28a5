"""Assets shared by the sweep DAGs (producers) and the report DAG (consumer)."""

from __future__ import annotations

from airflow.sdk import Asset

#: Every sweep run updates this asset (extra: dag_id, run_id); the report DAG is scheduled on it.
RESULTS_ASSET = Asset("infersweep://results", extra={"what": "benchmark and eval results of a sweep run"})
