"""A throwaway Slurm cluster on this machine: one `slurmctld` and one `slurmd` per node name.

Debian's slurm-wlm (22.05) is built with multiple-slurmd support: every node is a `NodeName=` line with
`NodeHostname=localhost`, `NodeAddr=127.0.0.1` and its own `Port=`, and its slurmd runs as `slurmd -N
<name>`. Authentication is `auth/none` + `cred/none` (plugins Debian ships), so no munge daemon or key is
needed; this is only acceptable because everything listens on 127.0.0.1 and lives for one test session.

Everything else is in a temp dir: slurm.conf, state, spool, pid and log files. Client commands find it
through `SLURM_CONF` (`SlurmCluster.env`). `stop()` cancels every job, waits for the jobs to end (so no
slurmstepd or task outlives the cluster), asks the daemons to shut down and kills the ones that do not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

SLURM_PROGRAMS = ("slurmctld", "slurmd", "sbatch", "srun", "scontrol", "scancel", "squeue", "sinfo")
CMD_TIMEOUT_S = 20.0


class ClusterUnavailable(RuntimeError):
    """The cluster cannot run here; the message is the skip reason."""


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def missing_programs() -> list[str]:
    """Slurm programs not found on PATH (or /usr/sbin, where Debian puts the daemons)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [p for p in SLURM_PROGRAMS if shutil.which(p, path=path) is None]


def slurm_conf_text(root: Path, *, nodes: list[str], ctld_port: int, node_ports: list[int], cpus: int,
                    cluster_name: str) -> str:
    """The slurm.conf of a one-machine cluster (state, spool, logs under `root`)."""
    host = socket.gethostname().split(".")[0]
    lines = [
        f"ClusterName={cluster_name}",
        # slurmctld checks that it runs on SlurmctldHost (its short host name); it listens on 127.0.0.1 only.
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/none",
        "CredType=cred/none",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool/%n",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd-%n.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log",
        f"SlurmdLogFile={root}/log/slurmd-%n.log",
        # No cgroups in containers: track tasks by parent PID, bind nothing.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "SchedulerType=sched/backfill",
        "ReturnToService=2",
        # Every slurmd sees the whole machine; the configured CPUs stand, whatever the hardware says.
        "SlurmdParameters=config_overrides",
        "KillWait=5",
        "MinJobAge=600",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=60",
    ]
    for name, port in zip(nodes, node_ports, strict=True):
        lines.append(f"NodeName={name} NodeHostname=localhost NodeAddr=127.0.0.1 Port={port} CPUs={cpus} "
                     "State=UNKNOWN")
    lines.append(f"PartitionName=debug Nodes={','.join(nodes)} Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


@dataclass
class SlurmCluster:
    """A running throwaway cluster. Use `start_cluster()`; `stop()` is idempotent."""

    root: Path
    nodes: list[str]
    conf: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """The environment client commands need to reach this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster (with a timeout)."""
        return subprocess.run(list(argv), capture_output=True, text=True, env=self.env, timeout=CMD_TIMEOUT_S,
                              check=False)

    def node_states(self) -> dict[str, str]:
        """sinfo's state per node (e.g. idle, alloc, down*)."""
        try:
            res = self.run("sinfo", "-h", "-N", "-o", "%N %t")
        except subprocess.TimeoutExpired:
            return {}
        return dict(line.split() for line in res.stdout.splitlines() if len(line.split()) == 2)

    def logs(self) -> str:
        """The daemons' log files, for a skip or failure message."""
        out = []
        for f in sorted((self.root / "log").glob("*.log")):
            out.append(f"==> {f.name} <==\n" + "\n".join(f.read_text(errors="replace").splitlines()[-20:]))
        return "\n".join(out)

    def stop(self) -> None:
        """Cancel all jobs, wait for them to end, shut the daemons down, kill what is left."""
        if not self.procs:
            return
        try:
            ctld_alive = self.procs[0].poll() is None
            if ctld_alive:
                self.run("scancel", "--full", "--signal=KILL", "--partition=debug")
                self.run("scancel", "--partition=debug")
                end = time.monotonic() + 60
                while time.monotonic() < end and self.run("squeue", "-h", "-o", "%i").stdout.strip():
                    time.sleep(0.5)
                self.run("scontrol", "shutdown")
        except subprocess.TimeoutExpired:
            pass
        finally:
            for proc in self.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=15)
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=15)
            self.procs.clear()


def start_cluster(root: Path, nodes: list[str], *, cpus: int = 2, up_timeout_s: float = 60.0) -> SlurmCluster:
    """Write the config and start slurmctld and one slurmd per node name; wait until every node is idle.

    Raises ClusterUnavailable (the skip reason) when Slurm is not installed or the daemons do not come up;
    whatever was started is stopped first.
    """
    missing = missing_programs()
    if missing:
        raise ClusterUnavailable(f"Slurm is not installed (missing {', '.join(missing)}); install Debian's "
                                 "slurm-wlm (listed in .ci/apt.txt)")
    if os.geteuid() != 0:
        # slurmd must run as root to start tasks (setuid to the job's user) with SlurmdUser=root.
        raise ClusterUnavailable("the throwaway Slurm cluster needs root (slurmd starts tasks as the job's "
                                 "user)")
    for d in ("state", "log", "spool"):
        (root / d).mkdir(parents=True, exist_ok=True)
    ports = _free_ports(1 + len(nodes))
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf_text(root, nodes=nodes, ctld_port=ports[0], node_ports=ports[1:], cpus=cpus,
                                    cluster_name=f"isw{os.getpid()}"))
    cluster = SlurmCluster(root=root, nodes=nodes, conf=conf)
    sbin = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    ctld = shutil.which("slurmctld", path=sbin) or "slurmctld"
    slurmd = shutil.which("slurmd", path=sbin) or "slurmd"
    try:
        # -D: foreground, so the daemons are our children and `stop` can always reach them; -c: no old state.
        cluster.procs.append(_spawn([ctld, "-D", "-c", "-i"], root / "log" / "slurmctld.out", cluster.env))
        _wait(lambda: cluster.run("scontrol", "ping").returncode == 0, up_timeout_s, cluster, "slurmctld")
        for name in nodes:
            cluster.procs.append(_spawn([slurmd, "-D", "-N", name], root / "log" / f"slurmd-{name}.out",
                                        cluster.env))
        _wait(lambda: all(s == "idle" for s in cluster.node_states().values())
              and len(cluster.node_states()) == len(nodes), up_timeout_s, cluster, "slurmd")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _spawn(argv: list[str], out: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(out, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def _wait(ready: Callable[[], bool], timeout_s: float, cluster: SlurmCluster, what: str) -> None:
    end = time.monotonic() + timeout_s
    while True:
        try:
            if ready():
                return
        except subprocess.TimeoutExpired:
            pass
        dead = [p.args for p in cluster.procs if p.poll() is not None]
        if dead or time.monotonic() >= end:
            why = f"exited: {dead}" if dead else f"not up after {timeout_s:.0f} s"
            raise ClusterUnavailable(f"{what} did not come up ({why}); node states {cluster.node_states()}\n"
                                     f"{cluster.logs()}")
        time.sleep(0.3)


@contextlib.contextmanager
def slurm_cluster(root: Path, nodes: list[str]) -> Iterator[SlurmCluster]:
    """`start_cluster` as a context manager that always stops the daemons."""
    cluster = start_cluster(root, nodes)
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass
class SshSubmitHost:
    """A throwaway sshd on 127.0.0.1 that lets root in with a generated key: the cluster's submit host as an
    SSH connection would reach it. `airflow_conn()` is the AIRFLOW_CONN_* value for it."""

    port: int
    key_file: Path
    proc: subprocess.Popen[bytes]

    def airflow_conn(self) -> str:
        """The connection as Airflow's JSON form (for an AIRFLOW_CONN_<ID> env var)."""
        import json

        return json.dumps({"conn_type": "ssh", "host": "127.0.0.1", "port": self.port, "login": "root",
                           "extra": {"key_file": str(self.key_file), "no_host_key_check": True}})

    def stop(self) -> None:
        """Stop sshd (idempotent)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def start_sshd(root: Path, up_timeout_s: float = 30.0) -> SshSubmitHost:
    """Start sshd in the foreground with its own host key, client key and config under `root`.

    Raises ClusterUnavailable (the skip reason) when sshd is not installed or does not come up."""
    sshd = shutil.which("sshd", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    keygen = shutil.which("ssh-keygen")
    if not sshd or not keygen:
        raise ClusterUnavailable("sshd/ssh-keygen not installed (Debian's openssh-server, listed in "
                                 ".ci/apt.txt)")
    if os.geteuid() != 0:
        raise ClusterUnavailable("the throwaway sshd logs in as root and needs root to start")
    root.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True,
                       timeout=CMD_TIMEOUT_S, capture_output=True)
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    port = _free_ports(1)[0]
    (root / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {root}/host_key",
        f"AuthorizedKeysFile {root}/authorized_keys", "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
        f"PidFile {root}/sshd.pid", "LogLevel ERROR", ""]))
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    proc = _spawn([sshd, "-D", "-e", "-f", str(root / "sshd_config")], root / "sshd.log", dict(os.environ))
    host = SshSubmitHost(port=port, key_file=root / "client_key", proc=proc)
    end = time.monotonic() + up_timeout_s
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            return host
        if proc.poll() is not None or time.monotonic() >= end:
            host.stop()
            log = (root / "sshd.log").read_text(errors="replace")[-2000:]
            raise ClusterUnavailable(f"sshd did not come up: {log}")
        time.sleep(0.2)
