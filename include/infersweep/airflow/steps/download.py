"""download: the group's weights (and its drafter) into the node's HF cache, once per cache domain."""

from __future__ import annotations

import logging

from infersweep.airflow.context import RunContext, recorded_attempt
from infersweep.airflow.deps import ChainDeps
from infersweep.airflow.payloads import DownloadReport, RepoDownload, WorkItem

log = logging.getLogger(__name__)


def download(work: WorkItem, rc: RunContext, deps: ChainDeps | None = None) -> DownloadReport:
    """Fetch the model (and draft model) of the recipe; skipped for the simulator and local paths.

    On Postgres the per-(cache domain, repo, revision) lock is an advisory lock in the results DB, so two
    groups that share a cache never download the same files at once.
    """
    deps = deps or ChainDeps.for_run(rc)
    store, group = deps.store, work.group
    with recorded_attempt(store, rc, group_id=group.id):
        repos = [r for r in (work.recipe.model, work.recipe.draft_model) if r]
        if work.engine == "sim":
            log.info("sim engine: no weights to download for %s", group.model)
            return DownloadReport(group_id=group.id, repos={r: RepoDownload(repo_id=r, skipped="sim") for r in repos})
        from infersweep.artifacts.download import download_model, is_local_model

        done: dict[str, RepoDownload] = {}
        node = work.nodes[0] if work.nodes else None
        for repo in repos:
            if is_local_model(repo):
                done[repo] = RepoDownload(repo_id=repo, skipped="local path")
                continue
            result = download_model(repo, hf_home=node.hf_home if node else None,
                                    cache_domain=(node.cache_domain or node.name) if node else "local",
                                    pg_url=store.url if store.url.startswith("postgresql") else None,
                                    token_conn_id=deps.settings.hf_conn_id)
            done[repo] = RepoDownload.model_validate(
                {k: v for k, v in result.to_json().items() if k in RepoDownload.model_fields})
        return DownloadReport(group_id=group.id, repos=done)
