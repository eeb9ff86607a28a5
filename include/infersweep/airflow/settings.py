"""Settings for the Airflow side, from the environment (validated once, here)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

#: Repo root when running from a checkout (dags/ and configs/ sit beside include/).
REPO_ROOT = Path(__file__).resolve().parents[3]


#: The queue-share wait never exceeds an hour (a lease TTL's order), whatever the queue length.
MAX_POKE_SHARE_S = 3600.0


@dataclass(frozen=True)
class AirflowSettings:
    """Where configs come from and how tasks are routed.

    - INFERSWEEP_CONFIGS: colon-separated sweep files, folders or InferenceX master files
      (default: the repo's `configs/`).
    - INFERSWEEP_CELERY_QUEUES: "1" routes node-touching tasks to a queue named after the runner label
      (CeleryExecutor fleets: one worker per GPU SKU listens on its label's queue).
    - INFERSWEEP_LEASE_TTL_S: node lease time-to-live; benchmark/eval heartbeat it.
    - INFERSWEEP_WORK_DIR: where spools, server logs and reports go.
    - INFERSWEEP_HF_CONN_ID: Airflow connection whose password is the HF token (else env HF_TOKEN).
    - INFERSWEEP_PARSE_CACHE: "0" disables the parse-time cache of the validated sweep.
    - INFERSWEEP_DAGS_PER_FILE: at most this many sweep DAGs per generated DAG file (default 150).
    - INFERSWEEP_SYNC_DAG_FILES: "0" stops dags/infersweep_dags.py from writing the generated DAG files on
      parse (a read-only dags folder); `infersweep airflow sync-dags` then writes them at deploy time.
    """

    config_paths: tuple[Path, ...]
    celery_queues: bool
    lease_ttl_s: float
    lease_poke_s: float
    work_dir: Path
    hf_conn_id: str | None = None
    parse_cache_dir: Path | None = None
    #: Ceiling of the poke backoff (seconds). The fleet still notices a freed node within about
    #: lease_poke_max_s / waiting-groups, since every waiting group pokes on its own clock.
    lease_poke_max_s: float = 60.0
    dags_per_file: int = 150
    sync_dag_files: bool = True

    def lease_poke_delay(self, reschedules: int = 0, *, waiting: int = 0, nodes: int = 0) -> float:
        """Seconds until a serve with no free node asks again.

        The longer of two waits, times up to 1.5 (jitter: groups that found the fleet busy together must not
        come back in the same scheduler loop):

        * a sensor-style `exponential_backoff`: ×1.5 per reschedule, capped at `lease_poke_max_s`;
        * a uniform draw from the queue's share, [0, `lease_poke_s` × waiting / nodes]. With W groups waiting
          for N nodes, their pokes then arrive spread out, about 2·N per `lease_poke_s` however large W is:
          a freed node is taken within about a poke interval, and a 200-group sweep does not spend its
          scheduler and worker slots (each poke is a task start) on groups that cannot run yet.
        """
        backoff = min(self.lease_poke_s * 1.5 ** min(reschedules, 32), max(self.lease_poke_max_s, self.lease_poke_s))
        share = self.lease_poke_s * waiting / nodes if waiting > 0 and nodes > 0 else 0.0
        spread = min(share, MAX_POKE_SHARE_S) * random.random()
        return max(backoff, spread) * (1.0 + 0.5 * random.random())

    @classmethod
    def from_env(cls) -> AirflowSettings:
        raw = os.environ.get("INFERSWEEP_CONFIGS", "")
        paths = tuple(Path(p) for p in raw.split(":") if p.strip()) or (REPO_ROOT / "configs",)
        return cls(
            config_paths=paths,
            celery_queues=os.environ.get("INFERSWEEP_CELERY_QUEUES", "0") == "1",
            lease_ttl_s=float(os.environ.get("INFERSWEEP_LEASE_TTL_S", "900")),
            lease_poke_s=float(os.environ.get("INFERSWEEP_LEASE_POKE_S", "10")),
            lease_poke_max_s=float(os.environ.get("INFERSWEEP_LEASE_POKE_MAX_S", "60")),
            work_dir=Path(os.environ.get("INFERSWEEP_WORK_DIR", REPO_ROOT / ".infersweep")),
            hf_conn_id=os.environ.get("INFERSWEEP_HF_CONN_ID") or None,
            parse_cache_dir=None if os.environ.get("INFERSWEEP_PARSE_CACHE", "1") == "0"
            else Path(os.environ.get("INFERSWEEP_WORK_DIR", REPO_ROOT / ".infersweep")) / "parse-cache",
            dags_per_file=max(1, int(os.environ.get("INFERSWEEP_DAGS_PER_FILE", "150"))),
            sync_dag_files=os.environ.get("INFERSWEEP_SYNC_DAG_FILES", "1") != "0",
        )
