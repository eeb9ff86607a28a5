"""infersweep: an Airflow 3 DAG factory that benchmarks LLM inference servers."""

__version__ = "0.1.0"
