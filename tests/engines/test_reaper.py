"""The reaper removes only containers whose run has ended, and keeps them when liveness is unknown."""

from __future__ import annotations

import docker.errors

from infersweep.engines.reaper import find_orphans, reap


class FakeAPI:
    def __init__(self, containers):
        self._containers = containers
        self.calls: list[tuple] = []

    def containers(self, all, filters):
        self.calls.append(("list", tuple(filters["label"])))
        wanted = [f for f in filters["label"] if "=" in f]
        out = []
        for c in self._containers:
            labels = c["Labels"]
            if all and "infersweep.run_id" in labels and all_match(labels, wanted):
                out.append(c)
        return out

    def stop(self, cid, timeout):
        self.calls.append(("stop", cid, timeout))

    def remove_container(self, cid, force, v):
        self.calls.append(("remove", cid))
        if cid == "gone":
            raise docker.errors.NotFound("no such container")
        if cid == "stuck":
            raise docker.errors.APIError("500 device or resource busy")


def all_match(labels, wanted):
    return all(labels.get(k) == v for k, v in (w.split("=", 1) for w in wanted))


class FakeClient:
    def __init__(self, containers):
        self.api = FakeAPI(containers)


def _c(cid, run_id, state="running", node="n1"):
    return {"Id": cid, "Names": [f"/infersweep-{cid}"], "State": state,
            "Labels": {"infersweep.run_id": run_id, "infersweep.serve_group": f"g-{cid}", "infersweep.node": node}}


def test_reap_removes_ended_runs_only():
    client = FakeClient([_c("a", "live"), _c("b", "ended"), _c("c", "ended", state="exited"),
                         _c("d", "ended", node="n2"), {"Id": "x", "Names": ["/other"], "State": "running",
                                                       "Labels": {"app": "web"}}])
    done = reap(client, lambda run: run == "live", node="n1", grace_s=7)
    assert [(r.id, r.removed, r.serve_group) for r in done] == [("b", True, "g-b"), ("c", True, "g-c")]
    # Running containers get a graceful stop first; exited ones are just removed.
    assert ("stop", "b", 7) in client.api.calls and ("stop", "c", 7) not in client.api.calls
    assert ("remove", "a") not in client.api.calls and ("remove", "d") not in client.api.calls


def test_unknown_liveness_keeps_the_container_and_errors_are_reported():
    def is_active(run):
        if run == "db-down":
            raise ConnectionError("store unreachable")
        return False

    client = FakeClient([_c("k", "db-down"), _c("gone", "ended"), _c("stuck", "ended")])
    done = reap(client, is_active)
    assert {r.id: (r.removed, r.error is not None) for r in done} == {"gone": (True, False),
                                                                    "stuck": (False, True)}
    assert ("remove", "k") not in client.api.calls


def test_dry_run_touches_nothing():
    client = FakeClient([_c("b", "ended")])
    assert [o["id"] for o in find_orphans(client, lambda r: False)] == ["b"]
    done = reap(client, lambda r: False, dry_run=True)
    assert [(r.id, r.removed) for r in done] == [("b", False)]
    assert all(call[0] == "list" for call in client.api.calls)
