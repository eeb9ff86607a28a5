"""The InferenceX launch oracle: script selection per runner launcher, and one real capture per framework."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infersweep.plan.models import ServeGroup
from tests.recipes import ix_oracle as oracle

pytestmark = pytest.mark.skipif(
    not (oracle.FIXTURE_DIR / "nvidia-master.yaml").exists()
    or not (oracle.REFERENCE_DIR / "benchmarks" / "benchmark_lib.sh").exists(),
    reason=f"InferenceX fixture/reference absent under {oracle.SHARED} (the shared/ folder is not on this machine)",
)

FSL = "benchmarks/single_node/fixed_seq_len/"


@pytest.fixture(scope="module")
def groups() -> list[ServeGroup]:
    return oracle.fleet_groups()


def find(groups: list[ServeGroup], key: str, **where: object) -> ServeGroup:
    for g in groups:
        if g.config_key == key and all(getattr(g, k) == v for k, v in where.items()):
            return g
    raise AssertionError(f"no serve group {key} {where}")


def rel(path: Path | None) -> str | None:
    return None if path is None else path.relative_to(oracle.REFERENCE_DIR).as_posix()


@pytest.mark.unit
def test_fleet_is_the_fixture_single_node_serve_groups(groups: list[ServeGroup]) -> None:
    assert len(groups) == 534
    assert {g.framework for g in groups} == {"sglang", "vllm", "trt", "atom"}


@pytest.mark.unit
@pytest.mark.parametrize(("key", "where", "script"), [
    ("dsr1-fp4-b200-trt", {}, "dsr1_fp4_b200_trt.sh"),  # b200: `_trt` legacy suffix
    ("dsr1-fp4-b200-trt-mtp", {}, "dsr1_fp4_b200_trt_mtp.sh"),
    ("dsr1-fp4-b200-sglang", {}, "dsr1_fp4_b200.sh"),  # no `_sglang` script: bare fallback
    ("dsv4-fp4-b200-vllm", {}, "dsv4_fp4_b200_vllm.sh"),  # b200-dsv4 (not in runners.yaml) borrows b200's
    ("dsv4-fp4-b300-sglang", {}, "dsv4_fp4_b300_sglang.sh"),  # framework-tagged first
    ("dsr1-fp8-h200-trt-mtp", {}, "dsr1_fp8_h200_trt_mtp.sh"),  # h200-cw: legacy names only
    ("dsr1-fp4-mi355x-atom", {}, "dsr1_fp4_mi355x_atom.sh"),
    ("dsr1-fp4-mi355x-atom-mtp", {}, "dsr1_fp4_mi355x_atom_mtp.sh"),
    ("dsr1-fp4-mi355x-sglang", {}, "dsr1_fp4_mi355x.sh"),
])
def test_select_script(groups: list[ServeGroup], key: str, where: dict, script: str) -> None:
    assert rel(oracle.select_script(find(groups, key, **where))) == FSL + script


@pytest.mark.unit
def test_h100_and_mi325x_launchers_ignore_mtp(groups: list[ServeGroup]) -> None:
    """`launch_h100-*.sh` / `launch_mi3[02]*x-amds.sh` run `{prefix}_{precision}_{gpu}.sh`: an MTP key gets the
    non-MTP script; the `_mtp` script exists and is what `intended_script` names."""
    for key, base in (("qwen3.5-fp8-h100-sglang-mtp", "qwen3.5_fp8_h100"),
                      ("qwen3.5-fp8-mi325x-sglang-mtp", "qwen3.5_fp8_mi325x")):
        g = find(groups, key)
        assert g.spec_decoding == "mtp"
        assert rel(oracle.select_script(g)) == f"{FSL}{base}.sh"
        assert oracle.intended_script(g) == f"{FSL}{base}_mtp.sh"


@pytest.mark.unit
def test_dsv4_mi355x_mtp_scripts_are_outside_fixed_seq_len(groups: list[ServeGroup]) -> None:
    g = find(groups, "dsv4-fp4-mi355x-atom-mtp")
    assert oracle.select_script(g) is None
    assert oracle.intended_script(g) == "benchmarks/single_node/dsv4_fp4_mi355x_atom_mtp.sh"


@pytest.mark.unit
def test_workflow_env_is_the_group_at_its_highest_conc(groups: list[ServeGroup]) -> None:
    g = find(groups, "dsr1-fp4-b200-sglang", isl=8192)
    env = oracle.workflow_env(g, g.max_conc, "b200-cw_00")
    assert env["CONC"] == str(max(g.concs)) and env["MAX_MODEL_LEN"] == str(8192 + 1024 + 256)
    assert env["DP_ATTENTION"] in ("true", "false") and env["EP_SIZE"] == str(g.ep)


@pytest.mark.unit
def test_write_jsonl_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    oracle.write_jsonl([{"a": 1}, {"b": 2}], out)
    assert [json.loads(x) for x in out.read_text().splitlines()] == [{"a": 1}, {"b": 2}]
    assert [p.name for p in tmp_path.iterdir()] == ["x.jsonl"]


@pytest.mark.unit
def test_main_skips_cleanly_without_shared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = oracle.main(["--out", str(tmp_path / "o.jsonl"), "--fixture-dir", str(tmp_path / "none")])
    assert rc == 2 and "skipped" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


# --- real captures: each runs one InferenceX script under bash with the shims (about 0.3-2 s each) ---------


def flags(argv: list[str]) -> set[str]:
    return {t.split("=")[0] for t in argv if t.startswith("-")}


@pytest.mark.integration  # runs InferenceX's scripts under bash
def test_capture_sglang(groups: list[ServeGroup]) -> None:
    g = find(groups, "dsr1-fp4-b200-sglang", isl=1024)
    r = oracle.capture(g)
    assert r["error"] is None, r["error"]
    assert r["launcher"] == "python3 -m sglang.launch_server" and r["conc"] == max(g.concs)
    assert flags(r["argv"]) & {"--tp", "--tensor-parallel-size"}
    assert r["env"].get("PYTHONNOUSERSITE") == "1"  # a prefix assignment on the launch line
    assert not any(k in r["env"] for k in ("PWD", "SHLVL", "_", "MODEL"))
    assert not any("ix-oracle" in a for a in r["argv"])  # the temp work dir is mapped back to /workspace


@pytest.mark.integration  # runs InferenceX's scripts under bash
def test_capture_trt_has_its_yaml(groups: list[ServeGroup]) -> None:
    g = find(groups, "dsr1-fp4-b200-trt", isl=1024, dp_attn=True)
    r = oracle.capture(g)
    assert r["error"] is None, r["error"]
    assert r["launcher"] == "mpirun trtllm-serve" and r["argv"][0] == "trtllm-serve"
    assert r["wrapper"][0] == "mpirun"
    (name, text), = r["files"].items()
    assert name.endswith(".yml")
    # DP attention switches MoE to CUTLASS and divides the CUDA-graph batch by 4 (computed from CONC).
    assert "backend: CUTLASS" in text and f"max_batch_size: {max(g.concs) // 4}" in text


@pytest.mark.integration  # runs InferenceX's scripts under bash
def test_capture_atom(groups: list[ServeGroup]) -> None:
    r = oracle.capture(find(groups, "dsr1-fp4-mi355x-atom", isl=1024))
    assert r["error"] is None, r["error"]
    assert r["launcher"] == "python3 -m atom.entrypoints.openai_server"
    assert flags(r["argv"]) & {"-tp", "--tensor-parallel-size"}
    assert r["env"]["OMP_NUM_THREADS"] == "1"


@pytest.mark.integration  # runs InferenceX's scripts under bash
def test_capture_vllm(groups: list[ServeGroup]) -> None:
    r = oracle.capture(find(groups, "dsv4-fp4-b200-vllm", isl=1024))
    assert r["error"] is None, r["error"]
    assert r["argv"][:2] == ["vllm", "serve"] and "--tensor-parallel-size" in r["argv"]


@pytest.mark.integration  # runs InferenceX's scripts under bash
def test_missing_script_is_recorded_not_skipped(groups: list[ServeGroup]) -> None:
    r = oracle.capture(find(groups, "dsv4-fp4-mi355x-atom-mtp"))
    assert r["script"] is None and "script not found" in r["error"]
    assert r["intended"]["error"] is None and "--method" in r["intended"]["argv"]


@pytest.mark.integration
def test_conc_dependent_launch_is_visible(groups: list[ServeGroup]) -> None:
    """InferenceX boots one server per conc; the TRT DP-attention YAML sizes CUDA graphs from CONC."""
    g = find(groups, "dsr1-fp4-b200-trt", isl=1024, tp=8, dp_attn=True)
    assert len(g.concs) > 1
    high, low = oracle.capture(g), oracle.capture(g, conc=min(g.concs))
    assert low["conc"] == min(g.concs) and high["conc"] == max(g.concs)
    diff = oracle.launch_diff(high, low)
    assert not diff["same"] and diff["files"] == list(high["files"])


@pytest.mark.integration
def test_pre_launch_installs_are_recorded(groups: list[ServeGroup]) -> None:
    r = oracle.capture(find(groups, "glm5-fp8-mi355x-atom"))
    assert ["pip", "install", "-U", "transformers"] in r["pre-launch"]
