"""infersweep.report: Pareto reports, comparisons and the regression gate.

Pure core: `data` (ReportPoint), `pareto` (frontier), `noise` (noise bands), `compare` (pairing),
`gate` (regression verdicts), `summary` (run summaries), `charts` / `html` / `text` (rendering).
Sources: `store_source` (results DB), `json_source` (result files), `sample` (synthetic sample sweep).
Entry points: `service` (used by the CLI, the report DAG and the plugin), `cli`, `web` (FastAPI app for
the Airflow plugin), `browser` (headless-Chromium rendering for screenshots and tests).
"""
