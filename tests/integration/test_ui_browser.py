"""The Airflow UI driven in headless Chromium as a new user would, against the real stack.

One stack (api-server, scheduler, dag-processor, triggerer on Postgres, the project's DAG file and plugin;
the one shared with the other integration modules, see tests/integration/conftest.py) and one browser (the
machine's Chromium through Playwright, nothing downloaded). In order: log in, read the trigger form, trigger
a run through it, try invalid input, follow the run to its results and the report pages, and see the report
DAG run that the run's results asset starts.

The pictures are checked on every run and written to docs/img/ (the README shows them) only with
INFERSWEEP_UPDATE_SCREENSHOTS=1, so a test run leaves the work tree clean.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from infersweep.report.browser import CHROMIUM_FLAGS, PLOTS_READY, find_chromium, unavailable_reason
from tests.airflow.harness import sim_sweep
from tests.integration.airflow_services import ROOT, AirflowStack, SharedAirflow, StackPart

pytestmark = pytest.mark.integration

KEY = "ui-bf16-sim-h100-vllm"
#: Results of another sweep DAG, written straight into the results store: "all sweeps" shows them, the
#: Pareto tab of KEY must not.
OTHER = "other-bf16-sim-h100-vllm"
SEQ = "1024_32"
SWEEP = sim_sweep(KEY, isl=1024, osl=32, points=["{ tp: 1, conc-list: [1, 2, 4] }", "{ tp: 2, conc-list: [1, 2] }"],
                  nodes=["ui-node-0"], sim_yaml="{ time-scale: 50 }")
AIRFLOW_STACK = StackPart(configs={"ui.yaml": SWEEP})
#: What the test picks on the form: one scenario, one TP, two of its concurrencies.
CHOICES = {"seq_lens": [SEQ], "tp": ["2"], "concs": ["1", "2"]}
IMG = ROOT / "docs" / "img"
UPDATE_IMG = os.environ.get("INFERSWEEP_UPDATE_SCREENSHOTS") == "1"
MULTI = "Select one or multiple values"  # the aria-label of Airflow's multi-select (FieldMultiSelect)
PAGE_TIMEOUT_MS = 60_000  # per browser step; generous because the 2-core CI box also runs four services


def _pg_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def _wait(what: str, probe: Callable[[], Any], timeout: float, logs: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(2)
    raise AssertionError(f"{what} not seen in {timeout:.0f} s\n{logs()}")


class UI:
    """The shared stack, a REST client on it, and one logged-in browser page."""

    def __init__(self, stack: AirflowStack, rest: httpx.Client, page: Any) -> None:
        self.stack, self.rest, self.page = stack, rest, page
        self.console_errors: list[str] = []
        page.on("console", lambda m: self.console_errors.append(f"{m.type}: {m.text} ({m.location.get('url')})")
                if m.type in {"error", "assert"} else None)
        page.on("pageerror", lambda exc: self.console_errors.append(f"uncaught: {exc}"))
        self.form_run: dict[str, Any] | None = None

    def url(self, path: str) -> str:
        return f"{self.stack.base_url}{path}"

    def get(self, path: str, **params: Any) -> Any:
        """JSON of a REST v2 GET. Retried once on a timeout: on the 2-core box the api-server shares the CPU
        with the scheduler and the run's tasks, and a read can stall past the client's deadline."""
        try:
            response = self.rest.get(path, params=params)
        except httpx.TimeoutException:
            response = self.rest.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def dag(self) -> dict[str, Any]:
        return dict(self.get(f"/dags/{KEY}/details"))

    def runs(self, dag_id: str = KEY) -> list[dict[str, Any]]:
        return list(self.get(f"/dags/{dag_id}/dagRuns", limit=100)["dag_runs"])

    def open_trigger_form(self) -> None:
        self.page.goto(self.url(f"/dags/{KEY}"), timeout=PAGE_TIMEOUT_MS)
        self.page.get_by_role("button", name="Trigger").first.click()
        self.page.get_by_text("Run Parameters").wait_for(timeout=PAGE_TIMEOUT_MS)
        self.page.locator("#element_seq_lens").wait_for(timeout=PAGE_TIMEOUT_MS)

    def row(self, name: str) -> Any:
        """The form row of one Param (Chakra field root holding its label, widget and description)."""
        label = self.page.locator("label[data-part=label]").filter(has_text=re.compile(rf"^{re.escape(name)}\s*\*?$"))
        return self.page.locator("[data-part=root][role=group]").filter(has=label)

    def pick(self, name: str, values: list[str]) -> None:
        for value in values:
            self.page.locator(f"#element_{name}").click()
            self.page.get_by_role("option", name=value, exact=True).click()

    def options(self, name: str) -> list[str]:
        self.page.locator(f"#element_{name}").click()
        texts = [t.strip() for t in self.page.get_by_role("option").all_inner_texts()]
        self.close_menu()
        return texts

    def close_menu(self) -> None:
        # A click on the dialog's title blurs the select (Escape could reach the dialog and close it).
        self.page.get_by_role("dialog").get_by_role("heading").first.click()

    def save(self, target: Any, name: str) -> None:
        """Screenshot `target` (page or element) to docs/img/NAME, kept small enough for the README."""
        from infersweep.report.browser import png_info

        data = target.screenshot(type="png", timeout=PAGE_TIMEOUT_MS)
        width, _height, distinct = png_info(data)
        assert len(data) < 300_000 and width >= 800 and distinct > 50, (name, len(data), width, distinct)
        if UPDATE_IMG:
            IMG.mkdir(parents=True, exist_ok=True)
            (IMG / name).write_bytes(data)


@pytest.fixture(scope="module")
def ui(shared_airflow: SharedAirflow) -> Iterator[UI]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    if not _pg_up():
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with ExitStack() as stack_cm:
        pw = stack_cm.enter_context(sync_playwright())
        try:
            browser = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=list(CHROMIUM_FLAGS),
                                         timeout=PAGE_TIMEOUT_MS)
        except PlaywrightError as exc:
            pytest.skip(f"chromium did not start: {exc.message}")
        stack_cm.callback(browser.close)
        try:
            stack = shared_airflow.stack()
        except RuntimeError as exc:  # the services never became healthy (the message carries their logs)
            pytest.skip(f"the Airflow stack did not start: {str(exc)[:2000]}")
        rest = stack_cm.enter_context(httpx.Client(
            base_url=f"{stack.base_url}/api/v2", headers={"Authorization": f"Bearer {stack.token()}"}, timeout=60))

        def both_dags() -> bool:
            dags = rest.get("/dags", params={"limit": 100}).json()["dags"]
            return {KEY, "infersweep_report"} <= {d["dag_id"] for d in dags}

        _wait("the sweep DAG and the report DAG", both_dags, 240, stack.logs)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        yield UI(stack, rest, page)


def test_a_new_user_logs_in_and_the_form_shows_every_param(ui: UI) -> None:
    page = ui.page
    page.goto(ui.url("/"), timeout=PAGE_TIMEOUT_MS)
    page.wait_for_url(re.compile(r"/auth/login"))  # no session yet: the UI sends the user to its login page
    password = (ui.stack.home / "simple_auth_manager_passwords.json.generated").read_text()
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(json.loads(password)["admin"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda u: "/auth/login" not in u)
    page.get_by_role("link", name="Dags").first.wait_for()

    params = ui.dag()["params"]
    ui.open_trigger_form()
    dialog = page.get_by_role("dialog")
    for name, param in params.items():
        row = ui.row(name)
        assert row.count() == 1, f"no form row for {name}"
        helper = row.locator("[data-part=helper-text]").inner_text().strip()
        assert helper == param["description"], name  # every Param with its description
        schema = param["schema"]
        if isinstance(schema.get("examples"), list):  # arrays of allowed values
            assert row.locator(f'input[role=combobox][aria-label="{MULTI}"]').count() == 1, f"{name}: not a multi-select"
            assert ui.options(name) == [str(v) for v in schema["examples"]], name
        elif "enum" in schema:  # single choices
            combo = row.locator("input[role=combobox]")
            assert combo.count() == 1 and combo.get_attribute("aria-label") != MULTI, f"{name}: not a select"
            assert ui.options(name) == [str(v) for v in schema["enum"]], name
        elif schema.get("type") == "boolean":
            assert row.locator(f'[id="switch:element_{name}"] input[type=checkbox]').count() == 1, name
        else:
            assert page.locator(f"input#element_{name}").count() == 1, f"{name}: not a text field"
    assert {"seq_lens", "tp", "ep", "concs"} <= {n for n, p in params.items() if "examples" in p["schema"]}
    assert {"engine", "dp_attn"} <= {n for n, p in params.items() if "enum" in p["schema"]}
    text = dialog.inner_text()
    assert "['" not in text and "[]" not in text  # no Python reprs, no raw JSON editors
    ui.pick("tp", ["2"])
    ui.pick("concs", ["1", "2"])
    ui.close_menu()
    ui.save(page, "trigger-form.png")


def _form_run(ui: UI) -> dict[str, Any]:
    """Trigger KEY through the form with CHOICES (once per module); the run as the API answered it."""
    if ui.form_run is None:
        ui.open_trigger_form()
        for name, values in CHOICES.items():
            ui.pick(name, values)
        with ui.page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith(f"/dags/{KEY}/dagRuns"),
                                     timeout=PAGE_TIMEOUT_MS) as answer:
            ui.page.get_by_test_id("trigger-dag-submit").click()
        assert answer.value.status == 200, answer.value.text()
        ui.form_run = dict(answer.value.json())
    return ui.form_run


def test_a_trigger_from_the_form_runs_exactly_the_chosen_values(ui: UI) -> None:
    defaults = {name: p["value"] for name, p in ui.dag()["params"].items()}
    run = _form_run(ui)
    stored = ui.get(f"/dags/{KEY}/dagRuns/{run['dag_run_id']}")
    assert stored["triggered_by"] == "ui"
    # Airflow's multi-select sends each choice as the option's string (`String(value)`); the schema takes
    # "2" for 2 and the plan reads ints (checked on the results below).
    assert stored["conf"] == {**defaults, **CHOICES}


def test_invalid_input_is_refused_in_the_form(ui: UI) -> None:
    from playwright.sync_api import expect  # waits for the UI to re-render, up to its deadline

    page = ui.page
    before = len(ui.runs())
    ui.open_trigger_form()
    submit = page.get_by_test_id("trigger-dag-submit")
    # A TP the config does not have: the multi-select offers only the allowed values and adds nothing else.
    page.locator("#element_tp").click()
    page.keyboard.type("3")
    page.get_by_text("No options").wait_for()
    page.keyboard.press("Enter")
    ui.close_menu()
    expect(page.locator("#element_tp")).to_have_text(MULTI)
    # Emptying a required choice: the field says so and Trigger is disabled.
    page.locator('#element_engine button[aria-label="Clear selected options"]').click()
    expect(ui.row("engine").get_by_text("This field is required")).to_be_visible()
    expect(submit).to_be_disabled()
    page.locator("#element_engine").click()
    page.get_by_role("option", name="sim", exact=True).click()
    expect(submit).to_be_enabled()
    # A free-text value that breaks its pattern: the form has no pattern check, so the API refuses it and
    # the dialog shows why at its top; no run is created.
    page.locator("#element_image").fill("vllm/vllm-openai")
    submit.click()
    page.get_by_role("dialog").get_by_text("Invalid input for param image").wait_for()
    page.keyboard.press("Escape")
    assert len(ui.runs()) == before


def _finished_form_run(ui: UI) -> dict[str, Any]:
    run_id = _form_run(ui)["dag_run_id"]
    state = _wait(f"run {run_id} finishing", lambda: (
        s if (s := ui.get(f"/dags/{KEY}/dagRuns/{run_id}")["state"]) in ("success", "failed") else None),
        420, ui.stack.logs)
    assert state == "success", ui.stack.logs()
    return dict(ui.get(f"/dags/{KEY}/dagRuns/{run_id}"))


def test_the_run_measures_only_the_chosen_points(ui: UI) -> None:
    from sqlalchemy import create_engine, text

    run = _finished_form_run(ui)
    engine = create_engine(ui.stack.results_url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            params = conn.execute(text("SELECT params FROM runs WHERE dag_id = :d AND run_id = :r"),
                                  {"d": KEY, "r": run["dag_run_id"]}).scalar_one()
            points = conn.execute(text(
                "SELECT b.tp, b.conc, b.status FROM benchmark_results b JOIN runs r ON r.id = b.run_pk "
                "WHERE r.dag_id = :d AND r.run_id = :r"), {"d": KEY, "r": run["dag_run_id"]}).all()
    finally:
        engine.dispose()
    # The plan read the form's strings as the config's ints.
    assert (params["seq_lens"], params["tp"], params["concs"]) == ([SEQ], [2], [1, 2])
    assert sorted(points) == [(2, 1, "ok"), (2, 2, "ok")]


def _seed_other_dag(ui: UI) -> None:
    from infersweep.store.db import make_engine
    from tests.report.factories import pt
    from tests.report.seed import seed

    engine = make_engine(ui.stack.results_url)
    try:
        seed(engine, [pt(8, run="other_1", dag_id=OTHER, config_key=OTHER, engine="sim")])
    finally:
        engine.dispose()


def _report_frame(ui: UI, src: str) -> Any:
    """The plugin page's frame (the UI embeds external views as an iframe with the plugin's relative href),
    once its charts are drawn."""
    iframe = ui.page.locator(f'iframe[src="{src}"]')
    iframe.wait_for(timeout=PAGE_TIMEOUT_MS)
    frame = iframe.element_handle(timeout=PAGE_TIMEOUT_MS).content_frame()
    assert frame is not None, src
    frame.wait_for_load_state("load", timeout=PAGE_TIMEOUT_MS)
    frame.wait_for_function(PLOTS_READY, timeout=PAGE_TIMEOUT_MS)
    return frame


def test_sweep_reports_and_the_pareto_tab_render_in_the_ui(ui: UI) -> None:
    run = _finished_form_run(ui)
    _seed_other_dag(ui)
    page = ui.page
    page.goto(ui.url("/"), timeout=PAGE_TIMEOUT_MS)
    page.get_by_role("link", name="Dags").first.wait_for()
    ui.console_errors.clear()

    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Sweep reports").click()
    page.wait_for_url(re.compile(r"/plugin/infersweep-reports$"))
    frame = _report_frame(ui, "infersweep/")
    everything = frame.locator("body").inner_text()
    assert "infersweep: all sweeps" in everything
    assert f"{KEY}/{run['dag_run_id']}" in everything and f"{OTHER}/other_1" in everything
    ui.save(page, "sweep-reports.png")

    page.goto(ui.url(f"/dags/{KEY}"), timeout=PAGE_TIMEOUT_MS)
    page.get_by_role("link", name="Pareto report").click()
    page.wait_for_url(re.compile(rf"/dags/{re.escape(KEY)}/plugin/infersweep-dag-report$"))
    frame = _report_frame(ui, f"infersweep/?dag_id={KEY}")
    tab = frame.locator("body").inner_text()
    assert f"infersweep: {KEY}" in tab and "all sweeps" not in tab  # not the page built first for "/"
    assert f"{KEY}/{run['dag_run_id']}" in tab and OTHER not in tab  # that DAG's runs only
    ui.save(page, "pareto-tab.png")
    assert ui.console_errors == []


def test_after_a_sweep_run_a_report_run_follows_on_its_own(ui: UI) -> None:
    run = _finished_form_run(ui)

    def sources(report_run_id: str) -> set[tuple[str, str]]:
        events = ui.get(f"/dags/infersweep_report/dagRuns/{report_run_id}/upstreamAssetEvents")
        return {(e["source_dag_id"], e["source_run_id"]) for e in events["asset_events"]}

    def report_run() -> dict[str, Any] | None:
        # On the shared stack other sweeps' runs start report runs too: the one that follows this run is the
        # one whose upstream asset events include it.
        runs = [r for r in ui.runs("infersweep_report") if r["run_type"] == "asset_triggered"
                and r["state"] in ("success", "failed") and (KEY, run["dag_run_id"]) in sources(r["dag_run_id"])]
        return runs[0] if runs else None

    follower = _wait("an asset-triggered infersweep_report run", report_run, 240, ui.stack.logs)
    assert follower["state"] == "success", ui.stack.logs()
    assert (KEY, run["dag_run_id"]) in sources(follower["dag_run_id"])
