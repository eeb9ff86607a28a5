"""The engine a serve group runs on, built from its work item: backend options in one place.

`registry.get_engine` maps a backend name to its class; this module decides the options each backend
gets for a sweep (the simulator's time scale, tokenizer and answer key; Docker's run id and HF token
connection; where server logs go).
"""

from __future__ import annotations

import os
from pathlib import Path

from infersweep.config.settings import SimSettings
from infersweep.engines.base import Engine
from infersweep.engines.registry import get_engine

#: Backends whose servers run on the worker's host (reaped through the local registry, not Docker labels;
#: several simulated "nodes" share the host, so each server gets a free port).
LOCAL_ENGINES: tuple[str, ...] = ("sim", "vllm-process")


def sim_tokenizer_dir() -> Path:
    """The small HF tokenizer shipped for the simulator: the sim and the client share it, so lengths are exact."""
    return Path(__file__).resolve().parent / "sim" / "tokenizer_data"


def engine_for(name: str, *, log_dir: Path, sim: SimSettings | None = None, answer_key: Path | None = None,
               run_id: str | None = None, hf_conn_id: str | None = None) -> Engine:
    """The engine `name` with this sweep's options. `answer_key` (sim only) lets the simulator answer gsm8k
    questions with `sim.accuracy`."""
    if name == "sim":
        sim = sim or SimSettings()
        extra: list[str] = ["--tokenizer", str(sim_tokenizer_dir())]
        if answer_key is not None:
            extra += ["--answer-key", str(answer_key), "--accuracy", str(sim.accuracy)]
        return get_engine("sim", time_scale=float(sim.time_scale), model_profile=sim.model_profile,
                          extra_args=extra, log_dir=log_dir, noise=sim.noise)
    if name == "vllm-process":
        return get_engine(name, log_dir=log_dir)
    if name == "slurm":
        return get_engine(name, **slurm_options(log_dir))
    return get_engine(name, run_id=run_id, hf_token_conn_id=hf_conn_id, log_dir=log_dir)


def slurm_options(log_dir: Path) -> dict[str, object]:
    """The Slurm backend's options from the environment: `INFERSWEEP_SLURM_CONF` (else Slurm's default),
    `INFERSWEEP_SLURM_SSH_CONN_ID` (submit over SSH through that Airflow connection; else locally),
    `INFERSWEEP_SLURM_PARTITION`, `INFERSWEEP_SLURM_ACCOUNT`, `INFERSWEEP_SLURM_SBATCH_ARGS` (extra sbatch
    options, shell-quoted, e.g. `--gpus-per-node=8 --exclusive`) and `INFERSWEEP_SLURM_LOG_DIR` (a directory
    every node and the submit host share; default: the worker's server-log dir)."""
    import shlex

    env = os.environ
    return {"slurm_conf": env.get("INFERSWEEP_SLURM_CONF") or None,
            "sbatch_args": tuple(shlex.split(env.get("INFERSWEEP_SLURM_SBATCH_ARGS", ""))),
            "ssh_conn_id": env.get("INFERSWEEP_SLURM_SSH_CONN_ID") or None,
            "partition": env.get("INFERSWEEP_SLURM_PARTITION") or None,
            "account": env.get("INFERSWEEP_SLURM_ACCOUNT") or None,
            "log_dir": env.get("INFERSWEEP_SLURM_LOG_DIR") or log_dir}
