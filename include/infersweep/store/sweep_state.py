"""What the point-choosing policies (adaptive, SLO search) read from the store: this run's groups and
points of one scope (config key and sequence length), earlier results of the same topologies, and the
decisions already taken. Plain dicts out; the policies themselves stay free of SQL."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Engine, select

from infersweep.store.models import BenchmarkResult, PointDecision, Run, ServeGroupRow

#: Engines whose numbers are simulated: history never crosses the sim/real line.
_SIM = frozenset({"sim"})


def _run_pk(conn: Any, dag_id: str, run_id: str) -> int | None:
    r = Run.tbl()
    return conn.execute(select(r.c.id).where(r.c.dag_id == dag_id, r.c.run_id == run_id)).scalar_one_or_none()


def scope_groups(engine: Engine, *, dag_id: str, run_id: str, config_key: str, isl: int,
                 osl: int) -> list[dict[str, Any]]:
    """This run's serve groups of one scope: id, layout fields, planned concurrencies, recipe, status."""
    g = ServeGroupRow.tbl()
    with engine.connect() as conn:
        pk = _run_pk(conn, dag_id, run_id)
        if pk is None:
            return []
        rows = conn.execute(select(g).where(g.c.run_pk == pk, g.c.config_key == config_key, g.c.isl == isl,
                                           g.c.osl == osl).order_by(g.c.id)).mappings().all()
    return [dict(r) for r in rows]


def scope_points(engine: Engine, *, dag_id: str, run_id: str, group_ids: list[str], isl: int,
                 osl: int) -> list[dict[str, Any]]:
    """This run's stored points of those groups: status, throughput per GPU, interactivity, duration."""
    b, g = BenchmarkResult.tbl(), ServeGroupRow.tbl()
    with engine.connect() as conn:
        pk = _run_pk(conn, dag_id, run_id)
        if pk is None or not group_ids:
            return []
        rows = conn.execute(
            select(g.c.group_id, b.c.conc, b.c.status, b.c.tput_per_gpu, b.c.median_intvty, b.c.gpus, b.c.metrics)
            .join(g, g.c.id == b.c.group_pk)
            .where(b.c.run_pk == pk, g.c.group_id.in_(group_ids), b.c.isl == isl, b.c.osl == osl)
        ).mappings().all()
    out = []
    for r in rows:
        metrics = r["metrics"] or {}
        out.append({"group_id": r["group_id"], "conc": int(r["conc"]), "status": r["status"],
                    "tput_per_gpu": r["tput_per_gpu"], "median_intvty": r["median_intvty"],
                    "gpus": r["gpus"], "duration_s": metrics.get("duration"), "metrics": metrics})
    return out


def topology_history(engine: Engine, *, config_key: str, isl: int, osl: int, exclude_dag_run: tuple[str, str],
                     engine_name: str, max_runs: int = 5) -> dict[str, dict[int, tuple[float, float]]]:
    """Earlier successful points of the config key's topologies, by layout name (TP8, DEP8-MTP, ...), from
    the newest `max_runs` runs of each layout on the same kind of engine (simulated or real), any image: the
    mean (interactivity, throughput per GPU) per concurrency. The history prior of the adaptive policy."""
    from infersweep.plan.models import layout_of

    b, r = BenchmarkResult.tbl(), Run.tbl()
    sim = engine_name in _SIM
    with engine.connect() as conn:
        rows = conn.execute(
            select(b.c.conc, b.c.tput_per_gpu, b.c.median_intvty, b.c.engine, b.c.tp, b.c.ep, b.c.dp_attn, b.c.pp,
                   b.c.dcp_size, b.c.pcp_size, b.c.spec_decoding, r.c.id.label("run_pk"), r.c.dag_id, r.c.run_id)
            .join(r, r.c.id == b.c.run_pk)
            .where(b.c.config_key == config_key, b.c.isl == isl, b.c.osl == osl, b.c.status == "ok",
                   b.c.reused_from_id.is_(None))
            .order_by(r.c.id.desc())
        ).mappings().all()
    runs: dict[str, list[int]] = defaultdict(list)
    acc: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        if (row["dag_id"], row["run_id"]) == exclude_dag_run or ((row["engine"] in _SIM) != sim):
            continue
        if row["tput_per_gpu"] is None or row["median_intvty"] is None or row["tp"] is None:
            continue
        label = layout_of(dict(row))
        seen = runs[label]
        if row["run_pk"] not in seen:
            if len(seen) >= max_runs:
                continue
            seen.append(row["run_pk"])
        acc[(label, int(row["conc"]))].append((float(row["median_intvty"]), float(row["tput_per_gpu"])))
    out: dict[str, dict[int, tuple[float, float]]] = defaultdict(dict)
    for (label, conc), vals in acc.items():
        out[label][conc] = (sum(v[0] for v in vals) / len(vals), sum(v[1] for v in vals) / len(vals))
    return dict(out)


def run_decisions(engine: Engine, *, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every policy decision of a run, in order: group id, conc (0 = whole group), policy, action, reason."""
    d, g = PointDecision.tbl(), ServeGroupRow.tbl()
    with engine.connect() as conn:
        pk = _run_pk(conn, dag_id, run_id)
        if pk is None:
            return []
        rows = conn.execute(
            select(g.c.group_id, g.c.isl, g.c.osl, d.c.conc, d.c.policy, d.c.action, d.c.seq, d.c.reason, d.c.detail)
            .join(g, g.c.id == d.c.group_pk).where(d.c.run_pk == pk).order_by(d.c.group_pk, d.c.seq, d.c.conc)
        ).mappings().all()
    return [dict(r) for r in rows]
