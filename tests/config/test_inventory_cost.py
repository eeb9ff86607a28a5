"""`cost-per-gpu-hour` on inventory nodes: the key, its bounds, and that the nodes of one runner label agree."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import pytest

from infersweep.config import sweep as sweep_module
from infersweep.config.errors import ConfigError
from infersweep.config.inventory import COST_KEY, Node, label_cost_problem, label_costs
from infersweep.config.schema_errors import redacted_values
from infersweep.config.sweep import load_sweep

#: The cross-node check runs in the sweep loader, which calls `label_cost_problem` for every node it adds.
HOOKED = "label_cost_problem" in inspect.getsource(sweep_module)
needs_hook = pytest.mark.skipif(not HOOKED, reason="the sweep loader (config/sweep.py) does not call "
                                "inventory.label_cost_problem yet")


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def messages(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_sweep([path])
    return [str(i) for i in info.value.issues]


def node(name: str, cost: float | None, runner: str = "h200") -> Node:
    raw: dict[str, object] = {"name": name, "runner": runner}
    if cost is not None:
        raw[COST_KEY] = cost
    return Node.model_validate(raw)


def test_key_is_read_from_yaml_and_is_optional(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", """\
        sweep: s
        inventory:
          h200:
          - {name: a, cost-per-gpu-hour: 3.5}
          - {name: b, cost-per-gpu-hour: 3.5}
          h100:
          - {name: c}
        """)
    sweep = load_sweep([path])
    assert [n.cost_per_gpu_hour for n in sweep.nodes_for("h200")] == [3.5, 3.5]
    assert sweep.nodes_for("h100")[0].cost_per_gpu_hour is None
    assert label_costs(sweep.inventory) == {"h200": 3.5}


KEY = "s.yaml:5: inventory.h200[0].cost-per-gpu-hour: "
ABOVE_ZERO = "US dollars per GPU-hour (leave the key out when the cost is unknown) (allowed: a value > 0 and <= 1,000)"
AT_MOST = "US dollars per GPU-hour (per GPU, not per node) (allowed: a value > 0 and <= 1,000)"
NUMBER = "(allowed: a number > 0, e.g. 3.5)"


@pytest.mark.parametrize(("value", "expected"), [
    ("0", f"must be greater than 0, got 0: {ABOVE_ZERO}"),
    ("-2", f"must be greater than 0, got -2: {ABOVE_ZERO}"),
    ("5000", f"must be at most 1,000, got 5000: {AT_MOST}"),
    (".inf", f"must be at most 1,000, got inf: {AT_MOST}"),
    (".nan", f"must be at most 1,000, got nan: {AT_MOST}"),
    ("'3.5'", f"must be a number of US dollars per GPU-hour, got a string {NUMBER}"),
    ("true", f"must be a number of US dollars per GPU-hour, got true/false {NUMBER}"),
])
def test_bad_values_name_file_line_key_path_and_fix(tmp_path: Path, value: str, expected: str) -> None:
    path = write(tmp_path / "s.yaml", f"sweep: s\ninventory:\n  h200:\n  - name: a\n    cost-per-gpu-hour: {value}\n")
    assert messages(path) == [f"{tmp_path}/{KEY}{expected}"]


def test_misspelt_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "sweep: s\ninventory:\n  h200:\n  - {name: a, cost-per-gpu-hr: 3}\n")
    (msg,) = messages(path)
    assert "inventory.h200[0].cost-per-gpu-hr: unknown key 'cost-per-gpu-hr'" in msg
    assert "did you mean 'cost-per-gpu-hour'?" in msg


def test_label_cost_problem_rule() -> None:
    """Every node of a label states the same cost, or none does; the first node loaded is the reference."""
    a, same, other, none = node("a", 3.5), node("b", 3.5), node("c", 4.0), node("d", None)
    assert label_cost_problem("h200", [], other) is None
    assert label_cost_problem("h200", [a], same) is None
    assert label_cost_problem("h200", [none], node("e", None)) is None
    msg, fix = label_cost_problem("h200", [a, same], other) or ("", "")
    assert msg == "cost-per-gpu-hour 4 of node 'c' differs from 3.5 of node 'a' of runner label 'h200'"
    assert "the same cost-per-gpu-hour on every node of the label" in fix and "runner label of its own" in fix
    assert label_cost_problem("h200", [a], none) == (
        "node 'd' has no cost-per-gpu-hour but node 'a' of runner label 'h200' has one", fix)
    assert label_cost_problem("h200", [none], a) == (
        "node 'a' sets cost-per-gpu-hour but node 'd' of runner label 'h200' does not", fix)


def test_label_cost_problem_names_no_values_in_referenced_files() -> None:
    with redacted_values():
        msg, _ = label_cost_problem("h200", [node("secret-a", 3.5)], node("secret-b", 4.0)) or ("", "")
    assert msg == "cost-per-gpu-hour of this node differs from that of the label's first node"
    assert "secret" not in msg and "3.5" not in msg


@needs_hook
def test_disagreeing_nodes_are_an_error_at_the_key(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", """\
        sweep: s
        inventory:
          h200:
          - {name: a, cost-per-gpu-hour: 3.5}
          - name: b
            cost-per-gpu-hour: 4
          - {name: c}
        """)
    got = messages(path)
    assert len(got) == 2
    assert got[0].endswith("s.yaml:6: inventory.h200[1].cost-per-gpu-hour: cost-per-gpu-hour 4 of node 'b' differs "
                           "from 3.5 of node 'a' of runner label 'h200' (allowed: the same cost-per-gpu-hour on every "
                           "node of the label (a YAML anchor keeps them together), or on none; a node with another "
                           "price needs a runner label of its own)")
    assert "s.yaml:7: inventory.h200[2]: node 'c' has no cost-per-gpu-hour but node 'a'" in got[1]


@needs_hook
def test_disagreement_across_files_is_caught(tmp_path: Path) -> None:
    """Nodes of one label from an inventory file and the inline inventory are one label."""
    write(tmp_path / "inv.yaml", "h200:\n- {name: a, cost-per-gpu-hour: 3.5}\n")
    path = write(tmp_path / "s.yaml", "sweep: s\ninventory-files: [inv.yaml]\ninventory:\n  h200:\n"
                 "  - {name: b, cost-per-gpu-hour: 2}\n")
    (msg,) = messages(path)
    assert "s.yaml:5: inventory.h200[0].cost-per-gpu-hour: cost-per-gpu-hour 2 of node 'b' differs from 3.5" in msg


def test_example_inventory_and_demo_load_with_costs() -> None:
    """The shipped example inventory states a cost per label, and the demo still loads."""
    root = Path(__file__).resolve().parents[2] / "configs"
    from infersweep.config.errors import IssueCollector
    from infersweep.config.yamlio import read_yaml

    issues = IssueCollector()
    doc = read_yaml(root / "inventory.example.yaml", issues)
    assert doc is not None and not issues.issues
    for label, nodes in doc.data.items():
        costs = {Node.model_validate({**n, "runner": label}).cost_per_gpu_hour for n in nodes}
        assert len(costs) == 1 and None not in costs, label
    load_sweep([root / "demo.yaml"])
