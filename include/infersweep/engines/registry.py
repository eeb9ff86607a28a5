"""Engine lookup by name: the DAG asks for "sim", "vllm-process" or "vllm-docker" and never imports a backend."""

from __future__ import annotations

from typing import Any

from infersweep.engines.base import Engine, EngineError

ENGINE_NAMES: tuple[str, ...] = ("sim", "vllm-process", "vllm-docker", "slurm")


def get_engine(name: str, **options: Any) -> Engine:
    """An engine instance for `name`; `options` go to its constructor (e.g. `time_scale=` for "sim").

    The Docker backend is imported lazily, so the docker SDK is only needed when it is used.
    """
    if name == "sim":
        from infersweep.engines.sim_engine import SimulatedEngine

        return SimulatedEngine(**options)
    if name == "vllm-process":
        from infersweep.engines.process import ProcessEngine

        return ProcessEngine(**options)
    if name == "vllm-docker":
        try:
            from infersweep.engines.docker import DockerEngine  # type: ignore[attr-defined]
        except ImportError as exc:
            raise EngineError(f"the vllm-docker backend is unavailable: {exc}") from exc
        engine: Engine = DockerEngine(**options)
        return engine
    if name == "slurm":
        from infersweep.engines.slurm import SlurmEngine

        return SlurmEngine(**options)
    raise EngineError(f"unknown engine {name!r}; expected one of: {', '.join(ENGINE_NAMES)}")
