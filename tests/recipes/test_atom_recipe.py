"""The ATOM recipe builder: representative fixture topologies pinned flag for flag, every fixture topology
builds, and (with ../shared present) the recipes equal what InferenceX's own `*_mi355x_atom*.sh` launch."""

from __future__ import annotations

import fnmatch
import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from infersweep.plan.models import ServeGroup
from infersweep.recipes import registry
from infersweep.recipes.atom import build_recipe, facts_of, select_script
from infersweep.recipes.errors import RecipeError, UnsupportedFrameworkError
from infersweep.recipes.model import Mount
from infersweep.recipes.ruledata import load_table

from .launch_compare import diff_launch

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
FIXTURE_1EF = SHARED / "fixtures" / "inferencex"
FIXTURE_843 = SHARED / "fixtures" / "inferencex-843c6254f"
#: A whole-fleet capture (`python -m tests.recipes.ix_oracle --out F`) to compare against, named by
#: IX_LAUNCHES; without it the test captures a sample of topologies itself.
ORACLE_JSONL = Path(os.environ.get("IX_LAUNCHES") or "/nonexistent/ix-launches.jsonl")

HEAD = ("python3", "-m", "atom.entrypoints.openai_server")
IMAGE_0_1_3 = "rocm/atom:rocm7.2.4_ubuntu24.04_py3.12_pytorch_release_2.10.0_atom0.1.3"
IMAGE_DATED = "rocm/atom:rocm7.2.3_ubuntu24.04_py3.12_pytorch_release_2.10.0_atom20260511"
IMAGE_0_1_2 = "rocm/atom:rocm7.2.2_ubuntu24.04_py3.12_pytorch_release_2.10.0_atom0.1.2.post"
DSV4_ENV = {"ATOM_DISABLE_MMAP": "true", "AITER_BF16_FP8_MOE_BOUND": "0", "ATOM_MOE_GU_ITLV": "1"}
OURS_ENV = {"HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}


def atom_group(config_key: str, model: str, *, isl: int = 1024, osl: int = 1024, tp: int = 8, ep: int = 1,
               dp_attn: bool = False, spec: str = "none", concs: tuple[int, ...] = (4, 64),
               image: str = IMAGE_0_1_3, runner: str = "mi355x") -> ServeGroup:
    """A serve group as the planner makes it from an amd-master.yaml ATOM entry."""
    prefix, precision = config_key.split("-")[:2]
    return ServeGroup(
        id=f"test-{config_key}", config_key=config_key, image=image, model=model, model_prefix=prefix,
        precision=precision, framework="atom", runner=runner, isl=isl, osl=osl, tp=tp, ep=ep, dp_attn=dp_attn,
        spec_decoding=spec, max_model_len=isl + osl + 256,
        exp_name=f"{prefix}_{'8k1k' if isl == 8192 else '1k1k'}", concs=concs)


def tail(group: ServeGroup, **kw: Any) -> tuple[str, ...]:
    """The argv after `--model M --server-port 8888`."""
    argv = build_recipe(group, None, **kw).argv
    assert argv[:7] == (*HEAD, "--model", group.model, "--server-port", "8888")
    return argv[7:]


# --- pinned recipes (real fixture topologies, 1ef98e3ed) ---------------------------------------------------

def test_dsr1_fp4_8k1k_tp4_adds_fixed_max_model_len_and_block_size() -> None:
    g = atom_group("dsr1-fp4-mi355x-atom", "amd/DeepSeek-R1-0528-MXFP4-Preview", isl=8192, tp=4,
                   concs=(4, 8, 16, 32, 64, 128, 256), image=IMAGE_DATED)
    r = build_recipe(g, None)
    assert r.argv[7:] == ("-tp", "4", "--kv_cache_dtype", "fp8", "--max-model-len", "10240", "--block-size", "16")
    assert r.env == {**OURS_ENV, "OMP_NUM_THREADS": "1"}
    assert (r.framework, r.gpus, r.image, r.files) == ("atom", 4, IMAGE_DATED, {})


def test_dsr1_fp4_1k1k_leaves_max_model_len_to_atom() -> None:
    g = atom_group("dsr1-fp4-mi355x-atom", "amd/DeepSeek-R1-0528-MXFP4-Preview", tp=4, image=IMAGE_DATED)
    assert tail(g) == ("-tp", "4", "--kv_cache_dtype", "fp8", "--block-size", "16")


def test_dsr1_fp4_mtp_sets_buffer_ops_env_and_bare_method() -> None:
    g = atom_group("dsr1-fp4-mi355x-atom-mtp", "amd/DeepSeek-R1-0528-MXFP4", isl=8192, spec="mtp",
                   image=IMAGE_DATED)
    r = build_recipe(g, None)
    assert r.argv[7:] == ("-tp", "8", "--kv_cache_dtype", "fp8", "--max-model-len", "10240", "--method", "mtp")
    assert r.env == {**OURS_ENV, "OMP_NUM_THREADS": "1", "AMDGCN_USE_BUFFER_OPS": "1"}


def test_dsr1_fp8_mtp_disables_prefix_caching_and_never_limits_length() -> None:
    g = atom_group("dsr1-fp8-mi355x-atom-mtp", "deepseek-ai/DeepSeek-R1-0528", isl=8192, spec="mtp",
                   concs=(4, 256))
    assert tail(g) == ("-tp", "8", "--method", "mtp", "--num-speculative-tokens", "3", "--kv_cache_dtype", "fp8",
                       "--no-enable_prefix_caching")


def test_dsv4_dp_attention_layout_and_env() -> None:
    g = atom_group("dsv4-fp4-mi355x-atom", "deepseek-ai/DeepSeek-V4-Pro", dp_attn=True, concs=(64, 1024))
    r = build_recipe(g, None)
    assert r.argv[7:] == ("-tp", "8", "--enable-dp-attention", "--kv_cache_dtype", "fp8", "--trust-remote-code",
                          "--gpu-memory-utilization", "0.85")
    assert r.env == {**OURS_ENV, **DSV4_ENV}  # no OMP_NUM_THREADS in the dsv4 script


def test_dsv4_mtp_follows_the_upstream_script_absent_from_the_fixture_commit() -> None:
    g = atom_group("dsv4-fp4-mi355x-atom-mtp", "deepseek-ai/DeepSeek-V4-Pro", spec="mtp", concs=(1, 1024))
    r = build_recipe(g, None)
    assert r.argv[7:] == ("-tp", "8", "--method", "mtp", "--num-speculative-tokens", "3", "--kv_cache_dtype", "fp8",
                          "--trust-remote-code")
    assert r.env == {**OURS_ENV, **DSV4_ENV}


@pytest.mark.parametrize(("ep", "dp_attn", "expected"), [
    (1, False, ("-tp", "8")),
    (8, False, ("-tp", "8")),  # these scripts add EP only together with DP attention
    (1, True, ("-tp", "8", "--enable-dp-attention")),
    (8, True, ("-tp", "8", "--enable-expert-parallel", "--enable-dp-attention")),
])
def test_dp_attention_scripts_parallel_args(ep: int, dp_attn: bool, expected: tuple[str, ...]) -> None:
    g = atom_group("dsr1-fp8-mi355x-atom-mtp", "deepseek-ai/DeepSeek-R1-0528", ep=ep, dp_attn=dp_attn, spec="mtp")
    assert tail(g)[:len(expected) + 1] == (*expected, "--method")


def test_expert_parallel_when_ep_above_one() -> None:
    g = atom_group("kimik2.5-fp4-mi355x-atom", "amd/Kimi-K2.5-MXFP4", ep=8, isl=8192)
    assert tail(g) == ("-tp", "8", "--kv_cache_dtype", "fp8", "--max-model-len", "10240", "--enable-expert-parallel",
                       "--trust-remote-code")


def test_glm5_chat_template_kwargs_are_literal_json() -> None:
    g = atom_group("glm5-fp8-mi355x-atom", "zai-org/GLM-5-FP8", tp=4, image=IMAGE_0_1_2)
    assert tail(g) == ("-tp", "4", "--kv_cache_dtype", "fp8", "--gpu-memory-utilization", "0.9",
                       "--default-chat-template-kwargs", '{"enable_thinking": false}', "--trust-remote-code")


def test_gptoss_env_and_block_size() -> None:
    g = atom_group("gptoss-fp4-mi355x-atom", "openai/gpt-oss-120b", tp=1, image=IMAGE_0_1_2)
    r = build_recipe(g, None)
    assert r.argv[7:] == ("-tp", "1", "--kv_cache_dtype", "fp8", "--gpu-memory-utilization", "0.9",
                          "--block-size", "16")
    assert r.env == {**OURS_ENV, "OMP_NUM_THREADS": "1", "ATOM_GPT_OSS_MODEL": "1"}


def test_qwen_fp8_mtp() -> None:
    g = atom_group("qwen3.5-fp8-mi355x-atom-mtp", "Qwen/Qwen3.5-397B-A17B-FP8", isl=8192, tp=4, spec="mtp",
                   image=IMAGE_0_1_2)
    assert tail(g) == ("-tp", "4", "--kv_cache_dtype", "fp8", "--max-model-len", "10240",
                       "--gpu-memory-utilization", "0.9", "--method", "mtp", "--num-speculative-tokens", "3",
                       "--trust-remote-code")


@pytest.mark.parametrize(("key", "model", "gmu"), [
    ("minimaxm2.5-fp4-mi355x-atom", "amd/MiniMax-M2.5-MXFP4", False),
    ("minimaxm2.5-fp8-mi355x-atom", "MiniMaxAI/MiniMax-M2.5", True),
    ("qwen3.5-fp4-mi355x-atom", "amd/Qwen3.5-397B-A17B-MXFP4", True),
    ("qwen3.5-fp8-mi355x-atom", "Qwen/Qwen3.5-397B-A17B-FP8", True),
])
def test_memory_fraction_is_per_model_and_precision(key: str, model: str, gmu: bool) -> None:
    argv = tail(atom_group(key, model, tp=2))
    assert ("--gpu-memory-utilization" in argv) is gmu
    assert argv[-1] == "--trust-remote-code"


# --- plumbing and errors -----------------------------------------------------------------------------------

def test_port_hf_cache_and_registry_dispatch() -> None:
    g = atom_group("dsr1-fp8-mi355x-atom", "deepseek-ai/DeepSeek-R1-0528")
    r = registry.build_recipe(g, None, port=9001, hf_cache="/data/hf", served_model_name=g.model)
    assert r.argv[5:7] == ("--server-port", "9001") and r.port == 9001
    assert r.env["HF_HUB_CACHE"] == "/mnt/hf_hub_cache"
    assert r.mounts == (Mount(source="/data/hf", target="/mnt/hf_hub_cache"),)
    assert r.served_model_name == g.model and r.serve_group == g.id
    moved = r.with_port(9100)
    assert moved.argv[5:7] == ("--server-port", "9100")
    assert moved.fingerprint() == r.fingerprint()  # where it listens is not what it is


def test_conc_is_the_groups_highest() -> None:
    assert facts_of(atom_group("dsr1-fp8-mi355x-atom", "m", concs=(4, 512, 64)))["conc"] == 512


def test_served_model_name_must_be_the_model() -> None:
    g = atom_group("dsr1-fp8-mi355x-atom", "deepseek-ai/DeepSeek-R1-0528")
    with pytest.raises(RecipeError, match="no --served-model-name"):
        build_recipe(g, None, served_model_name="r1")


@pytest.mark.parametrize(("key", "spec", "runner"), [
    ("qwen3.5-fp4-mi355x-atom-mtp", "mtp", "mi355x"),  # no such script
    ("dsr1-fp8-mi300x-atom", "none", "mi300x"),  # ATOM scripts exist for MI355X only
])
def test_no_rule_is_an_error_naming_the_group(key: str, spec: str, runner: str) -> None:
    g = atom_group(key, "some/model", spec=spec, runner=runner)
    with pytest.raises(RecipeError, match=f"{g.id}.*no ATOM rule"):
        build_recipe(g, None)


def test_other_frameworks_and_disagg_are_refused() -> None:
    g = atom_group("dsr1-fp8-mi355x-atom", "deepseek-ai/DeepSeek-R1-0528")
    with pytest.raises(UnsupportedFrameworkError):
        build_recipe(g.model_copy(update={"framework": "sglang"}), None)
    with pytest.raises(UnsupportedFrameworkError, match="disaggregated"):
        build_recipe(g.model_copy(update={"disagg": True}), None)


def test_table_entries_are_documented() -> None:
    for entry in load_table("atom")["scripts"]:
        assert entry.get("name") and entry.get("source") and entry.get("when"), entry


# --- the fixture fleet -------------------------------------------------------------------------------------

def _oracle() -> Any:
    try:
        from . import ix_oracle
    except ImportError as exc:  # pragma: no cover - the oracle module is another engineer's file
        pytest.skip(f"tests/recipes/ix_oracle.py is absent ({exc})")
    return ix_oracle


def _fleet(fixture_dir: Path) -> list[ServeGroup]:
    if not (fixture_dir / "amd-master.yaml").exists():
        pytest.skip(f"{fixture_dir} is absent (../shared beside the project)")
    return list(_fleet_cached(fixture_dir))


@functools.cache
def _fleet_cached(fixture_dir: Path) -> tuple[ServeGroup, ...]:
    return tuple(_oracle().fleet_groups(fixture_dir, framework=["atom"]))


@pytest.mark.parametrize("fixture_dir", [FIXTURE_1EF, FIXTURE_843], ids=["1ef98e3ed", "843c6254f"])
def test_every_fixture_topology_builds(fixture_dir: Path) -> None:
    groups = _fleet(fixture_dir)
    assert groups
    for g in groups:
        r = build_recipe(g, None, served_model_name=g.model)
        assert r.argv[:3] == HEAD and "--server-port" in r.argv and r.gpus == g.tp


# --- fidelity against InferenceX's scripts -------------------------------------------------------------------

#: Env a script run shows that is the benchmark harness's, not the server's: benchmark_lib.sh exports the GPU
#: monitor's output path at top level (`GPU_METRICS_CSV=/workspace/gpu_metrics.csv`); ATOM never reads it.
HARNESS_ENV = {"GPU_METRICS_CSV"}
#: Topologies InferenceX cannot launch at 1ef98e3ed, with the reason; our recipe is built from elsewhere.
NO_SCRIPT = {
    "dsv4-fp4-mi355x-atom-mtp": "dsv4_fp4_mi355x_atom_mtp.sh is absent at 1ef98e3ed (the launcher would fail); "
                                "the recipe follows its first upstream version, InferenceX@841cc8fbf",
}
#: Things a script does besides the launch that a recipe does not reproduce (argv/env/files still match).
NOT_REPRODUCED_CALLS = {
    ("glm5-fp8-mi355x-atom", "pip install -U transformers"): "upgrades transformers inside the container first",
    ("glm5.1-fp4-mi355x-atom", "pip install -U transformers"): "upgrades transformers inside the container first",
}
#: One topology per script family and branch, captured live when the fleet file is absent.
SAMPLE = [
    ("dsr1-fp4-mi355x-atom", 8192, 4, False, "none"),
    ("dsr1-fp4-mi355x-atom-mtp", 1024, 8, False, "mtp"),
    ("dsr1-fp8-mi355x-atom-mtp", 8192, 8, False, "mtp"),
    ("dsv4-fp4-mi355x-atom", 1024, 8, True, "none"),
    ("dsv4-fp4-mi355x-atom-mtp", 1024, 8, False, "mtp"),
    ("glm5-fp8-mi355x-atom", 8192, 4, False, "none"),
    ("gptoss-fp4-mi355x-atom", 1024, 1, False, "none"),
    ("qwen3.5-fp8-mi355x-atom-mtp", 8192, 4, False, "mtp"),
    ("minimaxm2.5-fp4-mi355x-atom", 1024, 1, False, "none"),
]


def _identity(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["config-key"], r["isl"], r["osl"], r["tp"], r["ep"], r["dp-attn"], r["pp"], r["dcp-size"],
            r["pcp-size"], r["spec-decoding"])


def _group_identity(g: ServeGroup) -> tuple[Any, ...]:
    return (g.config_key, g.isl, g.osl, g.tp, g.ep, g.dp_attn, g.pp, g.dcp_size, g.pcp_size, g.spec_decoding)


def _ix_records(groups: list[ServeGroup]) -> list[dict[str, Any]]:
    if ORACLE_JSONL.exists():
        records = [json.loads(line) for line in ORACLE_JSONL.read_text().splitlines() if line.strip()]
        return [r for r in records if r.get("framework") == "atom"]
    oracle = _oracle()
    try:
        oracle.require_shared()
    except oracle.OracleUnavailable as exc:
        pytest.skip(str(exc))
    wanted = [g for g in groups if (g.config_key, g.isl, g.tp, g.dp_attn, g.spec_decoding) in set(SAMPLE)]
    assert len(wanted) == len(SAMPLE)
    with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
        return list(pool.map(oracle.capture, wanted))


@pytest.mark.integration  # runs InferenceX's scripts under bash (the oracle)
def test_recipes_equal_inferencex_launches() -> None:
    groups = {_group_identity(g): g for g in _fleet(FIXTURE_1EF)}
    records = _ix_records(list(groups.values()))
    assert records
    identical, problems = 0, []
    for ix in records:
        group = groups[_identity(ix)]
        if ix.get("error"):
            if ix["config-key"] in NO_SCRIPT and "script not found" in ix["error"]:
                build_recipe(group, None)  # still builds, from the documented source
                continue
            problems.append(f"{_identity(ix)}: InferenceX script failed: {ix['error']}")
            continue
        # The registry's recipe: the framework's builder plus the client the script runs (data/client.yaml).
        ours = registry.build_recipe(group, None, served_model_name=group.model).to_json()
        ix_clean = {**ix, "env": {k: v for k, v in (ix.get("env") or {}).items() if k not in HARNESS_ENV}}
        diff = diff_launch(ix_clean, ours)
        if ours["argv"][:3] != ix["argv"][:3]:
            diff.append("launcher spelling")
        if not diff and ours["argv"] != ix["argv"]:  # same flags: also the script's order and spelling
            diff.append(f"order/spelling: {ix['argv']} vs ours {ours['argv']}")
        for call in ix.get("calls") or []:
            text = " ".join(call)
            if call[0] not in ("python3", "python") and (ix["config-key"], text) not in NOT_REPRODUCED_CALLS:
                diff.append(f"unexpected side call {text!r}")
        if diff:
            problems.append(f"{_identity(ix)}: {diff}")
        else:
            identical += 1
    assert not problems, "\n".join(problems)
    assert identical == sum(1 for r in records if not r.get("error"))


def test_every_table_entry_names_an_existing_script_or_a_documented_exception() -> None:
    reference = SHARED / "reference" / "inferencex-1ef98e3ed" / "benchmarks" / "single_node" / "fixed_seq_len"
    if not reference.is_dir():
        pytest.skip(f"{reference} is absent")
    for g in _fleet(FIXTURE_1EF):
        entry = select_script(g)
        name = f"{g.model_prefix}_{g.precision}_mi355x_atom{'_mtp' if g.spec_decoding == 'mtp' else ''}.sh"
        assert (reference / name).is_file() or g.config_key in NO_SCRIPT, name
        assert name in entry["source"] or g.config_key in NO_SCRIPT, (name, entry["source"])


# --- flags against ATOM's own argument definitions (data/atom_options.yaml) -------------------------------

def atom_version(image: str) -> tuple[str, dict[str, Any]]:
    """The ATOM version (data/atom_options.yaml) an image runs; KeyError when the table has none."""
    for name, version in load_table("atom_options")["versions"].items():
        if any(fnmatch.fnmatchcase(image, pattern) for pattern in version["images"]):
            return name, {**version["options"], **(version.get("inferred") or {})}
    raise KeyError(f"no ATOM version in data/atom_options.yaml runs {image}")


def argv_problems(argv: tuple[str, ...], options: dict[str, Any]) -> list[str]:
    """Every way `argv` (after the launcher) would fail ATOM's argparse: unknown or prefix-abbreviated options,
    missing or stray values, values outside `choices`, one destination set twice."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        spec = options.get(tok)
        if spec is None:
            problems.append(f"unknown option {tok!r}" if tok.startswith("-") else f"stray value {tok!r}")
            i += 1
            continue
        if spec["dest"] in seen:
            problems.append(f"{tok} sets {spec['dest']} again (already by {seen[spec['dest']]})")
        seen[spec["dest"]] = tok
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        takes = spec["value"] == "required" or (spec["value"] == "optional" and nxt is not None and nxt not in options)
        if takes:
            if nxt is None or nxt in options:
                problems.append(f"{tok} needs a value")
                i += 1
                continue
            if "choices" in spec and nxt not in spec["choices"]:
                problems.append(f"{tok} {nxt!r} is not one of {spec['choices']}")
            i += 2
        else:
            i += 1
    return problems


def test_options_table_shape() -> None:
    versions = load_table("atom_options")["versions"]
    assert {"v0.1.2.post", "20260511", "v0.1.3", "nightly-202607231538"} <= set(versions)
    for version in versions.values():
        assert len(version["commit"]) == 40 and version["how"] and version["files"]
        for spec in [*version["options"].values(), *(version.get("inferred") or {}).values()]:
            assert spec["value"] in ("none", "required", "optional")
        for spec in (version.get("inferred") or {}).values():
            assert spec["why"]


def test_argv_checker_catches_mistakes() -> None:
    _, options = atom_version(IMAGE_0_1_3)
    assert argv_problems(("-tp", "8", "--kv_cache_dtype", "fp8"), options) == []
    assert argv_problems(("--kv-cache-dtype", "fp8"), options)[0] == "unknown option '--kv-cache-dtype'"
    assert argv_problems(("--kv_cache_dtype", "int4"), options) == ["--kv_cache_dtype 'int4' is not one of "
                                                                    "['bf16', 'fp8']"]
    assert argv_problems(("--tensor-parallel-size", "8", "-tp", "8"), options)
    assert argv_problems(("--method",), options) == ["--method needs a value"]
    _, old = atom_version(IMAGE_0_1_2)
    assert argv_problems(("--no-enable_prefix_caching",), old) == ["unknown option '--no-enable_prefix_caching'"]


@pytest.mark.parametrize("fixture_dir", [FIXTURE_1EF, FIXTURE_843], ids=["1ef98e3ed", "843c6254f"])
def test_every_fixture_recipe_parses_with_its_images_atom(fixture_dir: Path) -> None:
    problems = []
    for g in _fleet(fixture_dir):
        name, options = atom_version(g.image)
        argv = build_recipe(g, None).argv
        assert argv[:3] == HEAD
        found = argv_problems(argv[3:], options)
        if found:
            problems.append(f"{g.config_key} isl={g.isl} tp={g.tp} dp-attn={g.dp_attn} (ATOM {name}): {found}")
    assert not problems, "\n".join(problems)
