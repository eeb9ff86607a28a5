"""docker-compose.yaml: it lints with Debian's docker-compose (v1, config only), needs real secrets, and
every service command exists in this Airflow version."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"


def _services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_every_airflow_command_exists_in_this_airflow() -> None:
    commands = {}
    for name, svc in _services().items():
        cmd = svc.get("command")
        if name.startswith(("airflow-", "gpu-")) and isinstance(cmd, str):
            commands[name] = cmd.split()
    assert {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"} <= set(commands)
    from airflow.cli.cli_parser import get_parser

    parser = get_parser()
    for name, argv in commands.items():
        # Parsing `<cmd> --help` exits 0 only when the (sub)command exists; option values are dropped.
        words = [w for w in argv if not w.startswith("-") and "$" not in w][:2]
        with pytest.raises(SystemExit) as exited:
            parser.parse_args([*words, "--help"])
        assert exited.value.code == 0, f"{name}: `airflow {' '.join(words)}` is not a command in this Airflow"


def test_gpu_worker_reserves_nvidia_gpus_and_listens_on_its_label_queue() -> None:
    gpu = _services()["gpu-worker"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert "--queues ${GPU_RUNNER_LABEL" in gpu["command"]


def test_no_all_admins_and_no_default_secrets() -> None:
    text = COMPOSE.read_text()
    assert 'SIMPLE_AUTH_MANAGER_ALL_ADMINS: "False"' in text
    for var in ("AIRFLOW_FERNET_KEY", "AIRFLOW_API_SECRET_KEY", "AIRFLOW_JWT_SECRET", "POSTGRES_PASSWORD"):
        assert f"${{{var}:?" in text, f"{var} must be required (no working default)"


@pytest.mark.integration
def test_compose_config_lints(tmp_path: Path) -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("Debian's docker-compose is not installed (apt-get install docker-compose)")
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.example").read_text())
    ok = subprocess.run(
        [exe, "--env-file", str(env_file), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert ok.returncode == 0, ok.stderr
    # Without the secrets, compose must refuse to render.
    bare = tmp_path / "bare.env"
    bare.write_text("AIRFLOW_UID=50000\n")
    refused = subprocess.run(
        [exe, "--env-file", str(bare), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert refused.returncode != 0 and "set " in refused.stderr
