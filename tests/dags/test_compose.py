"""docker-compose.yaml: it lints with Debian's docker-compose (v1, config only), needs real secrets from .env
(none shipped), keeps auth on, uses only options this Airflow has, and every service command exists."""

from __future__ import annotations

import re
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


SECRETS = ("POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_API_SECRET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_USERS")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY\b|_USERS\b")


def _env_example() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _environments() -> dict[str, dict[str, str]]:
    return {name: {k: str(v) for k, v in (svc.get("environment") or {}).items()}
            for name, svc in _services().items()}


def test_no_all_admins_and_no_default_secrets() -> None:
    text = COMPOSE.read_text()
    assert 'SIMPLE_AUTH_MANAGER_ALL_ADMINS: "False"' in text
    for var in ("AIRFLOW_FERNET_KEY", "AIRFLOW_API_SECRET_KEY", "AIRFLOW_JWT_SECRET", "POSTGRES_PASSWORD"):
        assert f"${{{var}:?" in text, f"{var} must be required (no working default)"


def test_auth_is_on_for_the_api_and_ui() -> None:
    """Every Airflow service uses SimpleAuthManager with users from .env; nothing turns all-admins on."""
    text = COMPOSE.read_text()
    assert not re.search(r"ALL_ADMINS\W*[:=]\W*\"?true", text, re.IGNORECASE), "all-admins disables auth"
    for name, env in _environments().items():
        if name.startswith(("airflow-", "gpu-")):
            assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith(("SimpleAuthManager", "FabAuthManager")), name
            assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False", name
            assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].startswith("${AIRFLOW_USERS:?"), name
            assert env["AIRFLOW__API__EXPOSE_CONFIG"] == "False", name


def test_every_secret_comes_from_env_without_a_working_default() -> None:
    """Each secret is `${VAR:?...}` (compose refuses to start without it), never `${VAR:-default}`, and no
    credential is written into the file: every password inside a URL is a `${VAR}` reference."""
    text = COMPOSE.read_text()
    for var in SECRETS:
        assert f"${{{var}:?set {var} in .env}}" in text, f"{var} must be required"
        assert not re.search(rf"\${{{var}:?-", text), f"{var} has a default"
    for name, env in _environments().items():
        for key, value in env.items():
            if SECRET_NAME.search(key) and value:
                assert (value.startswith("${") and ":-" not in value.split("}")[0]) or key == "HF_TOKEN", (name, key)
            for password in re.findall(r"://[^:/@\s]*:([^@\s]*)@", value):
                assert password == "" or password.startswith("${"), f"{name}.{key} embeds a literal password"
    assert "HF_TOKEN: ${HF_TOKEN:-}" in text  # optional (public models), and empty unless the user sets it


def test_env_example_documents_every_variable_and_ships_no_secret() -> None:
    example = _env_example()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    assert used - set(example) == set(), f"compose variables missing from .env.example: {used - set(example)}"
    for var in (*SECRETS, "HF_TOKEN"):
        assert var in example and example[var] == "", f".env.example must leave {var} empty"


def test_airflow_options_in_compose_exist_in_this_airflow() -> None:
    """A misspelt AIRFLOW__SECTION__KEY is silently ignored by Airflow (e.g. a secret that never applies)."""
    from airflow.configuration import conf

    conf.load_providers_configuration()  # celery's options come from its provider
    known = conf.configuration_description
    for name, env in _environments().items():
        for key in env:
            if key.startswith("AIRFLOW__"):
                section, _, option = key.removeprefix("AIRFLOW__").lower().partition("__")
                assert option in known.get(section, {}).get("options", {}), f"{name}: {key} is not an Airflow option"


def test_results_connection_is_one_the_store_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The results DB reaches tasks as an Airflow connection; its URI must parse to a type the store maps."""
    from infersweep.store.db import AIRFLOW_CONN_ID, _airflow_connection_url, mask_url

    env = _environments()["airflow-worker"]
    uri = env["AIRFLOW_CONN_INFERSWEEP_RESULTS"].replace("${POSTGRES_PASSWORD}", "s3cr3t-value")
    monkeypatch.setenv(f"AIRFLOW_CONN_{AIRFLOW_CONN_ID.upper()}", uri)
    url = _airflow_connection_url()
    assert url is not None and url.startswith("postgresql+psycopg://airflow:")
    assert mask_url(url) == "postgresql+psycopg://airflow:***@postgres:5432/results"


@pytest.mark.integration
def test_compose_config_lints(tmp_path: Path) -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("Debian's docker-compose is not installed (apt-get install docker-compose)")
    env_file = tmp_path / ".env"
    # .env.example as a user fills it in: every secret set.
    filled = {**_env_example(), **{var: f"generated-{var.lower()}" for var in SECRETS}, "AIRFLOW_USERS": "admin:admin"}
    env_file.write_text("".join(f"{k}={v}\n" for k, v in filled.items()))
    # The shipped .env.example alone must not render: its secrets are empty.
    shipped = subprocess.run(
        [exe, "--env-file", str(ROOT / ".env.example"), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert shipped.returncode != 0 and "set " in shipped.stderr
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
