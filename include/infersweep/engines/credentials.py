"""The Hugging Face token: from an Airflow connection or the environment, never logged."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

TOKEN_ENV_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def resolve_hf_token(*, conn_id: str | None = None) -> str | None:
    """The HF token: the password of Airflow connection `conn_id` when given, else `HF_TOKEN` from the env.

    A named connection that cannot be read is an error (a gated model would otherwise fail much later with a
    confusing 401). The token itself never appears in messages.
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
        return str(token)
    for name in TOKEN_ENV_NAMES:
        value = os.environ.get(name)
        if value:
            return value
    return None
