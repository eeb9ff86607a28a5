"""Run one sweep DAG with `dag.test()` in this (prepared) environment and print the outcome as JSON.

Used by the e2e tests in a child interpreter, because Airflow reads its configuration from the
environment at import time. Usage: python dagtest_runner.py DAG_ID [CONF_JSON] [LOGICAL_DATE_ISO]
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime


def main() -> int:
    from infersweep.airflow.dagfiles import load_dagbag

    dag_id = sys.argv[1]
    conf = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    logical = datetime.fromisoformat(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else None
    bag = load_dagbag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        print(json.dumps({"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()}}))
        return 2
    dag = bag.dags[dag_id]
    kwargs = {"run_conf": conf}
    if logical is not None:
        kwargs["logical_date"] = logical
    dr = dag.test(**kwargs)
    tis = {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dr.get_task_instances()}
    print("DAGTEST-RESULT " + json.dumps({"run_id": dr.run_id, "state": str(dr.state), "tis": tis}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
