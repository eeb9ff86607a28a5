"""Alerts (issue 18): the SMTP and webhook channels against local servers, the message content (config key,
run, image, failed points by class, regressions with size and noise band, report link), the sweep file's
`notify:` block, Airflow's notifier callback, and that connection secrets never reach the logs."""

from __future__ import annotations

import base64
import email
import logging
from email import policy
from pathlib import Path
from types import SimpleNamespace

import pytest

from infersweep.airflow.notify import (
    InfersweepNotifier,
    deliver,
    failure_alert,
    notify_settings_for,
    regression_alert,
)
from infersweep.airflow.payloads import RunReport
from infersweep.airflow.steps.finalize import regressions_of
from infersweep.airflow.verdict import EvalFacts, GroupFacts, PointFacts, RunFacts, run_verdict
from infersweep.config.errors import ConfigError
from infersweep.config.settings import NotifySettings
from infersweep.config.sweep import load_sweep
from infersweep.faults.errors import ClassifiedError
from infersweep.store.api import ResultStore
from tests.airflow.alert_sinks import conn_env, http_sink, smtp_sink
from tests.airflow.harness import sim_sweep

KEY = "alert-bf16-sim-h100-vllm"
RUN = "manual__2026-12-04T02:00:00+00:00"
IMAGE = "vllm/vllm-openai:nightly-20261204"
BASE_URL = "http://airflow.example:8080"
SMTP_PASSWORD = "smtp-Pa55-do-not-log"
HOOK_TOKEN = "hook-T0ken-do-not-log"
HOOK_PATH_SECRET = "T0PSECRETPATH"


@pytest.fixture(autouse=True)
def _base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERSWEEP_BASE_URL", BASE_URL)


def _failed_verdict():
    facts = RunFacts(dag_id=KEY, run_id=RUN, config_key=KEY, status="failed", images=(IMAGE,), groups=(
        GroupFacts(group_id="g-tp1", label="(tp1 256/32)", status="done", planned=2,
                   points=(PointFacts(conc=1, status="ok"), PointFacts(conc=2, status="ok", reused=True))),
        GroupFacts(group_id="g-tp2", label="(tp2 256/32)", status="failed", failure_kind="kv_cache_oom", planned=1,
                   points=(PointFacts(conc=1, status="failed", failure_kind="kv_cache_oom"),)),
    ), evals=(EvalFacts(group_id="g-tp1", task="gsm8k", conc=2, status="ok", strict=0.31, flexible=0.4,
                        threshold=0.5, passed=False),))
    return run_verdict(facts)


def _secrets_absent(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], *secrets: str) -> str:
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    for secret in secrets:
        assert secret not in logged
    return logged


def test_smtp_alert_reaches_a_local_sink_with_the_run_and_its_failures(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    with smtp_sink() as sink:
        monkeypatch.setenv(*conn_env("infersweep_smtp", conn_type="smtp", host=sink.host, port=sink.port,
                                     login="sweeps@example.com", password=SMTP_PASSWORD))
        notify = NotifySettings.model_validate(
            {"on": ["failure"], "smtp": {"conn-id": "infersweep_smtp", "to": ["oncall@example.com", "perf@example.com"]}})
        assert deliver(notify, failure_alert(_failed_verdict())) == {"smtp": "sent"}
    assert len(sink.received) == 1
    got = sink.received[0]
    # The login really happened (AUTH PLAIN carries the password, base64) ...
    assert base64.b64decode(got["auth"].split()[-1]).split(b"\0")[-1] == SMTP_PASSWORD.encode()
    assert [r.split(":", 1)[1].strip("<> ") for r in got["to"]] == ["oncall@example.com", "perf@example.com"]
    mail = email.message_from_string(got["data"], policy=policy.default)
    assert mail["Subject"] == f"[infersweep] {KEY}: run {RUN} FAILED (2 reasons)"
    assert mail["From"] == "sweeps@example.com"
    body = mail.get_content()
    assert f"config key: {KEY}" in body and f"run: {KEY} / {RUN}" in body and f"image: {IMAGE}" in body
    assert "failed points by class: kv_cache_oom×1" in body
    assert "- 1 of 3 points failed: kv_cache_oom×1" in body
    assert "- eval gsm8k 0.31 < 0.50 (group g-tp1 conc 2)" in body
    assert f"report: {BASE_URL}/infersweep/?dag_id={KEY}&run_id=manual__2026-12-04T02%3A00%3A00%2B00%3A00" in body
    # ... and the password appears in no log line.
    logged = _secrets_absent(caplog, capfd, SMTP_PASSWORD)
    assert "failure alert for" in logged and "sent by smtp (connection infersweep_smtp)" in logged


def test_webhook_posts_the_alert_as_json_with_the_connection_token(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    with http_sink() as sink:
        monkeypatch.setenv(*conn_env("infersweep_webhook", conn_type="http", host=f"{sink.url}/hooks/{HOOK_PATH_SECRET}",
                                     password=HOOK_TOKEN))
        notify = NotifySettings.model_validate({"webhook": {"conn-id": "infersweep_webhook"}})
        assert deliver(notify, failure_alert(_failed_verdict())) == {"webhook": "sent"}
    [post] = sink.received
    assert post["method"] == "POST" and post["path"] == f"/hooks/{HOOK_PATH_SECRET}"
    assert post["headers"]["Authorization"] == f"Bearer {HOOK_TOKEN}"
    body = post["json"]
    assert {k: body[k] for k in ("event", "config_key", "dag_id", "run_id", "images", "failed_points")} == {
        "event": "failure", "config_key": KEY, "dag_id": KEY, "run_id": RUN, "images": [IMAGE],
        "failed_points": {"kv_cache_oom": 1}}
    assert body["reasons"] == ["1 of 3 points failed: kv_cache_oom×1", "eval gsm8k 0.31 < 0.50 (group g-tp1 conc 2)"]
    assert body["report_url"].startswith(f"{BASE_URL}/infersweep/?dag_id={KEY}&run_id=")
    assert body["text"].startswith(f"[infersweep] {KEY}: run {RUN} FAILED")
    _secrets_absent(caplog, capfd, HOOK_TOKEN, HOOK_PATH_SECRET)


def test_a_failing_channel_is_logged_by_class_and_status_only(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    with http_sink(status=500) as hook, smtp_sink() as mail:
        monkeypatch.setenv(*conn_env("hook", conn_type="http", host=f"{hook.url}/hooks/{HOOK_PATH_SECRET}",
                                     password=HOOK_TOKEN))
        monkeypatch.setenv(*conn_env("mail", conn_type="smtp", host=mail.host, port=mail.port))
        notify = NotifySettings.model_validate({"webhook": {"conn-id": "hook"},
                                                "smtp": {"conn-id": "mail", "to": ["oncall@example.com"]}})
        outcome = deliver(notify, failure_alert(_failed_verdict()))
    # One channel failing does not stop the other.
    assert outcome == {"smtp": "sent", "webhook": "failed: HTTPStatusError (500)"}
    assert len(mail.received) == 1 and len(hook.received) == 1
    logged = _secrets_absent(caplog, capfd, HOOK_TOKEN, HOOK_PATH_SECRET)
    assert "not sent by webhook (connection hook): failed: HTTPStatusError (500)" in logged


def test_regression_alert_carries_each_regression_with_its_size_and_noise_band(monkeypatch: pytest.MonkeyPatch) -> None:
    # The shape of `report.gate.GateResult.to_dict()`, as the report DAG's gate step receives it.
    gate = {"summary": "gate FAIL: head vs base: 3 points (1 ok, 1 failed, 1 regression)", "regressions": 2, "rows": [
        {"point": "tp1 4096/64 conc 4", "verdict": "regression", "metrics": {
            "tput_per_gpu": {"rel": -0.125, "band": 0.04, "verdict": "regression"},
            "median_ttft_ms": {"rel": 0.01, "band": 0.05, "verdict": "ok"}}},
        {"point": "tp1 4096/64 conc 1", "verdict": "ok", "metrics": {}},
        {"point": "tp2 4096/64 conc 8", "verdict": "failed", "metrics": {}},
    ]}
    regressed = regressions_of(gate)
    report = RunReport(dag_id=KEY, run_id=RUN, report="/r.html", baseline=f"{KEY}/scheduled__base",
                       gate=gate["summary"], regressions=2, regressed=True, regressed_points=regressed)
    with http_sink() as sink:
        monkeypatch.setenv(*conn_env("infersweep_webhook", conn_type="http", host=f"{sink.url}/hook"))
        notify = NotifySettings.model_validate({"on": ["regression"], "webhook": {}})
        assert deliver(notify, regression_alert(report, images=[IMAGE])) == {"webhook": "sent"}
    body = sink.received[0]["json"]
    assert body["event"] == "regression" and body["images"] == [IMAGE] and body["baseline"] == f"{KEY}/scheduled__base"
    assert body["regressions"] == [
        {"point": "tp1 4096/64 conc 4", "metric": "tput_per_gpu", "change_pct": -12.5, "noise_pct": 4.0},
        {"point": "tp2 4096/64 conc 8", "metric": "status", "change_pct": None, "noise_pct": None}]
    assert "- tp1 4096/64 conc 4: tput_per_gpu -12.5% (noise band ±4.0%)" in body["text"]
    assert "- tp2 4096/64 conc 8: status now failing" in body["text"]
    assert "Authorization" not in sink.received[0]["headers"]  # no password on the connection: no token sent


def test_alerts_are_off_by_default_and_follow_the_events_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not NotifySettings().wants("failure")  # no channel
    with http_sink() as sink:
        monkeypatch.setenv(*conn_env("infersweep_webhook", conn_type="http", host=sink.url))
        only_regressions = NotifySettings.model_validate({"on": ["regression"], "webhook": {}})
        assert deliver(only_regressions, failure_alert(_failed_verdict())) == {}
    assert sink.received == []


def _sweep_file(tmp_path: Path, notify_yaml: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(sim_sweep(KEY, isl=256, osl=32, points=["{ tp: 1, conc-list: [1] }"], nodes=["n0"]) + notify_yaml)
    return path


def test_sweep_file_notify_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from infersweep.airflow.dagspec import dag_specs
    from infersweep.airflow.factory import build_sweep_dag
    from infersweep.airflow.settings import AirflowSettings

    # YAML 1.1 reads a bare `on` key as true; the block still means `on`.
    path = _sweep_file(tmp_path, "notify:\n  on: [failure, stuck_node]\n"
                                 "  smtp: {conn-id: team_smtp, to: [oncall@example.com]}\n  timeout-s: 5\n")
    notify = load_sweep([path]).settings_for(KEY).notify
    assert notify is not None and notify.on == ("failure", "stuck_node") and notify.timeout_s == 5
    assert notify.smtp is not None and notify.smtp.conn_id == "team_smtp" and notify.webhook is None
    [spec] = dag_specs(load_sweep([path]))
    dag = build_sweep_dag(spec, AirflowSettings.from_env())
    assert isinstance(dag.on_failure_callback, InfersweepNotifier)
    assert dag.on_failure_callback.notify_settings == notify
    # The report DAG finds the block of the file that defines a DAG (through the parse cache).
    monkeypatch.setenv("INFERSWEEP_CONFIGS", str(path))
    monkeypatch.setenv("INFERSWEEP_WORK_DIR", str(tmp_path / "work"))
    assert notify_settings_for(KEY) == notify and notify_settings_for("no-such-dag") is None

    # Default: no block, no callback.
    [plain] = dag_specs(load_sweep([_sweep_file(tmp_path, "")]))
    assert plain.notify is None and build_sweep_dag(plain, AirflowSettings.from_env()).on_failure_callback is None

    # Secrets are not accepted in the YAML: the error names the file, the key path and the allowed keys.
    with pytest.raises(ConfigError) as err:
        load_sweep([_sweep_file(tmp_path, "notify:\n  smtp: {to: [a@example.com], password: hunter2}\n")])
    assert "notify.smtp.password: unknown key 'password' (allowed: conn-id, from, to)" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_airflow_notifier_callback_sends_the_stored_verdict(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    store = ResultStore(dag_id=KEY, run_id=RUN, url=url, spool_path=tmp_path / "spool.jsonl")
    store.start_run(trigger_kind="manual", config_key=KEY, image_tag=IMAGE, engine="sim")
    for gid, tp in (("g-tp1", 1), ("g-tp2", 2)):
        store.record_group({"id": gid, "config_key": KEY, "tp": tp, "ep": 1, "isl": 256, "osl": 32, "concs": [1, 2]},
                           status="planned")
    for conc in (1, 2):
        store.record_benchmark(group_id="g-tp1", isl=256, osl=32, conc=conc)
    store.fail_group("g-tp2", ClassifiedError("kv_cache_oom", "No available memory for the cache blocks"),
                     concs=[1, 2], isl=256, osl=32)
    store.finish_run()
    monkeypatch.setenv("INFERSWEEP_DB_URL", url)
    monkeypatch.setenv("INFERSWEEP_WORK_DIR", str(tmp_path / "work"))
    with http_sink() as sink:
        monkeypatch.setenv(*conn_env("infersweep_webhook", conn_type="http", host=f"{sink.url}/hook",
                                     password=HOOK_TOKEN))
        notifier = InfersweepNotifier(notify={"webhook": {"conn-id": "infersweep_webhook"}})
        # Airflow calls the DAG's on_failure_callback with the run's context (dag-processor or dag.test).
        notifier({"dag_run": SimpleNamespace(dag_id=KEY, run_id=RUN), "reason": "task_failure"})
    body = sink.received[0]["json"]
    assert body["failed_points"] == {"kv_cache_oom": 2} and body["images"] == [IMAGE]
    assert body["reasons"] == ["2 of 4 points failed: kv_cache_oom×2"]
    _secrets_absent(caplog, capfd, HOOK_TOKEN)
