"""Docker backend: serve a recipe in a container on a node's Docker engine (docker SDK 7).

The container spec is a pure function (`build_container_spec`) so the exact settings a GPU node gets can be
unit-tested without an engine. `DockerEngine` only adds the calls: create/start, readiness, logs, stop/remove.
Every call goes through a client whose socket timeout is set (`client_timeout_s`); `stop` widens it by the
grace period, as docker-py does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infersweep.artifacts.credentials import docker_client_kwargs, resolve_hf_token
from infersweep.config.inventory import Node
from infersweep.engines import readiness
from infersweep.engines.base import Engine, EngineError, ServerHandle
from infersweep.engines.readiness import tail_lines
from infersweep.recipes.model import CONFIG_DIR, Recipe
from infersweep.store.logs import redact

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

log = logging.getLogger(__name__)

LABEL_PREFIX = "infersweep."
LABEL_RUN_ID = "infersweep.run_id"
LABEL_SERVE_GROUP = "infersweep.serve_group"
LABEL_NODE = "infersweep.node"
LABEL_FINGERPRINT = "infersweep.recipe_fingerprint"
REDACTED = "***"
# Env names whose values are credentials: redacted in every spec that is logged or returned.
SECRET_ENV_NAMES = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN"})
# vLLM with NCCL/torch shared-memory needs far more than Docker's 64 MiB default; ipc=host makes shm_size moot
# on most engines, but we set it too because some runtimes ignore ipc=host for /dev/shm sizing.
DEFAULT_SHM_SIZE = "32g"
GPU_DRIVER_MISSING = re.compile(r'could not select device driver "[^"]*" with capabilities: \[\[gpu\]\]')


class GpuRuntimeUnavailableError(EngineError):
    """The Docker engine has no GPU runtime (NVIDIA container toolkit missing): a permanent node fault.

    The message quotes Docker's own text (`could not select device driver "" with capabilities: [[gpu]]`)
    so `infersweep.faults.classify` recognises it as "node misconfigured"; retrying cannot help.
    """

    kind = "node_misconfigured"
    transient = False


class ImageUnavailableError(EngineError):
    """The image is not on the node and could not be pulled."""

    kind = "image_not_found"
    transient = False


@dataclass(frozen=True)
class ContainerSpec:
    """Everything `containers.create` gets, as plain data. `redacted()` is what may be logged."""

    name: str
    image: str
    entrypoint: tuple[str, ...]
    command: tuple[str, ...]
    environment: Mapping[str, str]
    labels: Mapping[str, str]
    device_requests: tuple[Mapping[str, Any], ...]
    mounts: tuple[Mapping[str, Any], ...]
    ports: Mapping[str, tuple[str, int | None]]
    container_port: int
    ipc_mode: str = "host"
    shm_size: str = DEFAULT_SHM_SIZE
    network_mode: str | None = None
    #: ROCm access on AMD nodes (device nodes, groups, security options), as AMD's own `docker run` docs and
    #: InferenceX's AMD launchers give the container; empty on NVIDIA, which uses device requests instead.
    devices: tuple[str, ...] = ()
    group_add: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    #: Generated engine config files (Recipe.files), copied into CONFIG_DIR before the container starts.
    files: Mapping[str, str] = field(default_factory=dict)

    def redacted(self) -> ContainerSpec:
        """A copy with credential env values replaced by `***` (safe to log, store or return)."""
        env = {k: (REDACTED if k in SECRET_ENV_NAMES and v else v) for k, v in self.environment.items()}
        return replace(self, environment=env)

    def to_json(self) -> dict[str, Any]:
        """JSON-able view of the redacted spec."""
        r = self.redacted()
        return {
            "name": r.name,
            "image": r.image,
            "entrypoint": list(r.entrypoint),
            "command": list(r.command),
            "environment": dict(r.environment),
            "labels": dict(r.labels),
            "device_requests": [dict(d) for d in r.device_requests],
            "mounts": [dict(m) for m in r.mounts],
            "ports": {k: list(v) for k, v in r.ports.items()},
            "ipc_mode": r.ipc_mode,
            "shm_size": r.shm_size,
            "network_mode": r.network_mode,
            # Only where set: the specs of NVIDIA containers stay as they were recorded.
            **{k: v for k, v in (("devices", list(r.devices)), ("group_add", list(r.group_add)),
                                 ("security_opt", list(r.security_opt)), ("cap_add", list(r.cap_add)),
                                 ("files", sorted(r.files))) if v},
        }

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for docker-py's `client.containers.create` (contains the real secrets)."""
        from docker.types import DeviceRequest, Mount

        kwargs: dict[str, Any] = {
            "image": self.image,
            "name": self.name,
            "entrypoint": list(self.entrypoint),
            "command": list(self.command),
            "environment": dict(self.environment),
            "labels": dict(self.labels),
            "device_requests": [
                DeviceRequest(
                    driver=d.get("Driver", ""),
                    count=d.get("Count", 0),
                    device_ids=d.get("DeviceIDs"),
                    capabilities=d.get("Capabilities"),
                )
                for d in self.device_requests
            ],
            "mounts": [
                Mount(target=m["Target"], source=m["Source"], type=m.get("Type", "bind"),
                      read_only=bool(m.get("ReadOnly", False)))
                for m in self.mounts
            ],
            "ipc_mode": self.ipc_mode,
            "shm_size": self.shm_size,
            "detach": True,
        }
        for key in ("devices", "group_add", "security_opt", "cap_add"):
            if getattr(self, key):
                kwargs[key] = list(getattr(self, key))
        if self.network_mode:
            kwargs["network_mode"] = self.network_mode
        else:
            kwargs["ports"] = {k: (ip, port) for k, (ip, port) in self.ports.items()}
        return kwargs


def container_name(recipe: Recipe, run_id: str, node: Node | None) -> str:
    """A stable, Docker-legal container name: infersweep-<group or fingerprint>-<run>."""
    group = recipe.serve_group or recipe.fingerprint()[:12]
    raw = f"infersweep-{group}-{run_id}-{node.name if node else 'local'}"
    if recipe.host_network:
        # Several processes of one topology share a node (and a serve group): tell them apart by what differs
        # between them (command line with its ports, GPU ids), else a start would remove its sibling as stale.
        who = hashlib.sha256(repr((recipe.argv, recipe.gpu_ids)).encode()).hexdigest()[:8]
        raw += f"-{who}"
    name = re.sub(r"[^a-zA-Z0-9_.-]+", "-", raw).strip("-.")
    return name[:200]


def build_container_spec(
    recipe: Recipe,
    node: Node | None,
    *,
    run_id: str,
    hf_token: str | None = None,
    device_ids: Sequence[str] | None = None,
    host_port: int | None = None,
    publish_ip: str = "0.0.0.0",  # noqa: S104  # serving ports must be reachable from the benchmark client
    shm_size: str = DEFAULT_SHM_SIZE,
    hub_offline: bool = True,
    name: str | None = None,
    network_mode: str | None = None,
) -> ContainerSpec:
    """The container for `recipe` on `node`: pure, no Docker calls.

    - entrypoint/command = recipe.argv split at the first word, so the image's own ENTRYPOINT (which differs
      between vllm-openai releases) never changes what runs;
    - GPUs: `device_ids` (from a node lease), else the recipe's own `gpu_ids` (a topology component's place on
      its node), pin exact devices, otherwise `count = recipe.gpus`;
    - `recipe.host_network` (multi-node workers, as InferenceX's containers run) uses the node's network;
    - unless the recipe already mounts a cache (HF_HUB_CACHE/HF_HOME in its env), the node's HF_HOME is
      bind-mounted at the same path and `HF_HOME` points at it, so the download step and the server see one
      cache; serving defaults to `HF_HUB_OFFLINE=1` (the download step verified the cache);
    - `host_port=None` publishes on recipe.port; 0 lets Docker choose (read back after start).
    """
    if not recipe.argv:
        raise ValueError("recipe.argv is empty: a Docker recipe needs the server command (e.g. 'vllm serve MODEL')")
    if not device_ids and recipe.gpu_ids:
        device_ids = [str(i) for i in recipe.gpu_ids]
    if network_mode is None and recipe.host_network:
        network_mode = "host"
    env: dict[str, str] = {}
    mounts: list[dict[str, Any]] = []
    # A recipe that already places the cache (the vLLM builder mounts the hub cache at /mnt/hf_hub_cache and
    # sets HF_HUB_CACHE) wins; otherwise the node's HF_HOME is mounted at its own path.
    recipe_sets_cache = bool({"HF_HUB_CACHE", "HF_HOME"} & set(recipe.env))
    if node is not None and node.hf_home and not recipe_sets_cache:
        env["HF_HOME"] = node.hf_home
        mounts.append({"Type": "bind", "Source": node.hf_home, "Target": node.hf_home, "ReadOnly": False})
    if hub_offline:
        env["HF_HUB_OFFLINE"] = "1"
    env.update(recipe.env)
    if hf_token:
        env["HF_TOKEN"] = hf_token
    mounts.extend(
        {"Type": "bind", "Source": m.source, "Target": m.target, "ReadOnly": m.read_only} for m in recipe.mounts
    )

    device_requests: tuple[dict[str, Any], ...] = ()
    rocm: dict[str, tuple[str, ...]] = {}
    if recipe.gpus > 0 and node is not None and _vendor(node) == "amd":
        # ROCm has no device-request driver: the container gets the KFD and DRI device nodes, and a lease's
        # GPU ids narrow what HIP sees.
        rocm = {"devices": ROCM_DEVICES, "group_add": ("video",), "security_opt": ("seccomp=unconfined",),
                "cap_add": ("SYS_PTRACE",)}
        if device_ids:
            env.setdefault("HIP_VISIBLE_DEVICES", ",".join(str(d) for d in device_ids))
    elif device_ids:
        device_requests = ({"Driver": "", "Count": 0, "DeviceIDs": [str(d) for d in device_ids],
                            "Capabilities": [["gpu"]]},)
    elif recipe.gpus > 0:
        device_requests = ({"Driver": "", "Count": recipe.gpus, "DeviceIDs": None, "Capabilities": [["gpu"]]},)

    labels = {
        LABEL_RUN_ID: run_id,
        LABEL_SERVE_GROUP: recipe.serve_group or "",
        LABEL_NODE: node.name if node else "local",
        LABEL_FINGERPRINT: recipe.fingerprint(),
    }
    port_key = f"{recipe.port}/tcp"
    published = recipe.port if host_port is None else (host_port or None)
    return ContainerSpec(
        name=name or container_name(recipe, run_id, node),
        image=recipe.image,
        entrypoint=(recipe.argv[0],),
        command=tuple(recipe.argv[1:]),
        environment=env,
        labels=labels,
        device_requests=device_requests,
        mounts=tuple(mounts),
        ports={} if network_mode else {port_key: (publish_ip, published)},
        container_port=recipe.port,
        ipc_mode="host",
        shm_size=shm_size,
        network_mode=network_mode,
        files=dict(recipe.files),
        **rocm,  # type: ignore[arg-type]
    )


#: Device nodes a ROCm container needs: the compute driver (KFD) and the render nodes (DRI).
ROCM_DEVICES = ("/dev/kfd:/dev/kfd:rwm", "/dev/dri:/dev/dri:rwm")


def _vendor(node: Node) -> str:
    from infersweep.recipes.hardware import gpu_for_runner

    spec = gpu_for_runner(node.runner)
    return spec.vendor if spec else "nvidia"


def config_files_tar(files: Mapping[str, str]) -> bytes:
    """The recipe's generated config files as a tar stream to unpack at `/` (CONFIG_DIR and its parents
    included), for put_archive: it works against remote daemons (ssh://, tcp://) too, where a bind mount of a
    local file would not."""
    import io
    import tarfile
    import time

    buf = io.BytesIO()
    now = int(time.time())
    parts = CONFIG_DIR.strip("/").split("/")
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for depth in range(1, len(parts) + 1):
            info = tarfile.TarInfo("/".join(parts[:depth]))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{'/'.join(parts)}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, now
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _default_run_id() -> str:
    # Inside an Airflow task the context env names the DAG run; elsewhere a manual marker.
    return os.environ.get("AIRFLOW_CTX_DAG_RUN_ID") or "manual"


@dataclass
class _Tracked:
    recipe: Recipe | None
    node: Node | None
    logs: str = ""
    stopped: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class DockerEngine(Engine):
    """Serve recipes in containers on the node's Docker engine (`node.docker_url`, else DOCKER_HOST)."""

    name = "vllm-docker"

    def __init__(
        self,
        *,
        run_id: str | None = None,
        hf_token: str | None = None,
        hf_token_conn_id: str | None = None,
        client_timeout_s: float = 60.0,
        publish_ip: str = "0.0.0.0",  # noqa: S104  # see build_container_spec
        host_port: int | None = None,
        shm_size: str = DEFAULT_SHM_SIZE,
        hub_offline: bool = True,
        log_dir: str | os.PathLike[str] | None = None,
        pull_missing: bool = True,
        client_factory: Callable[[str | None, float], docker.DockerClient] | None = None,
    ) -> None:
        self.run_id = run_id or _default_run_id()
        self._hf_token = hf_token
        self._hf_token_conn_id = hf_token_conn_id
        self.client_timeout_s = client_timeout_s
        self.publish_ip = publish_ip
        self.host_port = host_port
        self.shm_size = shm_size
        self.hub_offline = hub_offline
        self.pull_missing = pull_missing
        self.log_dir = Path(log_dir or os.environ.get("INFERSWEEP_LOG_DIR") or tempfile.gettempdir())
        self._client_factory = client_factory or _make_client
        self._clients: dict[str | None, docker.DockerClient] = {}
        self._tracked: dict[str, _Tracked] = {}

    # -- clients -----------------------------------------------------------------------------------
    def client(self, docker_url: str | None) -> docker.DockerClient:
        """The (cached) client for one engine URL; None means DOCKER_HOST / the default socket."""
        if docker_url not in self._clients:
            self._clients[docker_url] = self._client_factory(docker_url, self.client_timeout_s)
        return self._clients[docker_url]

    def close(self) -> None:
        """Close every client connection pool."""
        for c in self._clients.values():
            c.close()
        self._clients.clear()

    def _client_for(self, handle: ServerHandle) -> docker.DockerClient:
        return self.client(handle.extra.get("docker_url"))

    # -- Engine ------------------------------------------------------------------------------------
    def spec_for(
        self, recipe: Recipe, node: Node | None, *, device_ids: Sequence[str] | None = None,
        run_id: str | None = None,
    ) -> ContainerSpec:
        """The container spec `start` would use (real token inside; log only `.redacted()`)."""
        token = self._hf_token or resolve_hf_token(conn_id=self._hf_token_conn_id)
        return build_container_spec(
            recipe, node, run_id=run_id or self.run_id, hf_token=token, device_ids=device_ids,
            host_port=self.host_port, publish_ip=self.publish_ip, shm_size=self.shm_size,
            hub_offline=self.hub_offline,
        )

    def start(
        self, recipe: Recipe, node: Node | None = None, *, device_ids: Sequence[str] | None = None,
        run_id: str | None = None,
    ) -> ServerHandle:
        """Create and start the container; return at once (readiness is `wait_ready`).

        A leftover container with the same name (a previous attempt of this task) is removed first, so a
        retried task never collides with its own ghost.
        """
        import docker.errors

        spec = self.spec_for(recipe, node, device_ids=device_ids, run_id=run_id)
        docker_url = node.docker_url if node else None
        client = self.client(docker_url)
        log.info("docker: starting %s on %s: %s", spec.name, docker_url or "DOCKER_HOST", spec.to_json())
        digest = self._ensure_image(client, spec.image)
        self._remove_stale(client, spec.name)
        try:
            container = client.containers.create(**spec.create_kwargs())
        except docker.errors.ImageNotFound as exc:
            raise ImageUnavailableError(f"image {spec.image!r} not found on {docker_url or 'DOCKER_HOST'}: {exc}") from exc
        except docker.errors.APIError as exc:
            raise _start_error(exc, spec) from exc
        host = node.host if node else "127.0.0.1"
        handle = ServerHandle(
            base_url="",
            id=str(container.id),
            log_path=str(self.log_dir / f"{spec.name}.log"),
            backend=self.name,
            node=node.name if node else None,
            image_digest=digest,
            extra={"docker_url": docker_url, "container_name": spec.name, "spec": spec.to_json()},
        )
        self._tracked[handle.id] = _Tracked(recipe=recipe, node=node)
        try:
            if spec.files:
                container.put_archive("/", config_files_tar(spec.files))
            container.start()
        except docker.errors.APIError as exc:
            # Created but never ran: remove it now so a failed start leaves nothing behind.
            self._force_remove(client, handle.id)
            self._tracked[handle.id].stopped = True
            raise _start_error(exc, spec) from exc
        port = self._published_port(container, spec)
        if port is None:
            # Docker drops a random binding when the process exits: it died at once. Fail fast with its log.
            logs = self.stop(handle, grace_s=0)
            raise EngineError(f"container {spec.name} exited right after start (before it was ready)",
                              log_tail=tail_lines(logs, readiness.LOG_TAIL_LINES))
        handle.base_url = f"http://{host}:{port}"
        handle.extra["host_port"] = port
        return handle

    def wait_ready(self, handle: ServerHandle, deadline_s: float | None = None) -> None:
        """Poll /health then /v1/models until ready, failing fast (last 50 log lines) if the container exits.

        Records the server's `/version` on the handle (`engine_version`, `extra["version_info"]`).
        """
        tracked = self._tracked.get(handle.id)
        timeout = deadline_s if deadline_s is not None else (
            tracked.recipe.ready_timeout_s if tracked and tracked.recipe else 3600.0)
        info = readiness.wait_ready(
            handle.base_url, deadline_s=timeout, is_alive=lambda: self.is_alive(handle), logs=lambda n: self.logs(handle, tail=n),
            what=f"container {handle.extra.get('container_name', handle.id[:12])}",
            health=readiness.health_path(tracked.recipe.framework if tracked and tracked.recipe else None),
        )
        handle.engine_version = info.version
        handle.extra["version_info"] = info.version_info
        handle.extra["served_models"] = info.models
        handle.extra["ready_after_s"] = round(info.waited_s, 3)

    def is_alive(self, handle: ServerHandle) -> bool:
        """The container exists and is created, running or restarting (a removed one is dead)."""
        return _container_status(self._client_for(handle), handle.id) in {"created", "running", "restarting"}

    def logs(self, handle: ServerHandle, tail: int | None = None) -> str:
        """Container stdout+stderr; after `stop` the collected copy (also written to `handle.log_path`)."""
        import docker.errors

        tracked = self._tracked.get(handle.id)
        if tracked is not None and tracked.stopped:
            return tail_lines(tracked.logs, tail)
        try:
            container = self._client_for(handle).containers.get(handle.id)
            raw = container.logs(stdout=True, stderr=True, tail=tail if tail is not None else "all")
        except docker.errors.NotFound:
            if handle.log_path and Path(handle.log_path).is_file():
                return tail_lines(Path(handle.log_path).read_text(errors="replace"), tail)
            return ""
        return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)

    def stop(self, handle: ServerHandle, grace_s: float = 30.0) -> str:
        """Collect logs, `docker stop` with `grace_s`, then remove. Idempotent; fine on a half-started one."""
        import docker.errors

        # A handle from another process (e.g. a teardown task) is not tracked here; stop needs no recipe.
        tracked = self._tracked.setdefault(handle.id, _Tracked(recipe=None, node=None))
        with tracked.lock:
            if tracked.stopped:
                return tracked.logs
            client = self._client_for(handle)
            try:
                container = client.containers.get(handle.id)
            except docker.errors.NotFound:
                # Already gone (stopped by another task, or reaped): the log file is what is left.
                if not tracked.logs and handle.log_path and Path(handle.log_path).is_file():
                    tracked.logs = Path(handle.log_path).read_text(errors="replace")
                tracked.stopped = True
                return tracked.logs
            # Logs first (whatever happens next, they survive), then again after the graceful stop so the
            # server's own shutdown messages are kept too.
            tracked.logs = _container_logs(container, handle) or tracked.logs
            self._write_log(handle, tracked.logs)
            try:
                # docker-py widens the socket timeout by `timeout` for this call.
                container.stop(timeout=max(int(grace_s), 0))
            except docker.errors.NotFound:
                pass
            except Exception as exc:  # API error or client timeout: the force-remove below still ends it
                log.warning("docker: stop of %s failed (%s); removing by force", handle.id[:12], exc)
            else:
                tracked.logs = _container_logs(container, handle) or tracked.logs
                self._write_log(handle, tracked.logs)
            self._force_remove(client, handle.id)
            tracked.stopped = True
            return tracked.logs

    # -- helpers -----------------------------------------------------------------------------------
    def _ensure_image(self, client: docker.DockerClient, image: str) -> str | None:
        """Local image digest (RepoDigests when pulled from a registry, else the content id)."""
        import docker.errors

        try:
            img = client.images.get(image)
        except docker.errors.ImageNotFound:
            if not self.pull_missing:
                raise ImageUnavailableError(f"image {image!r} is not on the node and pulling is disabled") from None
            try:
                img = client.images.pull(image)
            except docker.errors.APIError as exc:
                raise ImageUnavailableError(f"image {image!r} is not on the node and the pull failed: {exc}") from exc
        digests = img.attrs.get("RepoDigests") or []
        return str(digests[0]) if digests else (str(img.id) if img.id else None)

    def _remove_stale(self, client: docker.DockerClient, name: str) -> None:
        import docker.errors

        try:
            old = client.containers.get(name)
        except docker.errors.NotFound:
            return
        log.warning("docker: removing leftover container %s (%s) before starting", name, old.status)
        self._force_remove(client, str(old.id))

    @staticmethod
    def _force_remove(client: docker.DockerClient, container_id: str) -> None:
        import docker.errors

        try:
            client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            # 409 "removal already in progress" is success for us.
            if getattr(exc, "status_code", None) != 409:
                raise EngineError(f"could not remove container {container_id[:12]}: {exc}") from exc

    def _published_port(self, container: Container, spec: ContainerSpec) -> int | None:
        """The host port; None when Docker chose one and the container is already gone/exited."""
        if spec.network_mode == "host" or not spec.ports:
            return spec.container_port
        wanted = spec.ports[f"{spec.container_port}/tcp"][1]
        if wanted:
            return wanted
        container.reload()
        bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{spec.container_port}/tcp")
        if bindings:
            return int(bindings[0]["HostPort"])
        if container.status in {"exited", "dead"}:
            return None
        raise EngineError(f"docker did not publish port {spec.container_port} of {spec.name} ({container.status})")

    def _write_log(self, handle: ServerHandle, text: str) -> None:
        if not handle.log_path:
            return
        try:
            path = Path(handle.log_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(redact(text))  # the container saw the HF token; its log copy must not keep it
        except OSError as exc:
            log.warning("docker: could not write %s: %s", handle.log_path, exc)


def _make_client(docker_url: str | None, timeout_s: float) -> docker.DockerClient:
    import docker

    # A node's docker-url gets the same TLS settings (DOCKER_TLS_VERIFY / DOCKER_CERT_PATH) as DOCKER_HOST.
    return docker.DockerClient(**docker_client_kwargs(docker_url), timeout=int(timeout_s))


def _container_logs(container: Container, handle: ServerHandle) -> str | None:
    import docker.errors

    try:
        raw = container.logs(stdout=True, stderr=True)
    except docker.errors.APIError as exc:
        log.warning("docker: could not collect logs of %s: %s", handle.id[:12], exc)
        return None
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _container_status(client: docker.DockerClient, container_id: str) -> str:
    import docker.errors

    try:
        info = client.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return "removed"
    return str(info.get("State", {}).get("Status", "unknown"))


def _start_error(exc: Exception, spec: ContainerSpec) -> EngineError:
    text = str(getattr(exc, "explanation", None) or exc)
    if GPU_DRIVER_MISSING.search(text):
        return GpuRuntimeUnavailableError(
            f"node misconfigured: Docker cannot give {spec.name} GPUs ({text}). Install the NVIDIA container "
            "toolkit and configure the nvidia runtime on this node (`nvidia-ctk runtime configure --runtime=docker`)."
        )
    return EngineError(f"docker could not start {spec.name} ({spec.image}): {text}")


