"""Files a sweep file points to stay inside its folder (or a root the operator allows), and messages about
them name keys, never values: a config must not make the loader read /etc/passwd or ../secret.env, nor a
parse error print a secret into the CLI or Airflow's import-error text.

Every case is pinned to its full message list (they count towards issue 16's corpus of hostile inputs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infersweep.config.errors import ConfigError
from infersweep.config.sweep import load_sweep

SECRET = "hf_CANARYsecretvalue123"
OUTSIDE = "resolves outside the sweep file's folder"
FIX = ("a file inside the sweep file's folder, or allow its folder with INFERSWEEP_CONFIG_ROOTS=/path[:/other] "
       "(folders the operator trusts)")


def _layout(tmp: Path) -> Path:
    """tmp/secret.env (outside), tmp/sweeps/ (the sweep folder)."""
    (tmp / "secret.env").write_text(f"HF_TOKEN: {SECRET}\n")
    (tmp / "sweeps").mkdir()
    return tmp / "sweeps"


#: name → (sweep file body after `sweep: s`, expected messages with {dir} = the sweep folder)
CASES: dict[str, tuple[str, list[str]]] = {
    "quirks_etc_passwd": ("quirks-files: [/etc/passwd]",
                          [f"s.yaml:2: quirks-files[0]: '/etc/passwd' {OUTSIDE} ({{dir}}) (allowed: {FIX})"]),
    "quirks_parent_secret": ("quirks-files: [../secret.env]",
                             [f"s.yaml:2: quirks-files[0]: '../secret.env' {OUTSIDE} ({{dir}}) (allowed: {FIX})"]),
    "inventory_parent_secret": ("inventory-files: [../secret.env]",
                                [f"s.yaml:2: inventory-files[0]: '../secret.env' {OUTSIDE} ({{dir}}) (allowed: {FIX})"]),
    "inventory_absolute": ("inventory-files: [/etc/hostname]",
                           [f"s.yaml:2: inventory-files[0]: '/etc/hostname' {OUTSIDE} ({{dir}}) (allowed: {FIX})"]),
    "runners_outside": ("runners: ../../runners.yaml",
                        [f"s.yaml:2: runners: '../../runners.yaml' {OUTSIDE} ({{dir}}) (allowed: {FIX})"]),
    "thresholds_outside": ("eval: {thresholds-file: ../secret.env}",
                           [f"s.yaml:2: eval.thresholds-file: '../secret.env' {OUTSIDE} ({{dir}}) (allowed: {FIX})"]),
    "master_outside": ("masters: [../secret.env]",
                       [f"s.yaml:2: masters[0]: '../secret.env' {OUTSIDE} ({{dir}}) (allowed: {FIX})"]),
    "symlink_escapes": ("quirks-files: [link.yaml]",
                        [f"s.yaml:2: quirks-files[0]: 'link.yaml' {OUTSIDE} ({{dir}}) (allowed: {FIX})"]),
    "quirks_secret_inside": ("quirks-files: [inside.env]",
                             ["inside.env:1: HF_TOKEN: expected a mapping, got a str (value not shown: referenced file) "
                              "(allowed: key: value pairs)"]),
    "inventory_secret_inside": ("inventory-files: [inside.env]",
                                ["inside.env:1: HF_TOKEN: runner label 'HF_TOKEN' must map to a list of nodes"]),
}


def _write_case(tmp: Path, name: str) -> Path:
    folder = _layout(tmp)
    (folder / "link.yaml").symlink_to(tmp / "secret.env")
    (folder / "inside.env").write_text(f"HF_TOKEN: {SECRET}\n")
    body, _ = CASES[name]
    sweep = folder / "s.yaml"
    sweep.write_text(f"sweep: s\n{body}\n")
    return sweep


@pytest.mark.parametrize("name", sorted(CASES))
def test_referenced_file_is_confined_and_never_echoed(name: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERSWEEP_CONFIG_ROOTS", raising=False)
    sweep = _write_case(tmp_path, name)
    monkeypatch.chdir(sweep.parent)
    with pytest.raises(ConfigError) as info:
        load_sweep([sweep.name])
    folder = str(sweep.parent.resolve())
    assert [str(i) for i in info.value.issues] == [m.replace("{dir}", folder) for m in CASES[name][1]]
    assert SECRET not in str(info.value)


def test_the_cli_never_prints_a_referenced_secret(tmp_path: Path) -> None:
    sweep = _write_case(tmp_path, "quirks_secret_inside")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("INFERSWEEP_CONFIG_ROOTS", None)
    out = subprocess.run([sys.executable, "-m", "infersweep.cli", "plan", str(sweep)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode != 0
    assert "HF_TOKEN" in out.stdout + out.stderr and SECRET not in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_an_allowed_root_admits_a_file_outside_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "quirks.yaml").write_text("llama3.1-8b: {gmu: 0.8}\n")
    (tmp_path / "sweeps").mkdir()
    sweep = tmp_path / "sweeps" / "s.yaml"
    sweep.write_text("sweep: s\nquirks-files: [../shared/quirks.yaml]\n")
    with pytest.raises(ConfigError, match=OUTSIDE):
        load_sweep([sweep])
    monkeypatch.setenv("INFERSWEEP_CONFIG_ROOTS", f"/nonexistent:{shared}")
    assert "llama3.1-8b" in load_sweep([sweep]).quirks
