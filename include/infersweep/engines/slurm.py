"""Slurm backend: a serve group runs as ONE Slurm job whose batch script starts every component with `srun`.

Layout, as in the Docker backend:

- data and pure functions: `SlurmProcess` / `SlurmJobSpec` (what runs where), `batch_script` and
  `sbatch_argv` (exactly what Slurm gets), `parse_job_id` / `parse_scontrol_job` / `parse_sacct` (what
  Slurm answers), `JobStatus`;
- the "hook": `CommandRunner` runs Slurm's client commands (`sbatch`, `scontrol`, `scancel`, `sacct`), each
  with a timeout. `LocalRunner` runs them on this machine (the Airflow worker is a submit host);
- `SlurmEngine`: the `Engine` calls on top (start, readiness, liveness = job state, logs, stop).

The job is the unit of lifetime: the batch script starts the workers first and the entry component (the
router, or the single aggregated server) last, then `wait -n`s. When ANY component exits, the script stops
the others and the job ends, so a worker dying mid-run ends the job, `is_alive` turns False, and teardown is
the same whatever died. `stop` signals every step (TERM), waits the grace period, then lets Slurm terminate
the job (`scancel`, Slurm sends KILL after its KillWait), and follows the job to a terminal state.

No Airflow provider for Slurm exists on PyPI: Slurm's client commands run on this machine (`LocalRunner`) or
on a submit host through an Airflow SSH connection (`SSHRunner`, apache-airflow-providers-ssh's `SSHHook`).
See docs/slurm.md.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from infersweep.config.inventory import Node
from infersweep.engines.base import Engine, EngineError, ServerHandle
from infersweep.engines.process import default_log_dir, record_ready, redact_argv
from infersweep.engines.readiness import LOG_TAIL_LINES, health_path, tail_lines, wait_ready
from infersweep.fsnames import safe_filename
from infersweep.recipes.model import Recipe
from infersweep.store.logs import redact

#: Job states after which nothing of the job runs any more (`scontrol`/`sacct` spelling). "GONE" is ours:
#: the controller has purged the job (MinJobAge) and there is no accounting to ask.
TERMINAL_STATES = frozenset({
    "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
    "OUT_OF_MEMORY", "REVOKED", "SPECIAL_EXIT", "GONE",
})
#: States in which the job has not started yet; `stop` cancels these at once (a pending job cannot be
#: signalled).
PENDING_STATES = frozenset({"PENDING", "REQUEUE_HOLD", "REQUEUE_FED", "REQUEUED", "RESV_DEL_HOLD"})
#: Pending reasons that never clear by waiting: readiness fails at once instead of waiting out its deadline.
HOPELESS_PENDING_REASONS = frozenset({
    "BadConstraints", "PartitionNodeLimit", "PartitionTimeLimit", "PartitionConfig", "InvalidAccount",
    "InvalidQOS", "AccountNotAllowed", "QOSNotAllowed", "JobHeldAdmin", "JobHeldUser",
    "DependencyNeverSatisfied",
})
#: Env names whose values are credentials: they reach the job through sbatch's environment, never the
#: script text (Slurm stores scripts and `scontrol write batch_script` prints them).
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|CREDENTIAL)", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Slurm node names (one host name each): no commas, brackets or spaces, so a list never needs hostlist
#: syntax.
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMPONENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_TAIL_BYTES = 256 * 1024


class SlurmUnavailableError(EngineError):
    """The Slurm client commands are missing here: a permanent submit-host fault."""

    kind = "node_misconfigured"
    transient = False


class SlurmControllerError(EngineError):
    """slurmctld did not answer (timeout, connection refused): retrying later can help."""

    transient = True


class SlurmSpecError(EngineError):
    """The serve group cannot be expressed as a Slurm job (bad node or component name, argv)."""

    kind = "config_error"
    transient = False


# --- what runs where ---------------------------------------------------------------------------------------
class SlurmProcess(BaseModel):
    """One component of a serve group: a command on one Slurm node (one `srun` step)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="unique within the job, e.g. 'prefill-0', 'router'; names the step and "
                                  "its log")
    role: str = Field(default="aggregated",
                      description="prefill, decode, router or aggregated (recorded only)")
    node: str = Field(description="the Slurm node name it runs on")
    argv: tuple[str, ...] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    srun_args: tuple[str, ...] = Field(default=(), description="extra srun options, e.g. ('--gpus=8',)")
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="the component's HTTP port: readiness also waits for its health")
    host: str | None = Field(default=None, description="address of its node for readiness probes; default: "
                                                       "the node's inventory host, else 127.0.0.1")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _COMPONENT_NAME.match(v):
            raise ValueError(f"component name {v!r} must be 1-63 letters, digits, '.', '_' or '-'")
        return v

    @field_validator("node")
    @classmethod
    def _node(cls, v: str) -> str:
        if not _NODE_NAME.match(v):
            raise ValueError(f"Slurm node name {v!r} must be one host name (letters, digits, '.', '_', '-')")
        return v

    @field_validator("argv")
    @classmethod
    def _argv(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if "=" in v[0]:
            # `env K=V argv…` would take argv[0] for an assignment.
            raise ValueError(f"the program {v[0]!r} must not contain '='")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not _ENV_NAME.match(k)]
        if bad:
            raise ValueError(f"env names {bad} are not shell variable names")
        return v

    @field_validator("srun_args")
    @classmethod
    def _srun_args(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if v and not v[0].startswith("-"):
            raise ValueError(f"srun_args must start with an option, got {v[0]!r}")
        return v


class SlurmJobSpec(BaseModel):
    """A serve group as one Slurm job: its components, which one clients talk to, and the job's options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    serve_group: str = Field(min_length=1,
                             description="names the job (`isw-<serve_group>`) and its log files")
    processes: tuple[SlurmProcess, ...] = Field(min_length=1)
    entry: str = Field(description="name of the component clients reach (the router, or the aggregated "
                                   "server)")
    port: int = Field(ge=1, le=65535, description="the entry component's HTTP port")
    host: str | None = Field(default=None, description="address clients use for the entry; default: its "
                                                        "node's inventory host, else 127.0.0.1")
    health_path: str = "/health"
    ready_timeout_s: float = Field(default=3600.0, gt=0)
    time_limit_min: int = Field(default=720, ge=1, description="sbatch --time, in minutes")
    partition: str | None = None
    account: str | None = None
    sbatch_args: tuple[str, ...] = Field(default=(),
                                         description="extra sbatch options, e.g. ('--exclusive',)")

    @field_validator("sbatch_args")
    @classmethod
    def _sbatch_args(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if v and not v[0].startswith("-"):
            raise ValueError(f"sbatch_args must start with an option, got {v[0]!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SlurmJobSpec:
        names = [p.name for p in self.processes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"component names must be unique, repeated: {dupes}")
        if self.entry not in names:
            raise ValueError(f"entry {self.entry!r} is not one of the components {names}")
        secrets: dict[str, str] = {}
        for p in self.processes:
            for k, v in p.env.items():
                if _SECRET_NAME.search(k) and secrets.setdefault(k, v) != v:
                    # Secrets reach the job through one environment, so a name has one value per job.
                    raise ValueError(f"secret env {k} has different values in different components")
        return self

    @property
    def nodes(self) -> list[str]:
        """The job's nodes, in first-use order (the order `--nodelist` gets)."""
        return list(dict.fromkeys(p.node for p in self.processes))

    @property
    def entry_process(self) -> SlurmProcess:
        """The component clients talk to."""
        return next(p for p in self.processes if p.name == self.entry)

    def launch_order(self) -> list[SlurmProcess]:
        """Workers first, the entry last: a router starts once the servers it routes to are on their way."""
        return [p for p in self.processes if p.name != self.entry] + [self.entry_process]

    def secret_env(self) -> dict[str, str]:
        """The credential env of all components (kept out of the script, passed through sbatch's env)."""
        return {k: v for p in self.processes for k, v in p.env.items() if _SECRET_NAME.search(k)}

    @property
    def job_name(self) -> str:
        """`isw-<serve group>`, as one safe token (squeue/sacct show it)."""
        return "isw-" + safe_filename(self.serve_group, max_len=100, ascii_only=True, squeeze=True)


def batch_script(spec: SlurmJobSpec, log_dir: str) -> str:
    """The bash batch script: one background `srun` step per component (workers first, entry last), then
    wait for the first to exit, stop the rest and end the job with its status.

    Component output goes to `<log_dir>/<job name>-<job id>-<component>.log` (srun expands `%j`). Values
    are quoted with `shlex.quote`; credential env values are not written here at all.
    """
    lines = [
        "#!/bin/bash",
        f"# infersweep serve group {spec.serve_group}: {len(spec.processes)} component(s) on "
        f"{','.join(spec.nodes)}; entry {spec.entry}. The job ends when any component exits.",
        "pids=()",
        "stopping=0",
        # A TERM from `scancel --signal=TERM` (stop) reaches the script and every step; forwarding it to the
        # sruns too makes sure each step is told even if its own signal was lost.
        'stop_all() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done; }',
        "trap 'stopping=1; echo \"infersweep: stop requested, stopping components\"; stop_all' TERM INT",
    ]
    for p in spec.launch_order():
        out = f"{log_dir.rstrip('/')}/{spec.job_name}-%j-{p.name}.log"
        srun = ["srun", "--nodes=1", "--ntasks=1", f"--nodelist={p.node}", "--overlap",
                f"--job-name={p.name}", f"--output={out}", *p.srun_args]
        env = [f"{k}={v}" for k, v in p.env.items() if not _SECRET_NAME.search(k)]
        cmd = [*srun, *(["env", *env] if env else []), *p.argv]
        lines += [
            f"echo {shlex.quote(f'infersweep: starting {p.name} ({p.role}) on {p.node}')}",
            f"{shlex.join(cmd)} &",
            "pids+=($!)",
        ]
    lines += [
        "wait -n",
        "rc=$?",
        'if [ "$stopping" = 0 ]; then',
        '  echo "infersweep: a component exited (status $rc); stopping the others"',
        "fi",
        "stop_all",
        "wait",
        'echo "infersweep: all components stopped"',
        # A requested stop ends the job COMPLETED; a component that died ends it with that component's status.
        'if [ "$stopping" = 1 ]; then exit 0; fi',
        "exit $rc",
        "",
    ]
    return "\n".join(lines)


def sbatch_argv(spec: SlurmJobSpec, log_dir: str, submit_token: str | None = None) -> list[str]:
    """The `sbatch` command line (the script goes on stdin, so it needs no shared file). `submit_token` goes
    into the job's comment, so a submission whose answer was lost can still be found and cancelled."""
    argv = ["sbatch", "--parsable", f"--job-name={spec.job_name}", f"--nodes={len(spec.nodes)}",
            f"--nodelist={','.join(spec.nodes)}", f"--output={log_dir.rstrip('/')}/{spec.job_name}-%j.log",
            f"--time={spec.time_limit_min}",
            # Never rerun a serve group behind the DAG's back (Slurm requeues on node failure by default).
            "--no-requeue"]
    if submit_token:
        argv.append(f"--comment=infersweep:{submit_token}")
    if spec.partition:
        argv.append(f"--partition={spec.partition}")
    if spec.account:
        argv.append(f"--account={spec.account}")
    return [*argv, *spec.sbatch_args]


# --- what Slurm answers ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobStatus:
    """A job's state as the controller (or accounting) reports it."""

    state: str
    reason: str = ""
    exit_code: str = ""
    nodes: str = ""

    @property
    def terminal(self) -> bool:
        """Nothing of the job runs any more."""
        return self.state in TERMINAL_STATES

    @property
    def alive(self) -> bool:
        """Pending, starting or running (COMPLETING counts as ending: its components are being stopped)."""
        return not self.terminal and self.state != "COMPLETING"


def parse_job_id(stdout: str) -> str:
    """The job id from `sbatch --parsable` output (`<id>` or `<id>;<cluster>`)."""
    first = stdout.strip().splitlines()[0] if stdout.strip() else ""
    job_id = first.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise EngineError(f"sbatch --parsable printed {stdout.strip()[:200]!r}, not a job id")
    return job_id


_KV = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=")


def parse_scontrol_job(text: str) -> dict[str, str]:
    """`scontrol show job -o` output (one line of `Key=Value` pairs; values may hold spaces) as a dict."""
    out: dict[str, str] = {}
    matches = list(_KV.finditer(text.strip()))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text.strip())
        out.setdefault(m.group(1), text.strip()[m.end():end].strip())
    return out


def status_from_scontrol(text: str) -> JobStatus:
    """A `JobStatus` from `scontrol show job -o` output."""
    f = parse_scontrol_job(text)
    state = f.get("JobState", "")
    if not state:
        raise EngineError(f"scontrol printed no JobState: {text.strip()[:200]!r}")
    return JobStatus(state=state, reason=f.get("Reason", ""), exit_code=f.get("ExitCode", ""),
                     nodes=f.get("NodeList", ""))


def parse_sacct(text: str) -> JobStatus | None:
    """`sacct -n -P -X -o State,ExitCode,NodeList` output; None when accounting has no row.

    sacct writes "CANCELLED by 0"; the first word is the state.
    """
    for line in text.strip().splitlines():
        parts = line.split("|")
        if parts and parts[0].strip():
            return JobStatus(state=parts[0].split()[0], exit_code=parts[1] if len(parts) > 1 else "",
                             nodes=parts[2] if len(parts) > 2 else "")
    return None


# --- running Slurm's commands ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommandResult:
    """A finished command."""

    returncode: int
    stdout: str
    stderr: str


class CommandRunner(Protocol):
    """Where Slurm's client commands run and job log files are read (a submit host)."""

    def run(self, argv: Sequence[str], *, timeout_s: float, stdin: str | None = None,
            env: Mapping[str, str] | None = None) -> CommandResult:
        """Run `argv` with `env` added to the environment; raise EngineError when it cannot run or times
        out."""
        ...

    def read_tail(self, path: str, max_bytes: int) -> str | None:
        """The last `max_bytes` of a file (all of it when smaller); None when it does not exist."""
        ...


@dataclass
class LocalRunner:
    """Runs commands on this machine: a Slurm submit host (or `slurm_conf` names the cluster)."""

    slurm_conf: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def run(self, argv: Sequence[str], *, timeout_s: float, stdin: str | None = None,
            env: Mapping[str, str] | None = None) -> CommandResult:
        """Run `argv` (a list, never a shell string) with a timeout."""
        full_env = {**os.environ, **self.env, **(env or {})}
        if self.slurm_conf:
            full_env["SLURM_CONF"] = self.slurm_conf
        try:
            proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout_s,
                                  env=full_env, check=False)
        except FileNotFoundError as exc:
            raise SlurmUnavailableError(f"{argv[0]!r} not found: this machine is not a Slurm submit host "
                                        "(install the Slurm client commands, e.g. Debian's slurm-client)"
                                        ) from exc
        except subprocess.TimeoutExpired as exc:
            raise SlurmControllerError(f"{argv[0]} did not answer within {timeout_s:.0f} s (is slurmctld "
                                       "reachable?)") from exc
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    def read_tail(self, path: str, max_bytes: int) -> str | None:
        """Read the end of a local (or shared-filesystem) file."""
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - max_bytes))
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return None


class SSHRunner:
    """Runs commands on a submit host over SSH, through apache-airflow-providers-ssh's `SSHHook` (an Airflow
    connection: host, user, key). Needs that provider installed; imported only when used.

    Each command runs as `sh -c '…'` (whatever the login shell). Credential env values are written on stdin
    ahead of the command's own input and read into the environment there, so they never appear on a command
    line (`ps` on the submit host) or in sshd's `AcceptEnv` policy."""

    def __init__(self, ssh_conn_id: str, *, slurm_conf: str | None = None, conn_timeout_s: int = 30,
                 hook: Any = None) -> None:
        """`hook`: an SSHHook-like object (tests); default: `SSHHook(ssh_conn_id=…)` on first use."""
        self.ssh_conn_id = ssh_conn_id
        self.slurm_conf = slurm_conf
        self.conn_timeout_s = conn_timeout_s
        self._hook: Any = hook
        self._client: Any = None

    def _connect(self) -> Any:
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
        if self._hook is None:
            try:
                from airflow.providers.ssh.hooks.ssh import SSHHook
            except ImportError as exc:
                raise SlurmUnavailableError(f"ssh_conn_id={self.ssh_conn_id!r} needs the SSH provider: "
                                            "pip install apache-airflow-providers-ssh") from exc
            self._hook = SSHHook(ssh_conn_id=self.ssh_conn_id, conn_timeout=self.conn_timeout_s)
        try:
            self._client = self._hook.get_conn()
        except Exception as exc:  # paramiko raises many unrelated types; all mean "no submit host"
            raise SlurmControllerError(f"cannot reach the Slurm submit host of connection "
                                       f"{self.ssh_conn_id!r}: {type(exc).__name__}: {exc}") from exc
        return self._client

    def remote_command(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[str, str]:
        """(the remote command line, the stdin prefix that carries `env`'s values)."""
        names = sorted(env or {})
        bad = [n for n in names if not _ENV_NAME.match(n) or "\n" in (env or {})[n]]
        if bad:
            raise EngineError(f"env {bad} cannot be passed over SSH (names must be shell names, values one "
                              "line)")
        script = "".join(f"IFS= read -r {n} && export {n} && " for n in names)
        if self.slurm_conf:
            script += f"SLURM_CONF={shlex.quote(self.slurm_conf)} && export SLURM_CONF && "
        script += f"exec {shlex.join(argv)}"
        return shlex.join(["sh", "-c", script]), "".join(f"{(env or {})[n]}\n" for n in names)

    def run(self, argv: Sequence[str], *, timeout_s: float, stdin: str | None = None,
            env: Mapping[str, str] | None = None) -> CommandResult:
        """Run `argv` on the submit host; the channel times out after `timeout_s` without data."""
        command, prefix = self.remote_command(argv, env)
        client = self._connect()
        try:
            chan_in, chan_out, chan_err = client.exec_command(command, timeout=timeout_s)
            chan_in.write(prefix + (stdin or ""))
            chan_in.channel.shutdown_write()
            out = chan_out.read().decode("utf-8", errors="replace")
            err = chan_err.read().decode("utf-8", errors="replace")
            rc = int(chan_out.channel.recv_exit_status())
        except TimeoutError as exc:  # socket.timeout is TimeoutError since 3.10
            self._client = None
            raise SlurmControllerError(f"{argv[0]} over SSH ({self.ssh_conn_id}) did not answer within "
                                       f"{timeout_s:.0f} s") from exc
        except Exception as exc:  # OSError, EOFError, paramiko.SSHException: the session broke
            self._client = None
            raise SlurmControllerError(f"{argv[0]} over SSH ({self.ssh_conn_id}) failed: "
                                       f"{type(exc).__name__}: {exc}") from exc
        return CommandResult(rc, out, err)

    def read_tail(self, path: str, max_bytes: int) -> str | None:
        """`tail -c` on the submit host; None when the file does not exist."""
        res = self.run(["tail", "-c", str(max_bytes), "--", path], timeout_s=30.0)
        return res.stdout if res.returncode == 0 else None

    def close(self) -> None:
        """Close the SSH connection (the next command reconnects)."""
        if self._client is not None:
            self._client.close()
            self._client = None


# --- the engine --------------------------------------------------------------------------------------------
class SlurmEngine(Engine):
    """Serve groups as Slurm jobs. `start(recipe, node)` runs one recipe as a one-component job on
    `node.name`; `start_job(spec)` runs a multi-component group (prefill/decode workers and a router)."""

    name = "slurm"

    def __init__(
        self,
        *,
        runner: CommandRunner | None = None,
        slurm_conf: str | None = None,
        ssh_conn_id: str | None = None,
        log_dir: str | Path | None = None,
        command: Callable[[Recipe, Node | None], list[str]] | None = None,
        partition: str | None = None,
        account: str | None = None,
        time_limit_min: int = 720,
        sbatch_args: Sequence[str] = (),
        command_timeout_s: float = 30.0,
        poll_interval_s: float = 2.0,
        http_timeout_s: float = 5.0,
        kill_wait_s: float = 120.0,
    ) -> None:
        """Commands run on this machine (`LocalRunner`), or on the submit host of Airflow SSH connection
        `ssh_conn_id` (`SSHRunner`), or through `runner`. `log_dir` must be on a filesystem the submit host
        and every node share (job and component logs are written there by the nodes and read here).
        `command` maps a recipe to its argv (e.g. the simulator's `SimulatedEngine(...).command`); default:
        the recipe's argv. `kill_wait_s` bounds the wait after Slurm is asked to terminate the job (cover
        the cluster's KillWait and epilog)."""
        if runner is not None and (slurm_conf is not None or ssh_conn_id is not None):
            raise EngineError("pass either runner= or slurm_conf=/ssh_conn_id=, not both (they configure the "
                              "built-in runners)")
        for name, value in (("command_timeout_s", command_timeout_s), ("kill_wait_s", kill_wait_s),
                            ("poll_interval_s", poll_interval_s), ("http_timeout_s", http_timeout_s)):
            if not value > 0:
                raise EngineError(f"SlurmEngine {name} must be > 0, got {value}")
        if runner is None:
            runner = (SSHRunner(ssh_conn_id, slurm_conf=slurm_conf) if ssh_conn_id
                      else LocalRunner(slurm_conf=slurm_conf))
        self.runner: CommandRunner = runner
        self.log_dir = str(Path(log_dir) if log_dir else default_log_dir())
        self.command = command
        self.partition = partition
        self.account = account
        self.time_limit_min = time_limit_min
        self.sbatch_args = tuple(sbatch_args)
        self.command_timeout_s = command_timeout_s
        self.poll_interval_s = poll_interval_s
        self.http_timeout_s = http_timeout_s
        self.kill_wait_s = kill_wait_s

    # --- start -------------------------------------------------------------------------------------
    def spec_for(self, recipe: Recipe, node: Node | None) -> SlurmJobSpec:
        """A one-component job for `recipe` on `node` (its inventory name is the Slurm node name)."""
        if node is None:
            raise EngineError("the slurm backend needs a node: its name is the Slurm node the server runs on")
        argv = self.command(recipe, node) if self.command else list(recipe.argv)
        if not argv:
            raise EngineError("the recipe has an empty argv")
        try:
            return SlurmJobSpec(
                serve_group=recipe.serve_group or "server",
                processes=(SlurmProcess(name="server", role="aggregated", node=node.name, argv=tuple(argv),
                                        env=dict(recipe.env)),),
                entry="server", port=recipe.port, host=node.host, health_path=health_path(recipe.framework),
                ready_timeout_s=recipe.ready_timeout_s, time_limit_min=self.time_limit_min,
                partition=self.partition, account=self.account, sbatch_args=self.sbatch_args)
        except ValueError as exc:
            raise SlurmSpecError(f"cannot run this recipe as a Slurm job: {exc}") from exc

    def start(self, recipe: Recipe, node: Node | None = None) -> ServerHandle:
        """Submit the recipe as a one-component job and return at once (readiness is `wait_ready`)."""
        return self.start_job(self.spec_for(recipe, node), nodes=[node] if node is not None else ())

    def start_job(self, spec: SlurmJobSpec, *, nodes: Sequence[Node] = ()) -> ServerHandle:
        """Submit `spec` as one job and return at once. `nodes` (inventory entries of the leased nodes) give
        the entry's client address when `spec.host` is not set."""
        hosts = {n.name: n.host for n in nodes}
        host = spec.host or hosts.get(spec.entry_process.node, "127.0.0.1")
        # On the submit host (shared with the nodes): Slurm opens the output files before the script runs.
        mk = self.runner.run(["mkdir", "-p", "--", self.log_dir], timeout_s=self.command_timeout_s)
        if mk.returncode != 0:
            raise EngineError(f"cannot create the log dir {self.log_dir} on the submit host",
                              log_tail=mk.stderr.strip())
        script = batch_script(spec, self.log_dir)
        token = uuid.uuid4().hex[:16]
        argv = sbatch_argv(spec, self.log_dir, token)
        try:
            res = self.runner.run(argv, timeout_s=self.command_timeout_s, stdin=script, env=spec.secret_env())
        except SlurmControllerError:
            self._cancel_lost_submission(spec.job_name, token)
            raise
        if res.returncode != 0:
            raise EngineError(f"sbatch refused serve group {spec.serve_group!r} (exit {res.returncode})",
                              log_tail=redact(res.stderr.strip() or res.stdout.strip()))
        job_id = parse_job_id(res.stdout)
        prefix = f"{self.log_dir.rstrip('/')}/{spec.job_name}-{job_id}"
        return ServerHandle(
            base_url=f"http://{host}:{spec.port}", id=job_id, log_path=f"{prefix}.log", backend=self.name,
            node=spec.entry_process.node,
            extra={
                "job_id": job_id, "job_name": spec.job_name, "nodes": spec.nodes, "entry": spec.entry,
                "components": [{"name": p.name, "role": p.role, "node": p.node,
                                "argv": redact_argv(list(p.argv)), "log_path": f"{prefix}-{p.name}.log",
                                "base_url": (f"http://{p.host or hosts.get(p.node, '127.0.0.1')}:{p.port}"
                                             if p.port is not None and p.name != spec.entry else None)}
                               for p in spec.launch_order()],
                "sbatch_argv": argv, "ready_timeout_s": spec.ready_timeout_s, "health_path": spec.health_path,
                "started_at": time.time(), "job_state": "PENDING",
            },
        )

    def _cancel_lost_submission(self, job_name: str, token: str) -> None:
        # sbatch may have queued the job before its answer was lost: find it by its comment and cancel it,
        # so a timed-out start never leaves a serve group running that no handle knows about.
        try:
            res = self.runner.run(["squeue", "-h", "-n", job_name, "-o", "%i|%k"],
                                  timeout_s=self.command_timeout_s)
            for line in res.stdout.splitlines():
                job_id, _, comment = line.partition("|")
                if comment.strip() == f"infersweep:{token}" and job_id.strip().isdigit():
                    self._scancel(job_id.strip())
        except EngineError:
            pass  # the controller is still unreachable; the original error is what the caller sees

    # --- job state ---------------------------------------------------------------------------------
    def job_status(self, job_id: str) -> JobStatus:
        """The job's state: `scontrol show job` while the controller knows it, else `sacct`, else GONE."""
        res = self.runner.run(["scontrol", "show", "job", "-o", job_id], timeout_s=self.command_timeout_s)
        if res.returncode == 0 and "JobState=" in res.stdout:
            return status_from_scontrol(res.stdout)
        if "invalid job id" not in (res.stderr + res.stdout).lower():
            raise SlurmControllerError(f"scontrol show job {job_id} failed (exit {res.returncode})",
                                       log_tail=res.stderr.strip()[-2000:])
        # Purged from the controller (MinJobAge): accounting may still know how it ended.
        acct = self.runner.run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode,NodeList"],
                               timeout_s=self.command_timeout_s)
        status = parse_sacct(acct.stdout) if acct.returncode == 0 else None
        return status or JobStatus(state="GONE", reason="purged by the controller; no accounting record")

    def _status(self, handle: ServerHandle) -> JobStatus | None:
        job_id = handle.extra.get("job_id")
        if not job_id:
            return None
        status = self.job_status(str(job_id))
        self._record(handle, status)
        return status

    @staticmethod
    def _record(handle: ServerHandle, status: JobStatus) -> None:
        handle.extra["job_state"] = status.state
        handle.extra["job_reason"] = status.reason
        if status.terminal:
            handle.extra["final_state"] = status.state
            handle.extra["exit_code"] = status.exit_code

    def is_alive(self, handle: ServerHandle) -> bool:
        """Whether the job is pending, starting or running (any component's death ends it)."""
        status = self._status(handle)
        return status is not None and status.alive

    # --- readiness ---------------------------------------------------------------------------------
    def wait_ready(self, handle: ServerHandle, deadline_s: float | None = None) -> None:
        """Poll each worker with a `port` (health, then /v1/models), then the entry; fail at once when the
        job ends or cannot start. Workers first, so a worker failing at start is never hidden by an
        entry (a router) that answers before the servers behind it are up."""
        deadline = (deadline_s if deadline_s is not None
                    else float(handle.extra.get("ready_timeout_s", 3600.0)))
        end = time.monotonic() + deadline

        def alive() -> bool:
            status = self._status(handle)
            if status is None:
                return False
            return status.alive and not (status.state in PENDING_STATES
                                         and status.reason in HOPELESS_PENDING_REASONS)

        targets = [(c["base_url"], f"component {c['name']} on {c['node']}")
                   for c in handle.extra.get("components", []) if c.get("base_url")]
        targets.append((handle.base_url, f"entry {handle.extra.get('entry', '')}".strip()))
        try:
            for base_url, what in targets:
                info = wait_ready(
                    base_url, deadline_s=max(0.0, end - time.monotonic()), is_alive=alive,
                    logs=lambda n: self.logs(handle, tail=n),
                    what=f"slurm job {handle.id} ({handle.extra.get('job_name')}, {what})",
                    poll_interval_s=self.poll_interval_s, http_timeout_s=self.http_timeout_s,
                    health=str(handle.extra.get("health_path", "/health")),
                )
        except EngineError as exc:
            first = str(exc).split("\n--- last log lines ---", 1)[0]
            state = f"{handle.extra.get('job_state')}"
            if handle.extra.get("job_reason") not in (None, "", "None"):
                state += f", reason {handle.extra['job_reason']}"
            raise EngineError(f"{first} [job state {state}]", log_tail=exc.log_tail) from exc
        record_ready(handle, info)

    # --- logs --------------------------------------------------------------------------------------
    def logs(self, handle: ServerHandle, tail: int | None = None) -> str:
        """The job's output (the batch script's lines, srun's errors) and then each component's log, each
        under a `==> name <==` header; with `tail`, the last `tail` lines of each."""
        parts: list[str] = []
        files = [("job", handle.log_path)] + [(f"{c['name']} ({c['role']} on {c['node']})", c["log_path"])
                                              for c in handle.extra.get("components", [])]
        for title, path in files:
            if not path:
                continue
            text = self.runner.read_tail(path, _TAIL_BYTES) if tail is not None else self._read_all(path)
            if text is None:
                continue
            parts.append(f"==> {title} <==\n{tail_lines(text, tail).rstrip()}")
        return redact("\n".join(parts))

    def _read_all(self, path: str) -> str | None:
        # The whole file through the runner's tail with a cap, so a runaway log cannot exhaust memory.
        return self.runner.read_tail(path, 64 * 1024 * 1024)

    # --- stop --------------------------------------------------------------------------------------
    def stop(self, handle: ServerHandle, grace_s: float = 30.0) -> str:
        """Collect logs, TERM every step, wait `grace_s`, then have Slurm terminate the job (KILL after its
        KillWait), and follow the job to a terminal state. Idempotent; safe on a pending or failed job.

        Records `final_state` and `exit_code` on the handle; raises EngineError when the job is still not
        over after `kill_wait_s` (Slurm could not kill it: a node is unresponsive)."""
        self.logs(handle)  # collected before any signal, as the interface promises
        job_id = handle.extra.get("job_id")
        if handle.extra.get("stopped") or not job_id:
            handle.extra["stopped"] = True
            return self.logs(handle)
        status = self.job_status(str(job_id))
        self._record(handle, status)
        if not status.terminal:
            if status.state in PENDING_STATES:
                self._scancel(job_id)  # never started: nothing to stop gracefully
            elif status.state != "COMPLETING":
                self._scancel(job_id, "--signal=TERM", "--full")
            status = self._wait_terminal(handle, grace_s)
            if not status.terminal:
                handle.extra["killed"] = True
                self._scancel(job_id)
                status = self._wait_terminal(handle, self.kill_wait_s)
            if not status.terminal:
                self._scancel(job_id, "--signal=KILL", "--full")
                status = self._wait_terminal(handle, self.kill_wait_s)
            if not status.terminal:
                raise EngineError(f"slurm job {job_id} is still {status.state} after TERM, scancel and KILL "
                                  f"({grace_s:.0f} s + 2 x {self.kill_wait_s:.0f} s)",
                                  log_tail=self.logs(handle, tail=LOG_TAIL_LINES))
        handle.extra["stopped"] = True
        return self.logs(handle)

    def _scancel(self, job_id: str, *options: str) -> None:
        # Exit status ignored on purpose: the job may end between our state query and the signal; the state
        # that follows decides. A controller that does not answer raises (timeout) and is reported.
        self.runner.run(["scancel", *options, job_id], timeout_s=self.command_timeout_s)

    def _wait_terminal(self, handle: ServerHandle, timeout_s: float) -> JobStatus:
        end = time.monotonic() + timeout_s
        delay = 0.1
        while True:
            status = self.job_status(str(handle.extra["job_id"]))
            self._record(handle, status)
            if status.terminal or time.monotonic() >= end:
                return status
            time.sleep(min(delay, max(0.0, end - time.monotonic())))
            delay = min(delay * 2, self.poll_interval_s)
