"""evaluate: gsm8k (lm-eval's prompts and scoring) at the group's eval concurrencies, on its running server."""

from __future__ import annotations

from infersweep.airflow.context import RunContext, recorded_attempt
from infersweep.airflow.deps import ChainDeps
from infersweep.airflow.payloads import ServedGroup, StepOutcome
from infersweep.airflow.steps.benchmark import on_live_lease
from infersweep.evals.answer_key import gsm8k_data_dir
from infersweep.faults.errors import ClassifiedError
from infersweep.store.leases import heartbeat_all


def evaluate(served: ServedGroup, rc: RunContext, deps: ChainDeps | None = None) -> StepOutcome:
    """Each eval concurrency once; a score below the model's threshold (on either lm-eval filter, as
    InferenceX requires) fails the task as `accuracy_below_threshold`, after every score is stored."""
    deps = deps or ChainDeps.for_run(rc)
    served = on_live_lease(deps, served, rc, deps.engine(served, rc))
    group, store, ev = served.group, deps.store, served.eval
    below: list[str] = []
    scores: list[str] = []
    with recorded_attempt(store, rc, group_id=group.id, node=served.state.lease.node):
        for conc in served.eval_concs:
            heartbeat_all(store.engine, served.state.all_leases, ttl_s=deps.settings.lease_ttl_s)
            result = deps.run_gsm8k(
                served.state.handle.base_url, served.recipe.served_model_name or served.recipe.model,
                limit=ev.limit, concurrency=conc, data_dir=gsm8k_data_dir(ev.data_dir),
                context_len=group.max_model_len, model_prefix=group.model_prefix,
                out=deps.settings.work_dir / "evals" / rc.run_id / f"{group.id}_conc{conc}.jsonl",
            )
            # The sweep file's floor for this model-prefix (InferenceX rule: both filters must reach it).
            threshold = float(result.threshold if ev.threshold is None else ev.threshold)
            passed = result.flexible_extract >= threshold and result.strict_match >= threshold
            record = {**result.store_record(), "isl": group.isl, "osl": group.osl, "threshold": threshold,
                      "passed": passed}
            store.record_eval(
                group_id=group.id, task=result.task, conc=conc, engine=served.engine,
                image_digest=served.state.handle.image_digest, recipe_fingerprint=served.fingerprint,
                result=record, samples=result.store_samples(),
            )
            scores.append(f"conc {conc}: strict {result.strict_match:.3f} flexible {result.flexible_extract:.3f} "
                          f"n {result.n}")
            if not passed:
                below.append(f"conc {conc}: strict {result.strict_match:.3f} / flexible "
                             f"{result.flexible_extract:.3f} < {threshold:.2f}")
        if below:
            raise ClassifiedError("accuracy_below_threshold", f"{group.id}: " + "; ".join(below))
        return StepOutcome(group_id=group.id, measured=tuple(served.eval_concs), detail="; ".join(scores))
