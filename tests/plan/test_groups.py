"""Serve groups: what goes in a group, and ids that do not move."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from infersweep.config.sweep import load_sweep
from infersweep.plan.groups import group_jobs, jobs_by_group
from infersweep.plan.planner import expand_jobs

DEMO_IDS = ["87267e7495aa", "93fe210c0150", "5a89a33b773b"]


def test_demo_groups_pinned(repo_root: Path) -> None:
    """The demo's group ids are pinned: the fingerprint is stable across runs, machines and Python versions."""
    groups = group_jobs(expand_jobs(load_sweep([repo_root / "configs" / "demo.yaml"])))
    assert [g.id for g in groups] == DEMO_IDS
    assert [g.concs for g in groups] == [(1, 2, 4, 8), (1, 2, 4, 8), (2, 4, 8, 16)]
    assert [g.layout for g in groups] == ["TP1", "TP2", "TP4"]


def test_ids_ignore_yaml_key_order(repo_root: Path, tmp_path: Path) -> None:
    """Reordering keys inside entries and points (and the entries themselves) changes no group id."""
    data = yaml.safe_load((repo_root / "configs" / "demo.yaml").read_text())

    def reverse(obj: object) -> object:
        if isinstance(obj, dict):
            return {k: reverse(obj[k]) for k in reversed(list(obj))}
        return [reverse(x) for x in obj] if isinstance(obj, list) else obj

    shuffled = reverse(data)
    assert isinstance(shuffled, dict)
    shuffled["entries"]["llama3.1-8b-bf16-sim-h100-vllm"]["scenarios"]["fixed-seq-len"][0]["search-space"].reverse()
    path = tmp_path / "shuffled.yaml"
    path.write_text(yaml.safe_dump(shuffled, sort_keys=False))
    shutil.copy(repo_root / "configs" / "quirks.yaml", tmp_path)
    groups = group_jobs(expand_jobs(load_sweep([path])))
    assert sorted(g.id for g in groups) == sorted(DEMO_IDS)


def test_groups_differ_only_in_conc_and_keep_eval_concs(repo_root: Path) -> None:
    """Every job of a group has the group's fields; eval-concs are the group's concs with run-eval."""
    jobs = expand_jobs(load_sweep([repo_root / "configs" / "demo.yaml"]))
    groups = {g.id: g for g in group_jobs(jobs)}
    for gid, members in jobs_by_group(jobs).items():
        group = groups[gid]
        assert group.concs == tuple(sorted(j.conc for j in members))
        assert group.eval_concs == tuple(sorted(j.conc for j in members if j.run_eval))
        for job in members:
            assert (job.tp, job.ep, job.dp_attn, job.isl, job.osl, job.image) == (
                group.tp, group.ep, group.dp_attn, group.isl, group.osl, group.image)


def test_image_change_makes_a_new_group(repo_root: Path, tmp_path: Path) -> None:
    """A different image is a different recipe, so a different id."""
    text = (repo_root / "configs" / "demo.yaml").read_text().replace("v0.11.0", "v0.12.0")
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    shutil.copy(repo_root / "configs" / "quirks.yaml", tmp_path)
    ids = {g.id for g in group_jobs(expand_jobs(load_sweep([path])))}
    assert ids.isdisjoint(DEMO_IDS)
    assert len(ids) == 3
