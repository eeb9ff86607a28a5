"""What every framework's recipe builder does the same way: the node's HF cache and the topology's components."""

from __future__ import annotations

from infersweep.plan.models import ServeGroup
from infersweep.recipes.model import Mount

#: Where a node's Hugging Face hub cache is mounted inside the container (InferenceX's HF_HUB_CACHE).
CONTAINER_HF_CACHE = "/mnt/hf_hub_cache"


def mount_hf_cache(env: dict[str, str], hf_cache: str | None) -> tuple[Mount, ...]:
    """Mount the node's hub cache (the folder holding `models--org--name`) and point HF_HUB_CACHE at it."""
    if not hf_cache:
        return ()
    env["HF_HUB_CACHE"] = CONTAINER_HF_CACHE
    return (Mount(source=hf_cache, target=CONTAINER_HF_CACHE),)


def topology_components(group: ServeGroup) -> dict[str, object]:
    """Router and KV transfer engine the topology runs with: recorded with the recipe (and its fingerprint),
    so results with and without them are never taken for each other, even where no flag carries them."""
    components: dict[str, object] = {}
    if group.router is not None:
        components["router"] = group.router.model_dump(mode="json")
    if group.kv_p2p_transfer is not None:
        components["kv-p2p-transfer"] = group.kv_p2p_transfer
    return components


def check_single_server(group: ServeGroup, framework: str, port: int, where: str) -> None:
    """The checks every builder makes first: its own framework, one server (not disaggregated), a TCP port."""
    from infersweep.recipes.errors import RecipeError, UnsupportedFrameworkError

    if group.framework != framework:
        raise UnsupportedFrameworkError(f"{where}: framework {group.framework!r} is not {framework!r}")
    if group.disagg:
        raise UnsupportedFrameworkError(
            f"{where}: disaggregated prefill/decode needs one server per pool (multi-node); "
            f"only single-server {framework} recipes are built")
    if not 1 <= port <= 65535:
        raise RecipeError(f"{where}: port {port} is not a TCP port")
