"""Each place a credential passes through, checked on its own: the HF token from an Airflow connection (not in
the environment, not shaped like `hf_…`), the token in a Docker container's env and log, a DB password in
URLs and error messages, and the Docker engine's TLS settings. `test_canary.py` is the end-to-end proof."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from infersweep.store import logs as logs_mod
from infersweep.store.logs import redact, remember_secret, secret_values

TOKEN = "CONNtoken-7f3a9c2e11"  # deliberately not hf_-shaped: only value-based redaction can catch it


@pytest.fixture(autouse=True)
def _forget_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs_mod, "_REMEMBERED", set())
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "INFERSWEEP_DB_URL"):
        monkeypatch.delenv(name, raising=False)


def test_token_from_an_airflow_connection_is_masked_once_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    from infersweep.artifacts.credentials import resolve_hf_token

    monkeypatch.setenv("AIRFLOW_CONN_HF_X", json.dumps({"conn_type": "generic", "password": TOKEN}))
    assert TOKEN in secret_values()  # the connection's password is known from its env var already
    monkeypatch.delenv("AIRFLOW_CONN_HF_X")
    assert redact(f"token is {TOKEN}") == f"token is {TOKEN}"  # unknown secrets cannot be guessed ...
    monkeypatch.setenv("AIRFLOW_CONN_HF_Y", json.dumps({"conn_type": "generic", "password": TOKEN}))
    assert resolve_hf_token(conn_id="hf_y") == TOKEN
    monkeypatch.delenv("AIRFLOW_CONN_HF_Y")
    assert redact(f"token is {TOKEN}") == "token is ***"  # ... but every resolved one is remembered


def test_env_tokens_and_url_passwords_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "plainTokenValue99")
    monkeypatch.setenv("INFERSWEEP_DB_URL", "postgresql+psycopg://u:dbPass%2Fword@db:5432/results")
    monkeypatch.setenv("AIRFLOW_CONN_INFERSWEEP_RESULTS", "postgres://u:connPassword1@db/results")
    text = ("got plainTokenValue99; password dbPass/word; conn connPassword1; hf_" + "a" * 30 +
            " and postgresql://x:inlinePw@h/d")
    out = redact(text)
    for secret in ("plainTokenValue99", "dbPass/word", "connPassword1", "hf_" + "a" * 30, "inlinePw"):
        assert secret not in out
    assert "postgresql://x:***@h/d" in out


def test_short_values_are_not_treated_as_secrets() -> None:
    remember_secret("abc")
    assert redact("abc abc") == "abc abc"


def test_store_redacts_attempt_errors_and_server_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import create_engine, text

    from infersweep.store.api import ResultStore
    from infersweep.store.logs import unpack_log

    remember_secret(TOKEN)
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    store = ResultStore(dag_id="d", run_id="r", url=url, spool_path=tmp_path / "spool.jsonl")
    store.start_run(trigger_kind="manual", config_key="k")
    store.record_attempt(task_id="serve", try_number=1, status="failed",
                         error=RuntimeError(f"401 for token {TOKEN} at postgresql://u:pw12345@h/db"))
    store.record_group({"id": "g1", "config_key": "k"}, status="planned")
    store.record_server_log(group_id="g1", text=f"HF_TOKEN={TOKEN}\nready", try_number=1)
    store.flush()
    engine = create_engine(url)
    with engine.connect() as conn:
        message = conn.execute(text("SELECT message FROM attempts")).scalar_one()
        content, codec = conn.execute(text("SELECT content, codec FROM server_logs")).one()
    engine.dispose()
    assert TOKEN not in message and "pw12345" not in message and "***" in message
    assert TOKEN not in unpack_log(content, codec)
    spool = tmp_path / "spool.jsonl"
    assert not spool.exists() or TOKEN not in spool.read_text(errors="replace")


class _NotFound(Exception):
    pass


class _FakeContainer:
    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.id, self.status, self.attrs, self.kwargs = "c0ffee", "running", {}, kwargs

    def start(self) -> None: ...
    def reload(self) -> None: ...
    def stop(self, timeout: int) -> None: ...

    def logs(self, **_: Any) -> bytes:  # a server that echoes its environment, token included
        return f"env HF_TOKEN={self.kwargs['environment'].get('HF_TOKEN')}\nINFO ready\n".encode()


class _FakeClient:
    def __init__(self) -> None:
        import docker.errors

        self.errors = docker.errors
        self.created: list[dict[str, Any]] = []
        self.container: _FakeContainer | None = None
        outer = self

        class Images:
            def get(self, image: str) -> Any:
                return type("Img", (), {"attrs": {"RepoDigests": ["img@sha256:" + "0" * 64]}, "id": "sha256:1"})()

        class Containers:
            def create(self, **kwargs: Any) -> _FakeContainer:
                outer.created.append(kwargs)
                outer.container = _FakeContainer(kwargs)
                return outer.container

            def get(self, ref: str) -> _FakeContainer:
                if outer.container is None or ref != outer.container.id:
                    raise outer.errors.NotFound("no such container")
                return outer.container

        class Api:
            def remove_container(self, *a: Any, **k: Any) -> None: ...

        self.images, self.containers, self.api = Images(), Containers(), Api()

    def close(self) -> None: ...


def test_docker_engine_hands_the_token_to_the_container_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The token from the Airflow connection reaches the container env and nothing else: not the log line
    with the container spec, not the handle (stored as task output), not the saved container log."""
    from infersweep.engines.docker import DockerEngine
    from infersweep.recipes.model import Recipe

    monkeypatch.setenv("AIRFLOW_CONN_HF_CONN", json.dumps({"conn_type": "generic", "password": TOKEN}))
    client = _FakeClient()
    engine = DockerEngine(run_id="r1", hf_token_conn_id="hf_conn", host_port=18000, log_dir=tmp_path,
                          client_factory=lambda url, timeout: client)  # type: ignore[arg-type,return-value]
    recipe = Recipe(image="vllm/vllm-openai:v0.11.0", argv=("vllm", "serve", "m"), model="m", gpus=1)
    with caplog.at_level(logging.DEBUG):
        handle = engine.start(recipe)
        saved = engine.stop(handle, grace_s=0)
    assert client.created[0]["environment"]["HF_TOKEN"] == TOKEN  # the container does get it
    assert TOKEN not in caplog.text and "'HF_TOKEN': '***'" in caplog.text
    assert TOKEN not in json.dumps(handle.__dict__, default=str)
    assert TOKEN not in Path(handle.log_path).read_text()
    assert TOKEN in saved  # the in-memory copy is what the store packs, and pack_log redacts it:
    from infersweep.store.logs import pack_log, unpack_log

    assert TOKEN not in unpack_log(pack_log(saved).content)


def test_process_engine_argv_is_redacted() -> None:
    from infersweep.engines.process import redact_argv

    argv = ["vllm", "serve", "m", "--api-key", "sekret-1", "--hf-token=sekret-2"]
    assert redact_argv(argv) == ["vllm", "serve", "m", "--api-key", "***", "--hf-token=***"]


def test_db_urls_are_masked_in_messages() -> None:
    from infersweep.store.db import StoreConfigError, mask_url, normalize_url

    assert mask_url("postgresql+psycopg://u:topsecret@h:5432/d") == "postgresql+psycopg://u:***@h:5432/d"
    with pytest.raises(StoreConfigError) as info:
        normalize_url("mysql://u:topsecret@h/d")
    assert "topsecret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "env", "tls"),
    [
        ("tcp://node-1:2376", {"DOCKER_TLS_VERIFY": "1"}, True),  # a node's docker-url gets TLS like DOCKER_HOST
        ("tcp://node-1:2376", {}, False),  # allowed, but warned about
        ("ssh://ops@node-1", {"DOCKER_TLS_VERIFY": "1"}, False),  # ssh carries its own encryption
        ("unix:///var/run/docker.sock", {"DOCKER_TLS_VERIFY": "1"}, False),
    ],
)
def test_docker_client_tls_settings(url: str, env: dict[str, str], tls: bool, tmp_path: Path,
                                    caplog: pytest.LogCaptureFixture) -> None:
    from infersweep.artifacts import credentials

    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    environ = {**env, "DOCKER_CERT_PATH": str(tmp_path)} if env else {}
    credentials._warned_plain.clear()
    with caplog.at_level(logging.WARNING):
        kwargs = credentials.docker_client_kwargs(url, environ)
    assert kwargs["base_url"] == url
    assert ("tls" in kwargs) is tls
    if tls:
        assert kwargs["tls"].verify is True and kwargs["tls"].ca_cert == str(tmp_path / "ca.pem")
        assert kwargs["tls"].cert == (str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    assert ("without TLS" in caplog.text) is (url.startswith("tcp://") and not tls)
