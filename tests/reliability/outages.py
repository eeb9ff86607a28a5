"""Fault injection for the reliability tests: a private dockerd that can be restarted, a Postgres outage.

Both are shared-nothing where possible: the dockerd has its own socket, data root and exec root under a short
/tmp path; Postgres is the machine's cluster (`pg_ctlcluster`), so its outage is kept as short as the test
allows and the cluster is always started again, whatever happens in the test.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import stop_process_groups

DOCKERD_START_TIMEOUT_S = 60.0
ROOTFS_IMAGE = "infersweep-test/rootfs:1"


class PrivateDockerd:
    """A dockerd on its own socket whose daemon can be stopped and started again over the same data root."""

    def __init__(self) -> None:
        exe = shutil.which("dockerd")
        if exe is None:
            pytest.skip("dockerd is not installed (Debian package docker.io; .ci/apt.txt lists it)")
        if os.geteuid() != 0:
            pytest.skip("dockerd needs root on this machine (rootless docker is not set up)")
        self.exe = exe
        self.root = Path(tempfile.mkdtemp(prefix="isr", dir="/tmp"))  # unix socket paths max out at 108 bytes
        self.sock = self.root / "d.sock"
        self.url = f"unix://{self.sock}"
        self.log_path = self.root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def start(self) -> None:
        """Start the daemon and wait until it answers `ping` (skips the test when it cannot run here)."""
        import docker

        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [self.exe, "-H", self.url, "--data-root", str(self.root / "data"), "--pidfile",
                 str(self.root / "d.pid"), "--exec-root", str(self.root / "ex")],
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + DOCKERD_START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                pytest.skip(f"dockerd exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            if self.sock.exists():
                client = docker.DockerClient(base_url=self.url, timeout=10)
                try:
                    client.ping()
                    return
                except Exception:  # not up yet: poll again until the deadline
                    pass
                finally:
                    client.close()
            if time.monotonic() > deadline:
                pytest.skip(f"dockerd did not answer within {DOCKERD_START_TIMEOUT_S:.0f} s:\n{self.log_tail()}")
            time.sleep(0.25)

    def stop(self) -> None:
        """Stop the daemon the way an upgrade or a crash-restart does (SIGTERM; its containers stop too)."""
        if self.proc is not None:
            stop_process_groups([self.proc], grace_s=60)
            self.proc = None

    def import_rootfs(self) -> str:
        """`docker import` the minimal rootfs into this daemon."""
        return import_rootfs(self.url, ROOTFS_IMAGE)

    def close(self) -> None:
        """Remove every container, stop the daemon, unmount and delete its root."""
        if self.proc is not None and self.proc.poll() is None:
            import docker

            with contextlib.suppress(Exception):
                client = docker.DockerClient(base_url=self.url, timeout=30)
                try:
                    for c in client.containers.list(all=True):
                        c.remove(force=True)
                finally:
                    client.close()
        self.stop()
        subprocess.run(["umount", "-R", str(self.root / "data")], capture_output=True, check=False, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_dockerd() -> Iterator[PrivateDockerd]:
    """A started private dockerd, closed (containers, daemon, data root) on exit."""
    d = PrivateDockerd()
    try:
        d.start()
        yield d
    finally:
        d.close()


# ---------------------------------------------------------------------------------------------- Postgres
PG_HOST, PG_PORT = "127.0.0.1", 5432


def pg_cluster() -> tuple[str, str]:
    """(version, name) of the cluster serving port 5432, from `pg_lsclusters`; skips when there is none."""
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        pytest.skip("pg_lsclusters/pg_ctlcluster not installed (Debian postgresql-common): cannot restart Postgres")
    if os.geteuid() != 0:
        pytest.skip("restarting the Postgres cluster needs root")
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, timeout=30, check=True)
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == str(PG_PORT) and parts[3].startswith("online"):
            return parts[0], parts[1]
    pytest.skip(f"no online Postgres cluster on port {PG_PORT} in `pg_lsclusters`:\n{out.stdout}")


def pg_accepting(timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=timeout_s):
            return True
    except OSError:
        return False


def _ctl(version: str, name: str, action: str) -> None:
    subprocess.run(["pg_ctlcluster", version, name, action], check=True, capture_output=True, timeout=120)


class Outage:
    """Timing of one Postgres outage: `elapsed()` while down, `total_s` (stop issued → accepting) after."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.total_s: float | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@contextlib.contextmanager
def postgres_down() -> Iterator[Outage]:
    """Stop the machine's Postgres (fast mode: open connections are cut, as in a crash-restart).

    On exit the cluster is started again and waited for, also when the body raised: the cluster is shared
    infrastructure, so the body should poll for what it needs with a short bound and leave.
    """
    version, name = pg_cluster()
    outage = Outage()
    _ctl(version, name, "stop")  # pg_ctlcluster's default mode is "fast"
    try:
        yield outage
    finally:
        _ctl(version, name, "start")
        deadline = time.monotonic() + 60
        while not pg_accepting() and time.monotonic() < deadline:
            time.sleep(0.1)
        outage.total_s = outage.elapsed()


@contextlib.contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """`tests.conftest.fresh_pg_database`, skipping (not erroring) when Postgres is down."""
    from tests.conftest import fresh_pg_database as fresh

    if not pg_accepting():
        pytest.skip(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}")
    with fresh(prefix) as url:
        yield url


def import_rootfs(docker_url: str, image: str) -> str:
    """`docker import` a rootfs of empty dirs + usr-merge symlinks as `image` (the host's /usr is bind-mounted
    at run time: nothing can be pulled here, so every Docker-lane test runs on this)."""
    import docker

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("usr", "etc", "tmp", "proc", "sys", "dev", "root", "run", "var/tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d.endswith("tmp") else 0o755
            tar.addfile(info)
        for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")):
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    client = docker.DockerClient(base_url=docker_url, timeout=60)
    try:
        repo, tag = image.split(":")
        client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=tag)
    finally:
        client.close()
    return image
