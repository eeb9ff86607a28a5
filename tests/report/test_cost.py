"""Cost and energy per token on the frontier: $/Mtok from the inventory's (or the report's) cost per GPU-hour,
J/token from telemetry, through the store, result files, text, HTML, JSON and the CLI."""

from __future__ import annotations

import json

import orjson
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from infersweep.cli import app
from infersweep.report import store_source as src
from infersweep.report.data import (
    COST_FROM_INVENTORY,
    COST_FROM_REPORT,
    apply_costs,
    parse_cost_option,
    raw_cost_energy,
    usd_per_mtok,
)
from infersweep.report.html import render_report
from infersweep.report.json_source import dump_points, load_file
from infersweep.report.summary import cost_frontiers, frontiers_json
from infersweep.report.text import cost_frontier_table
from infersweep.store.models import BenchmarkResult

from .factories import pt
from .seed import seed

runner = CliRunner()


def raw(cost: float | None = None, jpt: float | None = None) -> dict[str, object]:
    """A raw client JSON with what the benchmark step adds: the node's cost and the telemetry's energy."""
    ext: dict[str, object] = {"energy": {"joules_per_token": jpt, "energy_j": 1.0}}
    if cost is not None:
        ext["cost_per_gpu_hour"] = cost
    return {"completed": 10, "infersweep": ext}


def frontier3(**kw: object) -> list:
    """Three points of one config key, all on the frontier (throughput falls as interactivity rises)."""
    return [pt(4, tput=600.0, intvty=90.0, **kw), pt(16, tput=1200.0, intvty=50.0, **kw),
            pt(64, tput=1800.0, intvty=20.0, **kw)]


def test_usd_per_mtok_formula():
    # $3.60 per GPU-hour at 500 output tok/s per GPU: 1.8 M tokens per GPU-hour, so $2.00 per M tokens.
    assert usd_per_mtok(3.6, 500.0) == pytest.approx(2.0)
    assert usd_per_mtok(2.0, 1000.0) == pytest.approx(2.0 / 3.6)
    assert usd_per_mtok(None, 500.0) is None and usd_per_mtok(3.6, None) is None
    assert usd_per_mtok(3.6, 0.0) is None and usd_per_mtok(3.6, float("nan")) is None


def test_per_gpu_cost_compares_across_topologies():
    """tp8 with the same output per GPU as tp2 costs the same per token: the price is per GPU."""
    tp2 = pt(8, tp=2, output_tput_per_gpu=400.0, cost_per_gpu_hour=3.6)
    tp8 = pt(8, tp=8, output_tput_per_gpu=400.0, cost_per_gpu_hour=3.6)
    assert tp2.usd_per_mtok_output == pytest.approx(2.5) and tp8.usd_per_mtok_output == pytest.approx(2.5)
    # the factory's output throughput is tput / 2, so 1000 tok/s/GPU total → 500 output → $2.00 at $3.60
    assert pt(8, tput=1000.0, cost_per_gpu_hour=3.6).usd_per_mtok_output == pytest.approx(2.0)


def test_raw_cost_energy_reads_the_benchmark_steps_keys():
    assert raw_cost_energy(raw(3.5, 0.25)) == (3.5, 0.25)
    assert raw_cost_energy(raw(None, None)) == (None, None)
    assert raw_cost_energy({"infersweep": {"cost_per_gpu_hour": -1, "energy": None}}) == (None, None)
    assert raw_cost_energy({"infersweep": {"cost_per_gpu_hour": True}}) == (None, None)
    assert raw_cost_energy(None) == (None, None) and raw_cost_energy({"x": 1}) == (None, None)


def test_cost_option_parsing_and_overrides():
    assert parse_cost_option(["h200=3.5", " b200 = 6 "]) == {"h200": 3.5, "b200": 6.0}
    for bad in ("h200", "h200=", "=3", "h200=abc", "h200=0", "h200=-1", "h200=inf"):
        with pytest.raises(ValueError, match="expected RUNNER=USD"):
            parse_cost_option([bad])
    stored = pt(8, cost_per_gpu_hour=2.0)
    other = pt(8, runner="b200", cost_per_gpu_hour=5.0)
    bare = pt(8, runner="mi355x")
    got = apply_costs([stored, other, bare], {"h200": 3.6})
    assert (got[0].cost_per_gpu_hour, got[0].cost_source) == (3.6, COST_FROM_REPORT)
    assert (got[1].cost_per_gpu_hour, got[1].cost_source) == (5.0, COST_FROM_INVENTORY)
    assert (got[2].cost_per_gpu_hour, got[2].cost_source) == (None, None)
    assert got[0].usd_per_mtok_output == pytest.approx(2.0)


def test_store_reads_cost_and_energy_from_the_raw_json(engine):
    seed(engine, frontier3())
    with engine.begin() as conn:
        conn.execute(update(BenchmarkResult).where(BenchmarkResult.conc == 4).values(raw=raw(3.6, 0.5)))
        conn.execute(update(BenchmarkResult).where(BenchmarkResult.conc == 16).values(raw=raw(None, 0.25)))
        # the conc 64 row keeps no raw JSON at all (older rows, InferenceX imports)
    by_conc = {p.conc: p for p in src.load_runs(engine, ["cfg/r1"])}
    assert (by_conc[4].cost_per_gpu_hour, by_conc[4].cost_source, by_conc[4].joules_per_token) == (3.6, "inventory", 0.5)
    assert by_conc[4].usd_per_mtok_output == pytest.approx(3.6 / (300.0 * 3600) * 1e6)  # output tput 600/2
    assert (by_conc[16].cost_per_gpu_hour, by_conc[16].joules_per_token) == (None, 0.25)
    assert by_conc[16].usd_per_mtok_output is None
    assert (by_conc[64].cost_per_gpu_hour, by_conc[64].joules_per_token, by_conc[64].cost_source) == (None, None, None)


def test_spool_and_reportpoint_files_carry_cost_energy_and_source(tmp_path):
    spool = tmp_path / "spool.jsonl"
    group = {"dag_id": "d", "run_id": "r", "group_id": "g", "config_key": "k", "model": "m", "runner": "h200",
             "framework": "vllm", "precision": "fp8", "tp": 2}
    bench = {"dag_id": "d", "run_id": "r", "group_id": "g", "isl": 1024, "osl": 128, "conc": 8, "status": "ok",
             "tput_per_gpu": 900.0, "output_tput_per_gpu": 100.0, "median_intvty": 40.0, "raw": raw(7.2, 1.5)}
    spool.write_text("\n".join(json.dumps({"kind": k, "data": d}) for k, d in (("group", group), ("benchmark", bench))))
    (p,) = load_file(spool)
    assert (p.cost_per_gpu_hour, p.cost_source, p.joules_per_token) == (7.2, COST_FROM_INVENTORY, 1.5)
    assert p.usd_per_mtok_output == pytest.approx(20.0)  # 7.2 / (100 × 3600) × 1e6
    # ReportPoint JSON round trips the cost, where it came from and the energy
    overridden = apply_costs([p], {"h200": 3.6})
    dump_points(overridden, tmp_path / "points.json")
    (back,) = load_file(tmp_path / "points.json")
    assert (back.cost_per_gpu_hour, back.cost_source, back.joules_per_token) == (3.6, COST_FROM_REPORT, 1.5)
    assert back.usd_per_mtok_output == pytest.approx(10.0)


def test_frontier_per_config_key_and_seq_len_with_cost_and_energy():
    pts = [*frontier3(cost_per_gpu_hour=3.6, cost_source="inventory", joules_per_token=0.4),
           pt(8, tput=500.0, intvty=30.0, cost_per_gpu_hour=3.6),               # dominated by conc 16
           *frontier3(config_key="other", dag_id="other", tp=8),                 # another config key, no cost
           pt(16, tput=1000.0, intvty=50.0, isl=8192, cost_per_gpu_hour=3.6)]   # another ISL
    groups = cost_frontiers(pts)
    assert [(g.config_key, g.isl, g.osl, [p.conc for p in g.points]) for g in groups] == [
        ("cfg", 1024, 1024, [64, 16, 4]), ("cfg", 8192, 1024, [16]), ("other", 1024, 1024, [64, 16, 4])]
    first = groups[0].to_dict()["points"]
    # output throughput per GPU is 900, 600, 300 → $3.60 / (x × 3600) × 1e6
    assert [r["usd_per_mtok_output"] for r in first] == pytest.approx([1000 / 900, 1000 / 600, 1000 / 300])
    assert [r["joules_per_token"] for r in first] == [0.4, 0.4, 0.4]
    assert {r["cost_source"] for r in first} == {"inventory"}
    assert all(r["usd_per_mtok_output"] is None for r in groups[2].to_dict()["points"])


def test_text_table_shows_usd_and_joules_and_the_cost_source():
    pts = apply_costs(frontier3(joules_per_token=0.4, cost_per_gpu_hour=1.0), {"h200": 3.6})
    text = cost_frontier_table(pts)
    assert "Frontier cost and energy: cfg 1024/1024" in text
    lines = {line.split()[4]: line for line in text.splitlines() if line.startswith("h200 vllm fp8 tp4")}
    assert set(lines) == {"4", "16", "64"}
    assert lines["64"].split()[-2:] == ["1.11", "0.4"]   # $1000/900 per Mtok, 0.4 J/token
    assert lines["4"].split()[-2:] == ["3.33", "0.4"]
    assert "h200 $3.6/GPU-h (--cost-per-gpu-hour)" in text and "one GPU of the topology" in text
    assert "No cost per GPU-hour" in cost_frontier_table(frontier3())


def test_html_frontier_table_has_usd_and_joules_at_every_frontier_point():
    pts = [*frontier3(cost_per_gpu_hour=3.6, cost_source="inventory", joules_per_token=0.4),
           pt(8, tput=500.0, intvty=30.0, cost_per_gpu_hour=3.6)]
    page = render_report(pts, plotly_js="")
    table = page.split('id="frontier-cost-0-0"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 4  # header + the three frontier points, not the dominated one
    assert table.count('<td class="usd"') == 3 and table.count('<td class="jpt">0.4</td>') == 3
    for usd in ("1.111", "1.667", "3.333"):
        assert f">{usd}</td>" in table
    assert "h200: $3.6/GPU-h (inventory)" in page


def test_cli_cost_override_text_and_json(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    dump_points([*frontier3(cost_per_gpu_hour=1.0, cost_source="inventory", joules_per_token=0.4),
                 *frontier3(runner="b200", config_key="b", dag_id="b", cost_per_gpu_hour=5.0)], results / "run.json")
    out, js = tmp_path / "r.html", tmp_path / "f.json"
    res = runner.invoke(app, ["report", "--results-dir", str(results), "--out", str(out),
                              "--cost-per-gpu-hour", "h200=3.6", "--json", str(js)])
    assert res.exit_code == 0, res.output
    assert "b200 $5/GPU-h (inventory); h200 $3.6/GPU-h (--cost-per-gpu-hour)" in res.output
    data = orjson.loads(js.read_bytes())
    assert data["cost_per_gpu_hour"] == {"b200": {"usd": 5.0, "source": "inventory"},
                                         "h200": {"usd": 3.6, "source": "--cost-per-gpu-hour"}}
    h200 = next(f for f in data["frontiers"] if f["config_key"] == "cfg")
    assert [p["usd_per_mtok_output"] for p in h200["points"]] == pytest.approx([1000 / 900, 1000 / 600, 1000 / 300])
    assert data == frontiers_json(apply_costs(load_file(results / "run.json"), {"h200": 3.6}))
    bad = runner.invoke(app, ["report", "--results-dir", str(results), "--out", str(out), "--cost-per-gpu-hour", "h200"])
    assert bad.exit_code == 2 and "expected RUNNER=USD" in bad.output
