"""`infersweep report` and `infersweep report compare` end to end (files and a SQLite store)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from infersweep.cli import app
from infersweep.report.json_source import dump_points
from infersweep.report.sample import sample_points

from .factories import pt
from .seed import seed, store_engine

runner = CliRunner()


def test_report_from_results_dir(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    dump_points(sample_points(seq_lens=((1024, 1024),)), results / "run.json")
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", "--results-dir", str(results), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "34/35 points green" in res.output and "kv_cache_oom: 1" in res.output
    assert out.stat().st_size > 3_000_000 and "Pareto frontier" in out.read_text()


def test_report_from_store_with_run_selection(tmp_path, sqlite_url):
    seed(store_engine(sqlite_url), [pt(8, run="r1"), pt(16, run="r1", status="failed"), pt(8, run="r2")])
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", "--db", sqlite_url, "--run", "cfg/r1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "1/2 points green" in res.output
    assert "cfg/r1" in out.read_text() and "cfg/r2" not in out.read_text()


def test_report_errors_are_one_clear_line(tmp_path, sqlite_url):
    store_engine(sqlite_url)
    res = runner.invoke(app, ["report", "--db", sqlite_url, "--run", "nope", "--out", str(tmp_path / "x.html")])
    assert res.exit_code == 2 and "no run matches 'nope'" in res.output
    assert not (tmp_path / "x.html").exists()  # nothing half-written
    res = runner.invoke(app, ["report", "--db", "mysql://x/y", "--out", str(tmp_path / "x.html")])
    assert res.exit_code == 2 and "not supported" in res.output


def test_compare_fail_on_regression_exits_1_with_the_table(tmp_path, sqlite_url):
    seed(store_engine(sqlite_url), [
        *(pt(c, run="base", image="img:a", tput=1000.0) for c in (4, 8)),
        pt(4, run="head", image="img:b", tput=1000.0), pt(8, run="head", image="img:b", tput=700.0),
    ])
    out = tmp_path / "cmp.html"
    js = tmp_path / "gate.json"
    args = ["report", "compare", "--db", sqlite_url, "--base", "img:a", "--head", "cfg/head", "--out", str(out),
            "--json", str(js)]
    res = runner.invoke(app, [*args, "--fail-on-regression"])
    assert res.exit_code == 1, res.output
    assert "REGRESSION" in res.output and "conc=8" in res.output and "-30.0%!" in res.output
    assert "gate FAIL" in res.output
    assert out.exists() and json.loads(js.read_text())["regressions"] == 1
    assert runner.invoke(app, args).exit_code == 0  # without the flag it reports but does not fail


def test_compare_passes_within_noise_floor(tmp_path):
    base, head = tmp_path / "base.json", tmp_path / "head.json"
    dump_points([pt(c, tput=1000.0) for c in (4, 8)], base)
    dump_points([pt(c, run="r2", tput=960.0) for c in (4, 8)], head)
    res = runner.invoke(app, ["report", "compare", "--base", str(base), "--head", str(head), "--fail-on-regression"])
    assert res.exit_code == 0, res.output
    assert "gate PASS" in res.output
    res = runner.invoke(app, ["report", "compare", "--base", str(base), "--head", str(head), "--fail-on-regression",
                              "--noise-floor", "0.01"])
    assert res.exit_code == 1


def test_compare_with_unknown_selector_or_nothing_in_common(tmp_path, sqlite_url):
    seed(store_engine(sqlite_url), [pt(8, run="r1"), pt(16, run="r2", config_key="other")])
    res = runner.invoke(app, ["report", "compare", "--db", sqlite_url, "--base", "zzz", "--head", "r1"])
    assert res.exit_code == 2 and "'zzz' matches no run" in res.output
    res = runner.invoke(app, ["report", "compare", "--db", sqlite_url, "--base", "r1", "--head", "r2",
                              "--fail-on-regression"])
    assert res.exit_code == 2 and "gate NO DATA" in res.output


def test_store_without_schema_is_one_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    res = runner.invoke(app, ["report", "--db", url, "--out", str(tmp_path / "x.html")])
    assert res.exit_code == 2
    assert "cannot read the results store" in res.output and "infersweep db upgrade" in res.output
