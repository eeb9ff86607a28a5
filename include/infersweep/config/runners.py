"""InferenceX `runners.yaml`: runner label → concrete runner names (+ optional hardware facts).

Two layouts exist. Around PR #1731 the file maps each label straight to a list of runner names; later
snapshots nest that under `labels:` and add `hardware:` (gpus-per-node, available-cpu-dram-mib). Both
are read unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from infersweep.config.errors import IssueCollector
from infersweep.config.master import MAX_PARALLEL, FixedSeqLenPoint, at_most
from infersweep.config.schema_errors import add_validation_issues, validate_yaml
from infersweep.config.yamlio import YamlDoc, read_yaml
from infersweep.faults.errors import InfersweepError


class RunnerHardware(BaseModel):
    """Facts about one runner label's nodes (upstream `RunnerConfig.hardware`, since 843c6254f).

    They size an agentic point's DRAM offload budget (`total-cpu-dram-gb`) and bound a single-node
    server's GPU count (tp x pp x pcp must fit in `gpus-per-node`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    available_cpu_dram_mib: Annotated[StrictInt, Field(gt=0)] = Field(alias="available-cpu-dram-mib")
    gpus_per_node: Annotated[StrictInt, Field(gt=0), at_most(MAX_PARALLEL, "no node holds that many GPUs")] = Field(
        alias="gpus-per-node")

    def node_gpus(self, point: FixedSeqLenPoint) -> int:
        """GPUs one server process of `point` occupies on a node (upstream's sizing rule); raises NodeFitError
        when the layout cannot tile a node. Single-node: tp x pp x pcp, at most one node. Multinode: the
        prefill worker's replica, which must divide a node or fill whole nodes (only prefill offloads KV to
        DRAM today)."""
        per_node = self.gpus_per_node
        if point.prefill is None:
            gpus = (point.tp or 1) * point.pp * point.pcp_size
            if gpus > per_node:
                raise NodeFitError(f"tp x pp x pcp-size = {gpus} GPUs, more than gpus-per-node: {per_node}")
            return gpus
        w = point.prefill
        gpus = w.tp * w.pp * w.pcp_size
        if gpus > per_node:
            if gpus % per_node:
                raise NodeFitError(f"prefill tp x pp x pcp-size = {gpus} spans nodes but is not a multiple of "
                                   f"gpus-per-node: {per_node}")
            return per_node
        if per_node % gpus:
            raise NodeFitError(f"prefill tp x pp x pcp-size = {gpus} does not divide gpus-per-node: {per_node}")
        return gpus


class NodeFitError(InfersweepError, ValueError):
    """A layout that does not fit (or tile) its runner's nodes."""

    kind = "config_error"
    transient = False


@dataclass(frozen=True)
class Runners:
    """Known runner labels and the runner names behind each."""

    file: str
    labels: dict[str, tuple[str, ...]]
    hardware: dict[str, RunnerHardware] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)


def load_runners(path: Path, issues: IssueCollector, *, display: str | None = None) -> Runners | None:
    """Read and validate a runners.yaml; problems go to `issues`."""
    doc = read_yaml(path, issues, display=display)
    return runners_from_doc(doc, issues) if doc is not None else None


def runners_from_doc(doc: YamlDoc, issues: IssueCollector) -> Runners | None:
    data = doc.data
    if not isinstance(data, dict):
        issues.add(doc.file, doc.line_of(()), "runners file must be a mapping of runner label → list of runner names")
        return None
    nested = isinstance(data.get("labels"), dict)
    table: dict[Any, Any] = data["labels"] if nested else data
    base: tuple[str, ...] = ("labels",) if nested else ()
    hardware: dict[str, RunnerHardware] = {}
    if nested:
        extra = sorted(str(k) for k in data if k not in ("labels", "hardware"))
        if extra:
            issues.add(doc.file, doc.line_of((extra[0],)), f"unknown key '{extra[0]}'", allowed="labels, hardware")
        raw_hw = data.get("hardware") or {}
        if not isinstance(raw_hw, dict) or not all(isinstance(v, dict) for v in raw_hw.values()):
            issues.add(doc.file, doc.line_of(("hardware",)), "hardware must map a label to a mapping of facts")
        else:
            for label, facts in raw_hw.items():
                try:
                    hardware[str(label)] = validate_yaml(RunnerHardware, facts)
                except ValidationError as exc:
                    add_validation_issues(issues, exc, doc=doc, base=("hardware", label), config_key=None,
                                          model=RunnerHardware, shown=("hardware", label))
    labels: dict[str, tuple[str, ...]] = {}
    for label, names in table.items():
        path = (*base, label)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            issues.add(doc.file, doc.line_of(path), f"runner label '{label}' must map to a non-empty list of runner names",
                       field_path=str(label), allowed="e.g. h200: [h200-cw_00, h200-cw_01]")
            continue
        labels[str(label)] = tuple(names)
    lines = {str(k): doc.lines.get((*base, k), 0) for k in table}
    return Runners(file=doc.file, labels=labels, hardware=hardware, lines=lines)
