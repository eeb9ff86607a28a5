"""Run a topology's components (`recipes.topology.Component`) on the simulator.

A disaggregated topology's workers carry a real engine's argv (SGLang `--disaggregation-mode prefill`,
`python -m dynamo.sglang|dynamo.vllm|dynamo.trtllm …`, `vllm serve … --kv-transfer-config …`, TensorRT-LLM,
or already `infersweep sim serve …`); its router carries the real router's (sglang-router, dynamo.frontend,
`trtllm-serve disaggregated`). `component_sim_argv` turns a worker into `sim serve … --role R --kv-transfer E`
(parallelism and limits through the same translation as an aggregated recipe, `recipe_to_sim_argv`) and the
router into `sim router --prefill {url:prefill-0} … --decode {url:decode-0} …`, whose placeholders
`TopologyRecipe.resolve` fills once the workers have addresses.

Only the head rank of a worker runs a simulated server: the sim models the whole worker (all its GPUs) in
one process, so ranks `NAME.1`, `NAME.2` … of a worker spanning nodes, and GPU-less services (Dynamo's etcd
and NATS), run `sim idle`, which only answers /health (`component_kind`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from infersweep.engines.sim.config import (
    DEFAULT_GPU_PROFILE,
    DEFAULT_MODEL_PROFILE,
    FLAVORS,
    parse_sim_argv,
    recipe_to_sim_argv,
)
from infersweep.engines.sim.kv_transfer import DEFAULT_TRANSFER_ENGINE, TRANSFER_ENGINES
from infersweep.recipes.model import Recipe
from infersweep.recipes.topology import Component, TopologyRecipe

#: Flags that only set up disaggregation in the real engines (role, bootstrap server, transfer backend, NICs):
#: the simulator gets the role and transfer engine from the topology, so these are dropped before the engine's
#: own flags are translated. Value: whether the flag takes a value. Unknown flags are not guessed at here:
#: they reach the engine's translation, which lists them under `ignored_recipe_flags`.
DISAGG_FLAGS: dict[str, bool] = {
    # SGLang (python -m sglang.launch_server, python -m dynamo.sglang)
    "--disaggregation-mode": True, "--disaggregation-transfer-backend": True,
    "--disaggregation-bootstrap-port": True, "--disaggregation-ib-device": True,
    "--disaggregation-decode-tp": True, "--disaggregation-decode-dp": True, "--disaggregation-prefill-pp": True,
    "--disaggregation-decode-enable-offload-kvcache": False, "--disaggregation-decode-polling-interval": True,
    "--num-reserved-decode-tokens": True,
    # vLLM (vllm serve, python -m dynamo.vllm)
    "--kv-transfer-config": True, "--is-prefill-worker": False, "--is-decode-worker": False,
    "--connector": True,
    # Dynamo workers (any engine)
    "--disaggregation-strategy": True, "--endpoint": True, "--migration-limit": True,
    "--request-plane": True, "--store-kv": True, "--publish-events-and-metrics": False,
    # Multi-node launch (a worker's ranks finding each other; the sim runs the head rank only)
    "--dist-init-addr": True, "--nnodes": True, "--node-rank": True, "--master-addr": True, "--headless": False,
    "--device-ids": True,
}

#: Dynamo worker modules → the engine launcher whose flags they take (dynamo.trtllm names its LLM-API YAML
#: `--extra-engine-args`, trtllm-serve `--extra_llm_api_options`).
_DYNAMO: dict[str, tuple[str, tuple[str, ...]]] = {
    "dynamo.sglang": ("sglang", ("python3", "-m", "sglang.launch_server")),
    "dynamo.vllm": ("vllm", ("vllm", "serve")),
    "dynamo.trtllm": ("trt", ("trtllm-serve",)),
}
_FLAG_RENAMES: dict[str, dict[str, str]] = {"trt": {"--extra-engine-args": "--extra_llm_api_options"}}
#: Topology frameworks (config.names.KNOWN_FRAMEWORKS) → the engine flavor whose flags the workers take.
_BASE_FRAMEWORK: dict[str, str] = {
    "sglang-disagg": "sglang", "vllm-disagg": "vllm", "atom-disagg": "atom", "llmd-vllm": "vllm",
    "dynamo-sglang": "sglang", "dynamo-vllm": "vllm", "dynamo-trt": "trt",
}
_PARALLEL_FLAGS = ("--tp", "--tensor-parallel-size", "-tp", "--dp", "--data-parallel-size", "-dp",
                   "--pipeline-parallel-size", "-pp", "--prefill-context-parallel-size", "-pcp", "--tp-size",
                   "--tp_size", "--dp-size", "--tensor_parallel_size", "--pp_size", "--pipeline_parallel_size",
                   "--config", "--extra_llm_api_options")


ComponentKind = Literal["worker", "router", "idle"]


def component_kind(component: Component, topology: TopologyRecipe) -> ComponentKind:
    """What the simulator runs for a component.

    "router": the topology's entry when it is a router (`sim router`). "worker": the head rank of a prefill,
    decode or aggregated worker (`sim serve --role …`, modelling all the worker's GPUs). "idle": everything
    else, which the simulator needs nothing from but the topology still starts — ranks > 0 of a worker
    spanning nodes, and GPU-less services such as Dynamo's etcd and NATS — as `sim idle`, a process that
    only answers /health, so the group's liveness checks see every component it expects.
    """
    if component.role == "router":
        return "router" if component.name == topology.entry else "idle"
    return "worker" if runs_on_sim(component) else "idle"


def runs_on_sim(component: Component) -> bool:
    """Whether a worker component is the head rank (ranks > 0 of a worker spanning nodes are `NAME.1` …)."""
    return "." not in component.name


def worker_gpus(component: Component, topology: TopologyRecipe) -> int:
    """GPUs of the whole worker `component` heads (every rank's GPU ids)."""
    return sum(len(c.gpu_ids) for c in topology.components
               if c.name == component.name or c.name.startswith(component.name + "."))


def component_sim_argv(
    component: Component,
    topology: TopologyRecipe,
    *,
    recipe: Recipe | None = None,
    model_profile: str | None = None,
    gpu_profile: str = DEFAULT_GPU_PROFILE,
    time_scale: float = 1.0,
    extra: Sequence[str] = (),
) -> list[str]:
    """The `infersweep sim …` arguments (starting with "sim") that simulate one component of a topology.

    `recipe` is the component's recipe with placeholders filled and its port chosen (default:
    `component.recipe`); the process listens on `recipe.port`.
    Router: `sim router --port P --prefill {url:prefill-0} … --decode {url:decode-0} … --policy X` (policy from
    `topology.router["policy"]`, else round_robin; the placeholders name head ranks). Worker: the recipe
    translated as an aggregated one plus `--role`, `--kv-transfer` (`topology.kv_transfer`, else nixl) and
    `--port`; when the recipe states no parallelism, `--tp` is the worker's GPU count. Idle: `sim idle --port P
    --name NAME`. Raises ValueError for an unknown transfer engine, an engine the sim cannot run, or a recipe
    whose parallelism does not match the worker's GPUs.
    """
    recipe = recipe or component.recipe
    kind = component_kind(component, topology)
    if kind == "idle":
        return ["sim", "idle", "--port", str(recipe.port), "--name", component.name]
    if kind == "router":
        argv = ["sim", "router", "--port", str(recipe.port)]
        for role in ("prefill", "decode"):
            heads = [c.name for c in topology.workers if c.role == role and runs_on_sim(c)]
            if not heads:
                raise ValueError(f"the topology has a router but no {role} worker")
            for name in heads:
                argv += [f"--{role}", f"{{url:{name}}}"]
        policy = (topology.router or {}).get("policy", "round_robin")
        return [*argv, "--policy", policy if policy in ("round_robin", "least_loaded") else "round_robin"]
    kv = topology.kv_transfer or DEFAULT_TRANSFER_ENGINE
    if kv not in TRANSFER_ENGINES:
        raise ValueError(f"topology kv_transfer {kv!r} is not modelled; known: {', '.join(sorted(TRANSFER_ENGINES))}")
    base = _sim_passthrough(recipe.argv)
    if base is not None:
        argv = ["sim", "serve", *base]
        if model_profile and "--model-profile" not in base:
            argv += ["--model-profile", model_profile]
        if "--gpu-profile" not in base:
            argv += ["--gpu-profile", gpu_profile]
        if "--time-scale" not in base:
            argv += ["--time-scale", repr(float(time_scale))]
        argv += list(extra)
        stated = base
    else:
        engine_recipe = engine_view(recipe)
        argv = recipe_to_sim_argv(engine_recipe, model_profile=model_profile, gpu_profile=gpu_profile,
                                  time_scale=time_scale, extra=extra)
        stated = list(engine_recipe.argv)
    argv += ["--role", component.role, "--kv-transfer", kv, "--port", str(recipe.port)]
    gpus = worker_gpus(component, topology)
    if gpus:
        try:  # parallelism only: any profile parses (the served model's is checked when the server starts)
            cfg = parse_sim_argv([*argv[2:], "--model-profile", DEFAULT_MODEL_PROFILE])
        except SystemExit as exc:  # argparse already printed why
            raise ValueError(f"{component.name}: the translated sim flags do not parse: {' '.join(argv)}") from exc
        modelled = cfg.tp * cfg.dp * cfg.pp * cfg.pcp
        if modelled == 1 and not any(a.split("=")[0] in _PARALLEL_FLAGS for a in stated):
            argv += ["--tp", str(gpus)]  # no parallelism stated: the worker's GPUs are one TP group
        elif modelled != gpus:
            raise ValueError(f"{component.name}: the recipe's parallelism runs on {modelled} GPU(s) but the "
                             f"worker holds {gpus}")
    return argv


def engine_view(recipe: Recipe) -> Recipe:
    """The worker recipe as its engine's own launch command: Dynamo wrappers unwrapped, disaggregation-only
    flags (`DISAGG_FLAGS`) dropped, the framework set to the engine flavor (vllm, sglang, trt, atom)."""
    args = list(recipe.argv)
    framework = _BASE_FRAMEWORK.get(recipe.framework, recipe.framework)
    for module, (flavor, launcher) in _DYNAMO.items():
        if module in args:
            framework = flavor
            args = [*launcher, *args[args.index(module) + 1:]]
            break
    if framework not in FLAVORS:
        raise ValueError(f"the simulator cannot run a {recipe.framework!r} worker (runs {', '.join(FLAVORS)}, "
                         "their -disagg and dynamo- variants, and `infersweep sim serve`)")
    renames = _FLAG_RENAMES.get(framework, {})
    out: list[str] = []
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        i += 1
        if flag in DISAGG_FLAGS:
            if DISAGG_FLAGS[flag] and not eq:
                i += 1  # its value
            continue
        if flag in renames:
            out.append(renames[flag] + (eq + value if eq else ""))
            continue
        out.append(args[i - 1])
    return recipe.model_copy(update={"argv": tuple(out), "framework": framework})


def _sim_passthrough(argv: Sequence[str]) -> list[str] | None:
    """The flags after `… sim serve` when the argv already runs the simulator, else None."""
    args = list(argv)
    for i in range(len(args) - 1):
        if args[i] == "sim" and args[i + 1] == "serve" and (i == 0 or args[i - 1].rsplit("/", 1)[-1]
                                                           in ("infersweep", "infersweep.cli")):
            return args[i + 2:]
    return None
