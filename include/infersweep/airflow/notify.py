"""Alerts: a failed sweep run, a regression found by the report DAG's gate, a node that never freed.

Configured per sweep file (`notify:`, off by default) and sent by e-mail (SMTP) and/or as a JSON webhook.
Everything secret (SMTP password, webhook URL and token) comes from the Airflow connections the block names,
and is never logged: failures are logged by connection id, error class and status code only.

* A failed sweep run alerts through Airflow's notifier mechanism: the factory sets `InfersweepNotifier` as
  the DAG's `on_failure_callback` (run by the dag-processor, or in-process by `dag.test()`). It re-reads the
  run's verdict from the results store, so the message carries the failed points by class.
* A regression alerts from the report DAG's gate step (`steps.finalize.report_and_gate`), which knows each
  regression's size and noise band; the sweep's `notify:` block is found through the parse cache.
* A node lease of the run that expired instead of being released alerts from the `verdict` task.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from infersweep.airflow.dagspec import REPORT_PLUGIN_URL
from infersweep.airflow.payloads import Regression, RunReport, RunVerdict
from infersweep.config.settings import NotifySettings, SmtpNotify, WebhookNotify

try:  # the notifier base is Airflow's; the message building and sending work without Airflow (library use)
    from airflow.sdk import BaseNotifier
except ImportError:  # pragma: no cover - Airflow is installed wherever DAGs are built
    BaseNotifier = object  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

#: Overrides the report link's base URL (else Airflow's `[api] base_url`).
BASE_URL_ENV = "INFERSWEEP_BASE_URL"


class AlertMessage(BaseModel):
    """One alert, as the webhook receives it (JSON) and the e-mail shows it (`text`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: Literal["failure", "regression", "stuck_node"]
    subject: str
    config_key: str | None = None
    dag_id: str
    run_id: str
    images: tuple[str, ...] = ()
    failed_points: dict[str, int] = Field(default_factory=dict, description="failed points per failure class")
    reasons: tuple[str, ...] = ()
    regressions: tuple[Regression, ...] = ()
    baseline: str | None = Field(default=None, description="the run the regressions were measured against")
    stuck_nodes: tuple[str, ...] = ()
    report_url: str

    @property
    def text(self) -> str:
        """The plain-text body (e-mail, and the webhook's `text` field)."""
        lines = [self.subject, "", f"config key: {self.config_key or self.dag_id}",
                 f"run: {self.dag_id} / {self.run_id}", f"image: {', '.join(self.images) or 'unknown'}"]
        if self.failed_points:
            lines.append("failed points by class: " + ", ".join(f"{k}×{n}" for k, n in sorted(self.failed_points.items())))
        lines += [f"- {r}" for r in self.reasons]
        if self.regressions:
            lines.append(f"regressions vs {self.baseline or 'the previous image'}:")
            lines += [f"- {r.describe()}" for r in self.regressions]
        if self.stuck_nodes:
            lines.append("nodes never freed (lease expired): " + ", ".join(self.stuck_nodes))
        lines += ["", f"report: {self.report_url}"]
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON body."""
        return {**self.model_dump(mode="json"), "text": self.text}


def api_base_url() -> str:
    """The api-server's public base URL: `INFERSWEEP_BASE_URL`, else Airflow's `[api] base_url`, else ''."""
    base = os.environ.get(BASE_URL_ENV) or os.environ.get("AIRFLOW__API__BASE_URL")
    if not base:
        try:
            from airflow.configuration import conf

            base = conf.get("api", "base_url", fallback="")
        except Exception:  # no Airflow configuration here (library use)
            base = ""
    return str(base or "").rstrip("/")


def report_url(dag_id: str, run_id: str) -> str:
    """The run's report page in the Airflow UI plugin."""
    return f"{api_base_url()}{REPORT_PLUGIN_URL}?{urlencode({'dag_id': dag_id, 'run_id': run_id})}"


def failure_alert(verdict: RunVerdict) -> AlertMessage:
    """The alert for a sweep run the verdict failed."""
    key = verdict.config_key or verdict.dag_id
    return AlertMessage(
        event="failure", subject=f"[infersweep] {key}: run {verdict.run_id} FAILED ({len(verdict.reasons)} "
        f"reason{'s' if len(verdict.reasons) != 1 else ''})", config_key=key, dag_id=verdict.dag_id,
        run_id=verdict.run_id, images=verdict.images, failed_points=dict(verdict.failed_by_class),
        reasons=verdict.reasons, stuck_nodes=verdict.stuck_nodes, report_url=report_url(verdict.dag_id, verdict.run_id))


def stuck_alert(verdict: RunVerdict) -> AlertMessage:
    """The alert for leases of a run that expired instead of being released."""
    key = verdict.config_key or verdict.dag_id
    return AlertMessage(
        event="stuck_node", subject=f"[infersweep] {key}: {len(verdict.stuck_nodes)} node(s) never freed by run "
        f"{verdict.run_id}", config_key=key, dag_id=verdict.dag_id, run_id=verdict.run_id, images=verdict.images,
        stuck_nodes=verdict.stuck_nodes, report_url=report_url(verdict.dag_id, verdict.run_id))


def regression_alert(report: RunReport, *, config_key: str | None = None, images: Sequence[str] = ()) -> AlertMessage:
    """The alert for a sweep run the report DAG's gate found regressed."""
    key = config_key or report.dag_id
    return AlertMessage(
        event="regression", subject=f"[infersweep] {key}: {report.regressions} regression(s) in run {report.run_id}",
        config_key=key, dag_id=report.dag_id, run_id=report.run_id, images=tuple(images),
        reasons=(report.gate,) if report.gate else (), regressions=report.regressed_points, baseline=report.baseline,
        report_url=report_url(report.dag_id, report.run_id))


# ------------------------------------------------------------------------------------------------ channels
def _connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def _extra(conn: Any) -> dict[str, Any]:
    try:
        return dict(conn.extra_dejson or {})
    except Exception:  # unparsable extra: behave as if empty
        return {}


def send_smtp(cfg: SmtpNotify, msg: AlertMessage, *, timeout_s: float, conn: Any = None) -> None:
    """E-mail `msg` through the SMTP server of connection `cfg.conn_id` (STARTTLS or SSL per its extra)."""
    conn = conn or _connection(cfg.conn_id)
    extra = _extra(conn)
    host = str(conn.host or "localhost")
    use_ssl = bool(extra.get("ssl") or extra.get("use_ssl"))
    port = int(conn.port or (465 if use_ssl else 25))
    mail = EmailMessage()
    mail["Subject"] = msg.subject
    mail["From"] = cfg.sender or extra.get("from_email") or (conn.login if conn.login and "@" in conn.login
                                                              else f"infersweep@{host}")
    mail["To"] = ", ".join(cfg.to)
    mail.set_content(msg.text)
    client: smtplib.SMTP = (smtplib.SMTP_SSL(host, port, timeout=timeout_s, context=ssl.create_default_context())
                            if use_ssl else smtplib.SMTP(host, port, timeout=timeout_s))
    with client:
        if not use_ssl and extra.get("starttls"):
            client.starttls(context=ssl.create_default_context())
        if conn.login and conn.password:
            client.login(conn.login, conn.password)
        client.send_message(mail)


def _webhook_url(conn: Any) -> str:
    host = str(conn.host or "")
    if host.startswith(("http://", "https://")):
        return host
    scheme = "https" if conn.conn_type == "https" or _extra(conn).get("scheme") == "https" else "http"
    path = f"/{str(conn.schema).lstrip('/')}" if conn.schema else ""
    return f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "") + path


def send_webhook(cfg: WebhookNotify, msg: AlertMessage, *, timeout_s: float, conn: Any = None) -> None:
    """POST `msg` as JSON to connection `cfg.conn_id`'s URL; its password, if any, as a bearer token."""
    import httpx

    conn = conn or _connection(cfg.conn_id)
    headers = {"Content-Type": "application/json", "User-Agent": "infersweep-notify"}
    if conn.password:
        headers["Authorization"] = f"Bearer {conn.password}"
    r = httpx.post(_webhook_url(conn), json=msg.payload(), headers=headers, timeout=timeout_s)
    r.raise_for_status()


def deliver(notify: NotifySettings, msg: AlertMessage) -> dict[str, str]:
    """Send `msg` on every configured channel if `notify` wants its event; returns channel → outcome. A
    channel that fails is logged (connection id, error class, status code: never the URL or credentials) and
    does not stop the others; alerts never fail the task or callback that sends them."""
    if not notify.wants(msg.event):
        return {}
    outcome: dict[str, str] = {}
    channels: list[tuple[str, str, Any]] = []
    if notify.smtp is not None:
        channels.append(("smtp", notify.smtp.conn_id, lambda: send_smtp(notify.smtp, msg, timeout_s=notify.timeout_s)))  # type: ignore[arg-type]
    if notify.webhook is not None:
        channels.append(("webhook", notify.webhook.conn_id,
                         lambda: send_webhook(notify.webhook, msg, timeout_s=notify.timeout_s)))  # type: ignore[arg-type]
    for name, conn_id, send in channels:
        try:
            send()
            outcome[name] = "sent"
            log.info("%s alert for %s/%s sent by %s (connection %s)", msg.event, msg.dag_id, msg.run_id, name, conn_id)
        except Exception as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None) or getattr(exc, "smtp_code", None)
            outcome[name] = f"failed: {type(exc).__name__}" + (f" ({status})" if status else "")
            log.warning("%s alert for %s/%s not sent by %s (connection %s): %s", msg.event, msg.dag_id, msg.run_id,
                        name, conn_id, outcome[name])
    return outcome


# ------------------------------------------------------------------------------------ Airflow's notifier
class InfersweepNotifier(BaseNotifier):
    """A sweep DAG's `on_failure_callback`: the failed run's verdict (re-read from the results store) to the
    sweep file's channels. Holds only connection ids and recipients; secrets are read at send time."""

    template_fields: Sequence[str] = ()

    def __init__(self, *, notify: NotifySettings | Mapping[str, Any]) -> None:
        super().__init__()
        self.notify_settings = notify if isinstance(notify, NotifySettings) else NotifySettings.model_validate(notify)

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render: the message is built from the results store, not from templates. (Rendering
        also breaks under Airflow 3.3's `dag.test()`, whose callback context holds a `SerializedDAG`
        without `get_template_env`.)"""

    def notify(self, context: Any) -> None:
        """Send the failure alert of the DAG run in `context`."""
        dag_run = context.get("dag_run")
        dag = context.get("dag")
        dag_id = str(getattr(dag_run, "dag_id", None) or getattr(dag, "dag_id", ""))
        run_id = str(getattr(dag_run, "run_id", None) or context.get("run_id") or "")
        deliver(self.notify_settings, failure_alert(verdict_of(dag_id, run_id, reason=context.get("reason"))))


def verdict_of(dag_id: str, run_id: str, *, reason: Any = None) -> RunVerdict:
    """The run's verdict from the results store; a bare one naming Airflow's reason when the store cannot
    be read (the alert still goes out)."""
    from infersweep.airflow.context import RunContext, open_store
    from infersweep.airflow.verdict import collect_run_facts, run_verdict

    try:
        verdict = run_verdict(collect_run_facts(open_store(RunContext(dag_id=dag_id, run_id=run_id))))
    except Exception as exc:
        log.warning("verdict of %s/%s not readable from the results store: %s", dag_id, run_id, type(exc).__name__)
        verdict = RunVerdict(dag_id=dag_id, run_id=run_id, note="")
    if not verdict.reasons:  # failed for a reason the store does not show (e.g. a rejected run conf)
        text = f"Airflow marked the run failed ({reason or 'task_failure'}); see its task logs"
        verdict = verdict.model_copy(update={"reasons": (text,)})
    return verdict


def notify_settings_for(dag_id: str) -> NotifySettings | None:
    """The `notify:` block of the sweep file that defines `dag_id` (through the parse cache), or None. A source
    that does not load is skipped: its own DAG file reports it."""
    from infersweep.airflow.dagfiles import config_sources
    from infersweep.airflow.parse_cache import load_dag_specs
    from infersweep.airflow.settings import AirflowSettings

    settings = AirflowSettings.from_env()
    for source in config_sources(settings.config_paths):
        try:
            specs = load_dag_specs([source], settings.parse_cache_dir)
        except Exception as exc:
            log.debug("notify settings: %s not loadable: %s", source, type(exc).__name__)
            continue
        for spec in specs:
            if spec.dag_id == dag_id:
                return spec.notify
    return None
