"""Credentials: the Hugging Face token (Airflow connection or environment) and the Docker engine's TLS
settings. Every credential read here is registered for redaction, so it is never logged."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from infersweep.store.logs import remember_secret

log = logging.getLogger(__name__)

TOKEN_ENV_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
#: Engine URL schemes that can carry TLS (docker-py: tcp:// and https://); unix:// and ssh:// never do.
_TLS_SCHEMES = ("tcp://", "https://")
_warned_plain: set[str] = set()


def resolve_hf_token(*, conn_id: str | None = None) -> str | None:
    """The HF token: the password of Airflow connection `conn_id` when given, else `HF_TOKEN` from the env.

    A named connection that cannot be read is an error (a gated model would otherwise fail much later with a
    confusing 401). The token itself never appears in messages, and is masked in logs from here on.
    """
    if conn_id:
        try:
            from airflow.sdk import Connection

            conn = Connection.get(conn_id)
        except Exception as exc:
            raise RuntimeError(
                f"HF token: Airflow connection {conn_id!r} could not be read ({type(exc).__name__}). "
                f"Create it (password = the token) or set AIRFLOW_CONN_{conn_id.upper()}."
            ) from exc
        token = getattr(conn, "password", None)
        if not token:
            raise RuntimeError(f"HF token: Airflow connection {conn_id!r} has no password; put the token there")
        remember_secret(str(token))
        return str(token)
    for name in TOKEN_ENV_NAMES:
        value = os.environ.get(name)
        if value:
            remember_secret(value)
            return value
    return None


def docker_client_kwargs(docker_url: str | None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`base_url` and `tls` for a docker-py client of one engine.

    `docker_url` (a node's `docker-url`) replaces DOCKER_HOST; DOCKER_TLS_VERIFY / DOCKER_CERT_PATH (a folder
    with ca.pem, cert.pem, key.pem) give TLS to tcp:// URLs, per node exactly as docker-py does for DOCKER_HOST.
    A tcp:// engine without TLS is used but warned about once: whoever reaches that port controls the node.
    """
    from docker.utils import kwargs_from_env

    env = dict(os.environ if environ is None else environ)
    if docker_url:
        env["DOCKER_HOST"] = docker_url
    kwargs: dict[str, Any] = kwargs_from_env(environment=env)
    url = str(kwargs.get("base_url") or "")
    if not url.startswith(_TLS_SCHEMES):
        kwargs.pop("tls", None)
    elif url.startswith("tcp://") and "tls" not in kwargs and url not in _warned_plain:
        _warned_plain.add(url)
        log.warning("docker engine %s is used without TLS: anyone who can reach it controls the node; set "
                    "DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (see docs/security.md)", url)
    return kwargs
