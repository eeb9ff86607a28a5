"""`infersweep report history` on a SQLite store holding 7 nightly runs over 3 images, one a backfill."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from infersweep.cli import app
from infersweep.report.history import History

from .history_sample import CONFIG_KEY, NIGHTS, V12, seed_history
from .seed import store_engine

runner = CliRunner()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    # read-only tests: one seeded store for the module
    sqlite_url = f"sqlite:///{tmp_path_factory.mktemp('history') / 'results.sqlite'}"
    engine = store_engine(sqlite_url)
    seed_history(engine)
    engine.dispose()
    return sqlite_url


def _rows(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("2026-11-")]


def test_text_history_orders_by_logical_date_and_marks_the_regressing_image(db):
    res = runner.invoke(app, ["report", "history", "--config-key", CONFIG_KEY, "--db", db])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"History of {CONFIG_KEY}: 7 runs, ordered by logical date.")
    assert res.output.count("[SIMULATED]") == 3  # tp2, tp4, tp8
    for block in res.output.split("\n\n")[1:4]:
        rows = _rows(block)
        days = [r[:10] for r in rows]
        assert days == sorted(days) and len(rows) == 7
        assert "(backfill)" in rows[2] and rows[2].startswith("2026-11-22")  # ran on the 26th, sits on the 22nd
        assert rows[0].endswith("first")
        assert V12 in rows[5] and rows[5].endswith("REGRESSION") and "!" in rows[5]
        assert not any(r.endswith("REGRESSION") for i, r in enumerate(rows) if i != 5)
    regressions = res.output.split("Regressions (")[1].splitlines()[1:]
    assert len(regressions) == 3 and all(f"2026-11-25 02:00 {V12} vs 2026-11-24 02:00: @" in r for r in regressions)


def test_since_and_levels(db):
    res = runner.invoke(app, ["report", "history", "--config-key", CONFIG_KEY, "--db", db, "--since", "2026-11-24",
                              "--level", "40", "--level", "20"])
    assert res.exit_code == 0, res.output
    assert "3 runs since 2026-11-24" in res.output
    assert "tput/GPU @20 tok/s/user  tput/GPU @40 tok/s/user" in res.output
    rows = _rows(res.output)
    assert {r[:10] for r in rows} == {"2026-11-24", "2026-11-25", "2026-11-26"}


def test_json_is_the_history_model(db, tmp_path):
    res = runner.invoke(app, ["report", "history", "--config-key", CONFIG_KEY, "--db", db, "--format", "json"])
    assert res.exit_code == 0, res.output
    history = History.model_validate(json.loads(res.output))
    assert [r.run_id[-25:-15] for r in history.runs] == [f"2026-11-{d}" for d in range(20, 27)]
    assert {t.topology for t in history.topologies} == {"tp2", "tp4", "tp8"}
    assert {r.image for r in history.regressions()} == {V12}
    out = tmp_path / "h.json"
    res = runner.invoke(app, ["report", "history", "--config-key", CONFIG_KEY, "--db", db, "--format", "json",
                              "--out", str(out)])
    assert res.exit_code == 0 and History.model_validate_json(out.read_text()) == history


def test_html_page_with_charts(db, tmp_path):
    out = tmp_path / "history.html"
    res = runner.invoke(app, ["report", "history", "--config-key", CONFIG_KEY, "--db", db, "--format", "html",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "regression(s); history:" in res.output
    page = out.read_text()
    for i in range(3):
        assert f'id="history-{i}-levels"' in page and f'id="history-{i}-frontiers"' in page
    assert "Plotly.newPlot" in page and " src=" not in page  # plotly inlined, nothing fetched
    assert "noise band @" in page and "pareto-frontier-run-6" in page and "SIMULATED ENGINE" in page


def test_errors_are_one_clear_line(db):
    res = runner.invoke(app, ["report", "history", "--config-key", "nope", "--db", db])
    assert res.exit_code == 2 and "no results for config key 'nope'" in res.output
    res = runner.invoke(app, ["report", "history", "--config-key", CONFIG_KEY, "--db", db, "--since", "yesterday"])
    assert res.exit_code == 2 and "'yesterday' is not a date" in res.output
    res = runner.invoke(app, ["report", "history", "--config-key", CONFIG_KEY, "--db", db, "--since", "2027-01-01"])
    assert res.exit_code == 2 and "since 2027-01-01" in res.output


def test_the_store_loader_orders_by_logical_date_and_keeps_the_baselines_before_a_window(db):
    from infersweep.report.history import history_runs, parse_since
    from infersweep.store.db import get_engine

    engine = get_engine(db)
    # started on the 26th, after every other run, yet third: its logical date is the 22nd
    assert [run.run_id for _, run in history_runs(engine, CONFIG_KEY)] == [n[0] for n in NIGHTS]
    window = history_runs(engine, CONFIG_KEY, since=parse_since("2026-11-24"), lead=1)
    assert [run.run_id for _, run in window] == [n[0] for n in NIGHTS[3:]]  # the 23rd is the 24th's baseline
    assert history_runs(engine, CONFIG_KEY, since=parse_since("2027-01-01")) == []
    assert history_runs(engine, "nope") == []
