"""Child-interpreter driver for test_bad_input_e2e.py: parse the sweep DAG from a good config, then trigger it
with bad form params, with bad run conf, and after the config file went bad, each through `dag.test()`.

Usage: python bad_input_runner.py DAG_ID SWEEP_FILE BAD_SWEEP_TEXT_FILE FORM_CONF_JSON ADVANCED_CONF_JSON
Prints one `BADINPUT-RESULT <json>` line: per scenario the run state, task states and the error raised.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def _run(dag: Any, conf: dict[str, Any]) -> dict[str, Any]:
    try:
        dr = dag.test(run_conf=conf)
    except Exception as exc:  # a rejected trigger: no run is created
        return {"state": None, "error": f"{type(exc).__name__}: {exc}".splitlines()[0], "tis": {}}
    tis = {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dr.get_task_instances()}
    return {"state": str(dr.state), "run_id": dr.run_id, "tis": tis, "error": None}


def main() -> int:
    from infersweep.airflow.dagfiles import load_dagbag

    dag_id, sweep, bad_text, form_conf, advanced_conf = sys.argv[1:6]
    bag = load_dagbag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        print("BADINPUT-RESULT " + json.dumps({"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()}}))
        return 2
    dag = bag.dags[dag_id]
    out = {"form": _run(dag, json.loads(form_conf)), "advanced": _run(dag, json.loads(advanced_conf))}
    # The config file breaks after the DAG was parsed (an edit between parse and run): the plan re-reads it.
    Path(sweep).write_text(Path(bad_text).read_text())
    out["config"] = _run(dag, {})
    print("BADINPUT-RESULT " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
