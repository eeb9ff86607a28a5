"""The Slurm backend: the job it submits (unit), and serve groups on a real throwaway Slurm cluster
(integration: Debian's slurmctld + one slurmd per node name on this machine; skipped when Slurm is absent)."""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import orjson
import psutil
import pytest
from pydantic import ValidationError

from infersweep.config.inventory import Node
from infersweep.engines.base import EngineError, ServerHandle
from infersweep.engines.factory import sim_tokenizer_dir
from infersweep.engines.registry import get_engine
from infersweep.engines.sim.config import sim_command
from infersweep.engines.sim_engine import SimulatedEngine
from infersweep.engines.slurm import (
    CommandResult,
    JobStatus,
    LocalRunner,
    SlurmControllerError,
    SlurmEngine,
    SlurmJobSpec,
    SlurmProcess,
    SlurmSpecError,
    SlurmUnavailableError,
    SSHRunner,
    batch_script,
    parse_job_id,
    parse_sacct,
    parse_scontrol_job,
    sbatch_argv,
    status_from_scontrol,
)
from infersweep.recipes.model import Recipe

from .slurm_cluster import ClusterUnavailable, SlurmCluster, SshSubmitHost, start_cluster, start_sshd

NODES = ["isw1", "isw2", "isw3"]


def _spec(**over: object) -> SlurmJobSpec:
    base: dict[str, object] = {
        "serve_group": "g 1/pd",
        "processes": (
            SlurmProcess(name="router", role="router", node="isw1", argv=("router", "--port", "8000")),
            SlurmProcess(name="prefill-0", role="prefill", node="isw2", argv=("serve", "it's", "$HOME;rm"),
                         env={"A": "x y", "HF_TOKEN": "hf_secretvalue123"}),
            SlurmProcess(name="decode-0", role="decode", node="isw3", argv=("serve", "--x"),
                         srun_args=("--gpus=8",)),
        ),
        "entry": "router",
        "port": 8000,
    }
    base.update(over)
    return SlurmJobSpec.model_validate(base)


# --- unit: what Slurm gets ----------------------------------------------------------------------------
@pytest.mark.unit
def test_sbatch_argv_names_the_nodes_and_the_job() -> None:
    argv = sbatch_argv(_spec(partition="gpu", account="perf", sbatch_args=("--exclusive",)), "/shared/logs/")
    assert argv[:2] == ["sbatch", "--parsable"]
    assert "--nodes=3" in argv and "--nodelist=isw1,isw2,isw3" in argv
    assert "--job-name=isw-g_1_pd" in argv
    assert "--output=/shared/logs/isw-g_1_pd-%j.log" in argv
    assert "--time=720" in argv and "--no-requeue" in argv
    assert argv[-3:] == ["--partition=gpu", "--account=perf", "--exclusive"]
    assert "--comment=infersweep:tok1" in sbatch_argv(_spec(), "/l", "tok1")


@pytest.mark.unit
def test_batch_script_starts_workers_first_entry_last_quoted_and_without_secrets() -> None:
    script = batch_script(_spec(), "/shared/logs")
    srun_lines = [line for line in script.splitlines() if line.startswith("srun ")]
    assert len(srun_lines) == 3
    argvs = [shlex.split(line.removesuffix(" &")) for line in srun_lines]
    # Workers in the given order, then the entry (router) last.
    assert [a[3] for a in argvs] == ["--nodelist=isw2", "--nodelist=isw3", "--nodelist=isw1"]
    prefill = argvs[0]
    assert prefill[:5] == ["srun", "--nodes=1", "--ntasks=1", "--nodelist=isw2", "--overlap"]
    assert "--job-name=prefill-0" in prefill
    assert "--output=/shared/logs/isw-g_1_pd-%j-prefill-0.log" in prefill
    # The shell gets back exactly the argv and env (quoting survives spaces, quotes, $ and ;).
    assert prefill[-5:] == ["env", "A=x y", "serve", "it's", "$HOME;rm"]
    assert argvs[1][-3:] == ["--gpus=8", "serve", "--x"]
    # Credentials never appear in the script text; they reach the job through sbatch's environment.
    assert "hf_secretvalue123" not in script and "HF_TOKEN" not in script
    assert _spec().secret_env() == {"HF_TOKEN": "hf_secretvalue123"}
    # The job ends when the first component exits, after stopping the others.
    assert script.index("wait -n") > script.rindex("pids+=")
    assert "stop_all\nwait\n" in script
    syntax = subprocess.run([shutil.which("bash") or "/bin/bash", "-n"], input=script, text=True, check=False,
                            timeout=10)
    assert syntax.returncode == 0


@pytest.mark.unit
def test_spec_validation_names_the_problem() -> None:
    with pytest.raises(ValidationError, match="entry 'nope' is not one of the components"):
        _spec(entry="nope")
    with pytest.raises(ValidationError, match="unique"):
        _spec(processes=(SlurmProcess(name="a", node="n1", argv=("x",)),
                         SlurmProcess(name="a", node="n2", argv=("y",))), entry="a")
    with pytest.raises(ValidationError, match="one host name"):
        SlurmProcess(name="a", node="n[1-2]", argv=("x",))
    with pytest.raises(ValidationError, match="shell variable names"):
        SlurmProcess(name="a", node="n1", argv=("x",), env={"A-B": "1"})
    with pytest.raises(ValidationError, match="must not contain '='"):
        SlurmProcess(name="a", node="n1", argv=("A=1",))
    with pytest.raises(ValidationError, match="different values"):
        _spec(processes=(SlurmProcess(name="a", node="n1", argv=("x",), env={"HF_TOKEN": "one"}),
                         SlurmProcess(name="b", node="n2", argv=("x",), env={"HF_TOKEN": "two"})), entry="a")
    with pytest.raises(ValidationError, match="extra"):
        SlurmJobSpec.model_validate({**_spec().model_dump(), "bogus": 1})


@pytest.mark.unit
def test_parsing_what_slurm_prints() -> None:
    assert parse_job_id("1234\n") == "1234"
    assert parse_job_id("77;cluster-a\n") == "77"
    with pytest.raises(EngineError, match="not a job id"):
        parse_job_id("sbatch: error: nope")
    line = ("JobId=12 JobName=isw-g UserId=root(0) JobState=RUNNING Reason=None ExitCode=0:0 "
            "NodeList=isw[1-2] Command=/tmp/a b.sh WorkDir=/tmp")
    fields = parse_scontrol_job(line)
    assert fields["JobState"] == "RUNNING" and fields["NodeList"] == "isw[1-2]"
    assert fields["Command"] == "/tmp/a b.sh"  # values with spaces stay whole
    st = status_from_scontrol(line)
    assert st.alive and not st.terminal
    failed = status_from_scontrol("JobId=12 JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0")
    assert failed.terminal and not failed.alive and failed.exit_code == "3:0"
    assert not JobStatus("COMPLETING").alive and not JobStatus("COMPLETING").terminal
    assert JobStatus("PENDING").alive
    acct = parse_sacct("CANCELLED by 0|0:15|isw[1-2]\n")
    assert acct == JobStatus(state="CANCELLED", exit_code="0:15", nodes="isw[1-2]")
    assert parse_sacct("") is None


class FakeRunner:
    """Answers Slurm commands from a script of results; records what ran."""

    def __init__(self, answers: Mapping[str, list[CommandResult]]) -> None:
        self.answers = {k: list(v) for k, v in answers.items()}
        self.calls: list[list[str]] = []
        self.stdin: list[str | None] = []

    def run(self, argv: Sequence[str], *, timeout_s: float, stdin: str | None = None,
            env: Mapping[str, str] | None = None) -> CommandResult:
        assert timeout_s > 0
        self.calls.append(list(argv))
        self.stdin.append(stdin)
        if argv[0] == "mkdir" and "mkdir" not in self.answers:
            return CommandResult(0, "", "")
        queue = self.answers[argv[0]]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def read_tail(self, path: str, max_bytes: int) -> str | None:
        return None


def _state(state: str, reason: str = "None") -> CommandResult:
    return CommandResult(0, f"JobId=5 JobState={state} Reason={reason} ExitCode=0:0 NodeList=n1\n", "")


@pytest.mark.unit
def test_stop_terms_then_cancels_and_is_idempotent(tmp_path: Path) -> None:
    runner = FakeRunner({"sbatch": [CommandResult(0, "5\n", "")], "scancel": [CommandResult(0, "", "")],
                         "scontrol": [_state("RUNNING"), _state("RUNNING"), _state("RUNNING"),
                                      _state("CANCELLED")]})
    eng = SlurmEngine(runner=runner, log_dir=tmp_path, poll_interval_s=0.01, kill_wait_s=5)
    handle = eng.start(Recipe(image="x", argv=("serve",), model="m", port=9000, serve_group="sg"),
                       Node(name="n1", runner="h100", host="10.0.0.7"))
    assert handle.id == "5" and handle.base_url == "http://10.0.0.7:9000" and handle.node == "n1"
    eng.stop(handle, grace_s=0.0)
    scancels = [c for c in runner.calls if c[0] == "scancel"]
    assert scancels == [["scancel", "--signal=TERM", "--full", "5"], ["scancel", "5"]]
    assert handle.extra["final_state"] == "CANCELLED" and handle.extra["killed"] is True
    n = len(runner.calls)
    eng.stop(handle)
    assert len(runner.calls) == n  # second stop: nothing sent


@pytest.mark.unit
def test_stop_cancels_a_pending_job_at_once_and_a_failed_start_is_safe(tmp_path: Path) -> None:
    runner = FakeRunner({"sbatch": [CommandResult(0, "6\n", "")], "scancel": [CommandResult(0, "", "")],
                         "scontrol": [_state("PENDING", "Resources"), _state("CANCELLED")]})
    eng = SlurmEngine(runner=runner, log_dir=tmp_path, poll_interval_s=0.01)
    handle = eng.start_job(_spec())
    eng.stop(handle)
    assert [c for c in runner.calls if c[0] == "scancel"] == [["scancel", "6"]]
    # A handle whose submission never produced a job (e.g. rebuilt after a crash) stops without a call.
    empty = ServerHandle(base_url="http://x:1", id="", log_path=None, backend="slurm")
    eng.stop(empty)
    assert empty.extra["stopped"] is True


@pytest.mark.unit
def test_sbatch_refusal_and_controller_errors_are_engine_errors(tmp_path: Path) -> None:
    runner = FakeRunner({"sbatch": [CommandResult(1, "", "sbatch: error: Invalid node name specified\n")],
                         "scontrol": [CommandResult(1, "", "slurm_load_jobs error: Unable to contact slurm "
                                                           "controller (connect failure)\n")]})
    eng = SlurmEngine(runner=runner, log_dir=tmp_path)
    with pytest.raises(EngineError, match="sbatch refused") as exc:
        eng.start_job(_spec())
    assert "Invalid node name" in exc.value.log_tail
    handle = ServerHandle(base_url="http://x:1", id="9", log_path=None, backend="slurm",
                          extra={"job_id": "9"})
    with pytest.raises(SlurmControllerError, match="scontrol show job 9 failed"):
        eng.is_alive(handle)
    # The secret env goes to sbatch as environment (stdin holds the script without it).
    sbatch_stdin = runner.stdin[[c[0] for c in runner.calls].index("sbatch")]
    assert sbatch_stdin is not None and "hf_secretvalue123" not in sbatch_stdin


@pytest.mark.unit
def test_a_submission_whose_answer_is_lost_is_found_and_cancelled(tmp_path: Path) -> None:
    class LostAnswer(FakeRunner):
        def run(self, argv: Sequence[str], **kw: object) -> CommandResult:  # type: ignore[override]
            if argv[0] == "sbatch":
                self.calls.append(list(argv))
                self.token = next(a for a in argv if a.startswith("--comment=")).split("=", 1)[1]
                raise SlurmControllerError("sbatch did not answer within 30 s")
            if argv[0] == "squeue":
                self.calls.append(list(argv))
                return CommandResult(0, f"17|other\n18|{self.token}\n", "")
            return super().run(argv, **kw)  # type: ignore[arg-type]

    runner = LostAnswer({"scancel": [CommandResult(0, "", "")]})
    with pytest.raises(SlurmControllerError):
        SlurmEngine(runner=runner, log_dir=tmp_path).start_job(_spec())
    assert [c for c in runner.calls if c[0] == "scancel"] == [["scancel", "18"]]


@pytest.mark.unit
def test_purged_job_falls_back_to_sacct_then_gone(tmp_path: Path) -> None:
    invalid = CommandResult(1, "", "slurm_load_jobs error: Invalid job id specified\n")
    runner = FakeRunner({"scontrol": [invalid], "sacct": [CommandResult(0, "TIMEOUT|0:0|n1\n", "")]})
    assert SlurmEngine(runner=runner, log_dir=tmp_path).job_status("3").state == "TIMEOUT"
    runner = FakeRunner({"scontrol": [invalid], "sacct": [CommandResult(1, "", "accounting disabled")]})
    assert SlurmEngine(runner=runner, log_dir=tmp_path).job_status("3").state == "GONE"


@pytest.mark.unit
def test_missing_slurm_and_bad_recipes_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SlurmUnavailableError, match="not a Slurm submit host"):
        LocalRunner().run(["definitely-not-sbatch-xyz"], timeout_s=5)
    eng = SlurmEngine(runner=FakeRunner({}), log_dir=tmp_path)
    with pytest.raises(EngineError, match="needs a node"):
        eng.start(Recipe(image="x", argv=("serve",), model="m"))
    with pytest.raises(SlurmSpecError, match="shell variable names"):
        eng.start(Recipe(image="x", argv=("serve",), model="m", env={"A-B": "1"}),
                  Node(name="n1", runner="h100"))
    assert isinstance(get_engine("slurm", log_dir=tmp_path), SlurmEngine)


class _Chan:
    def __init__(self, data: bytes = b"", rc: int = 0, exc: BaseException | None = None) -> None:
        self.data, self.rc, self.exc, self.written = data, rc, exc, ""
        self.channel = self

    def write(self, text: str) -> None:
        self.written += text

    def shutdown_write(self) -> None:
        pass

    def read(self) -> bytes:
        if self.exc is not None:
            raise self.exc
        return self.data

    def recv_exit_status(self) -> int:
        return self.rc


class _FakeClient:
    def __init__(self, exc: BaseException | None = None) -> None:
        self.commands: list[str] = []
        self.stdin = _Chan()
        self.exc = exc

    def get_transport(self) -> None:
        return None

    def exec_command(self, command: str, timeout: float) -> tuple[_Chan, _Chan, _Chan]:
        assert timeout > 0
        self.commands.append(command)
        self.stdin = _Chan()
        return self.stdin, _Chan(b"42\n", 0, self.exc), _Chan(b"")


class _FakeHook:
    def __init__(self, client: _FakeClient) -> None:
        self.client = client

    def get_conn(self) -> _FakeClient:
        return self.client


@pytest.mark.unit
def test_ssh_runner_keeps_secrets_off_the_command_line() -> None:
    client = _FakeClient()
    runner = SSHRunner("c", slurm_conf="/etc/slurm x/slurm.conf", hook=_FakeHook(client))
    res = runner.run(["sbatch", "--parsable", "--job-name=a b"], timeout_s=5, stdin="#!/bin/bash\n",
                     env={"HF_TOKEN": "hf_abcdefgh123"})
    assert res == CommandResult(0, "42\n", "")
    (command,) = client.commands
    assert "hf_abcdefgh123" not in command
    # The remote shell reads the secret from stdin, sets SLURM_CONF, then runs exactly the argv.
    inner = shlex.split(command)
    assert inner[:2] == ["sh", "-c"]
    assert inner[2].startswith("IFS= read -r HF_TOKEN && export HF_TOKEN && SLURM_CONF=")
    assert shlex.split(inner[2].split("exec ", 1)[1]) == ["sbatch", "--parsable", "--job-name=a b"]
    assert client.stdin.written == "hf_abcdefgh123\n#!/bin/bash\n"
    with pytest.raises(EngineError, match="values one line"):
        runner.run(["true"], timeout_s=5, env={"A_TOKEN": "two\nlines"})
    timeout_runner = SSHRunner("c", hook=_FakeHook(_FakeClient(exc=TimeoutError())))
    with pytest.raises(SlurmControllerError, match="did not answer within 5 s"):
        timeout_runner.run(["squeue"], timeout_s=5)


@pytest.mark.unit
def test_ssh_runner_without_the_provider_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "airflow.providers.ssh.hooks.ssh", None)  # import fails
    with pytest.raises(SlurmUnavailableError, match="pip install apache-airflow-providers-ssh"):
        SSHRunner("my_conn").run(["squeue"], timeout_s=5)
    assert isinstance(SlurmEngine(ssh_conn_id="my_conn").runner, SSHRunner)


# --- integration: a real cluster ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """slurmctld + one slurmd per name in NODES, for this module; always stopped."""
    try:
        c = start_cluster(tmp_path_factory.mktemp("slurm"), NODES)
    except ClusterUnavailable as exc:
        pytest.skip(f"no Slurm cluster: {exc}")
    try:
        yield c
    finally:
        c.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sim(port: int, *extra: str) -> tuple[str, ...]:
    return tuple(sim_command(["sim", "serve", "--host", "127.0.0.1", "--port", str(port), "--model",
                              "meta-llama/Llama-3.1-8B-Instruct", "--model-profile", "llama-3.1-8b",
                              "--time-scale", "100", "--tokenizer", str(sim_tokenizer_dir()), *extra]))


def _procs_on_port(port: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line is a sim server on `port`."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if ("serve" in cmd and "--port" in cmd and str(port) in cmd
                and p.info["status"] != psutil.STATUS_ZOMBIE):
            out.append(p)
    return out


def _wait_for(cond: Callable[[], bool], timeout_s: float) -> bool:
    """Poll `cond` until it holds or `timeout_s` passes (a bound on waiting, not a timed assertion)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


def _engine(cluster: SlurmCluster, tmp_path: Path, **kw: object) -> SlurmEngine:
    return SlurmEngine(slurm_conf=str(cluster.conf), log_dir=tmp_path / "logs", poll_interval_s=0.5,
                       kill_wait_s=60, **kw)  # type: ignore[arg-type]


def _two_node_spec(p_worker: int, p_entry: int, worker_extra: tuple[str, ...] = ()) -> SlurmJobSpec:
    env = {"HF_HUB_OFFLINE": "1"}
    return SlurmJobSpec(
        serve_group="it-2node", entry="entry", port=p_entry, host="127.0.0.1", time_limit_min=10,
        processes=(SlurmProcess(name="entry", role="router", node="isw1", argv=_sim(p_entry), env=env),
                   SlurmProcess(name="worker", role="decode", node="isw2", argv=_sim(p_worker, *worker_extra),
                                env=env, port=p_worker, host="127.0.0.1")))


def _step_nodes(cluster: SlurmCluster, job_id: str) -> dict[str, str]:
    res = cluster.run("squeue", "-h", "-s", "-j", job_id, "-o", "%j %N")
    steps = dict(line.split() for line in res.stdout.splitlines() if len(line.split()) == 2)
    steps.pop("batch", None)  # the batch script's own step
    return steps


@pytest.mark.integration
def test_two_node_group_serves_and_stops_clean(cluster: SlurmCluster, tmp_path: Path) -> None:
    eng = _engine(cluster, tmp_path)
    p_worker, p_entry = _free_port(), _free_port()
    handle = eng.start_job(_two_node_spec(p_worker, p_entry))
    pids: list[int] = []
    try:
        eng.wait_ready(handle, deadline_s=180)
        assert eng.is_alive(handle) and handle.extra["job_state"] == "RUNNING"
        assert handle.engine_version is not None and handle.engine_version.startswith("sim-")
        # One job, two steps, each on its own node.
        assert _step_nodes(cluster, handle.id) == {"entry": "isw1", "worker": "isw2"}
        # The submission token a lost sbatch answer is looked up by (squeue's %k is the comment).
        comment = cluster.run("squeue", "-h", "-j", handle.id, "-o", "%k").stdout.strip()
        assert comment.startswith("infersweep:") and len(comment) == len("infersweep:") + 16
        # The worker answers too (the entry is what clients use).
        with urllib.request.urlopen(f"http://127.0.0.1:{p_worker}/health", timeout=10) as resp:
            assert resp.status == 200
        req = urllib.request.Request(f"{handle.base_url}/v1/completions", data=orjson.dumps({
            "model": "meta-llama/Llama-3.1-8B-Instruct", "prompt": [1, 2, 3, 4], "max_tokens": 5,
            "ignore_eos": True}), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = orjson.loads(resp.read())
        assert body["usage"]["completion_tokens"] == 5
        pids = [p.pid for port in (p_worker, p_entry) for p in _procs_on_port(port)]
        assert len(pids) >= 2
    finally:
        text = eng.stop(handle, grace_s=20)
    assert handle.extra["final_state"] == "COMPLETED", text
    assert not eng.is_alive(handle)
    assert "infersweep: stop requested" in text and "==> worker (decode on isw2) <==" in text
    # Every component process is gone (the job's end waited for its steps).
    assert _wait_for(lambda: not _procs_on_port(p_worker) and not _procs_on_port(p_entry), 30), \
        [p.info for p in _procs_on_port(p_worker) + _procs_on_port(p_entry)]
    assert not [pid for pid in pids if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert eng.stop(handle) == text  # idempotent


@pytest.mark.integration
def test_worker_dying_mid_run_ends_the_job_and_stop_cleans_up(cluster: SlurmCluster, tmp_path: Path) -> None:
    eng = _engine(cluster, tmp_path)
    p_worker, p_entry = _free_port(), _free_port()
    handle = eng.start_job(_two_node_spec(p_worker, p_entry))
    try:
        eng.wait_ready(handle, deadline_s=180)
        workers = _procs_on_port(p_worker)
        assert workers
        for p in workers:
            p.kill()  # the worker node's server dies
        assert _wait_for(lambda: not eng.is_alive(handle), 120), handle.extra
        # The entry was stopped by the job script, not left serving alone.
        assert _wait_for(lambda: not _procs_on_port(p_entry), 60)
    finally:
        text = eng.stop(handle, grace_s=10)
    assert handle.extra["final_state"] in ("FAILED", "COMPLETED", "CANCELLED"), handle.extra
    assert "a component exited" in text
    assert not _procs_on_port(p_worker) and not _procs_on_port(p_entry)
    left = cluster.run("squeue", "-h", "-j", handle.id, "-o", "%T").stdout.strip()
    assert left in ("", "FAILED", "COMPLETED")


@pytest.mark.integration
def test_component_failing_at_start_fails_readiness_fast_with_its_log(cluster: SlurmCluster,
                                                                      tmp_path: Path) -> None:
    eng = _engine(cluster, tmp_path)
    handle = eng.start_job(_two_node_spec(_free_port(), _free_port(), ("--fail-at-start", "kv-oom")))
    try:
        with pytest.raises(EngineError, match=r"exited before it was ready.*\[job state") as exc:
            eng.wait_ready(handle, deadline_s=180)
        assert "==> worker (decode on isw2) <==" in exc.value.log_tail
        # vLLM's own KV-cache OOM message, from the worker's log.
        assert "No available memory for the cache blocks" in exc.value.log_tail
    finally:
        eng.stop(handle, grace_s=10)
    assert handle.extra["final_state"] in ("FAILED", "COMPLETED")


@pytest.mark.integration
def test_single_recipe_through_the_engine_interface(cluster: SlurmCluster, tmp_path: Path) -> None:
    """`start(recipe, node)`: a vLLM recipe mapped onto the simulator, on inventory node isw3."""
    port = _free_port()
    recipe = Recipe(image="vllm/vllm-openai:v0.11.0", model="meta-llama/Llama-3.1-8B-Instruct", port=port,
                    serve_group="single", env={"HF_HUB_OFFLINE": "1"},
                    argv=("vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--port", str(port)))
    sim = SimulatedEngine(time_scale=100.0, extra_args=("--tokenizer", str(sim_tokenizer_dir())))
    eng = _engine(cluster, tmp_path, command=sim.command)
    handle = eng.start(recipe, Node(name="isw3", runner="h100", host="127.0.0.1"))
    try:
        eng.wait_ready(handle, deadline_s=180)
        assert handle.extra["served_models"] and _step_nodes(cluster, handle.id) == {"server": "isw3"}
    finally:
        eng.stop(handle, grace_s=20)
    assert handle.extra["final_state"] == "COMPLETED"
    assert _wait_for(lambda: not _procs_on_port(port), 30)


@pytest.mark.integration
def test_unknown_node_is_refused_by_sbatch(cluster: SlurmCluster, tmp_path: Path) -> None:
    eng = _engine(cluster, tmp_path)
    spec = SlurmJobSpec(serve_group="bad", entry="a", port=_free_port(),
                        processes=(SlurmProcess(name="a", node="no-such-node", argv=("true",)),))
    with pytest.raises(EngineError, match="sbatch refused") as exc:
        eng.start_job(spec)
    assert "node" in exc.value.log_tail.lower()


@pytest.mark.integration
def test_stop_ends_a_component_that_ignores_sigterm(cluster: SlurmCluster, tmp_path: Path) -> None:
    """A server that ignores TERM is still gone after stop (Slurm's KILL after KillWait), job terminal."""
    eng = _engine(cluster, tmp_path)
    marker = f"30{_free_port()}"  # a unique sleep length identifies the process
    spec = SlurmJobSpec(serve_group="stubborn", entry="a", port=_free_port(), time_limit_min=5,
                        processes=(SlurmProcess(name="a", node="isw3",
                                                argv=("bash", "-c", f"trap '' TERM; exec sleep {marker}")),))
    handle = eng.start_job(spec)

    def sleepers() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline", "status"])
                if p.info["cmdline"] == ["sleep", marker] and p.info["status"] != psutil.STATUS_ZOMBIE]

    try:
        assert _wait_for(lambda: bool(sleepers()), 60)
        assert eng.is_alive(handle)
    finally:
        eng.stop(handle, grace_s=1)
    assert handle.extra["final_state"] in ("COMPLETED", "CANCELLED", "FAILED"), handle.extra
    assert _wait_for(lambda: not sleepers(), 30)


@pytest.mark.integration
def test_secret_env_reaches_the_component_but_not_the_stored_script(cluster: SlurmCluster,
                                                                    tmp_path: Path) -> None:
    eng = _engine(cluster, tmp_path)
    secret = "isw-s3cret-value-" + str(_free_port())
    out = tmp_path / "seen"
    spec = SlurmJobSpec(serve_group="secret", entry="a", port=_free_port(), time_limit_min=5,
                        processes=(SlurmProcess(name="a", node="isw1",
                                                env={"ISW_API_TOKEN": secret, "PLAIN": "p"},
                                                argv=("bash", "-c", f'echo "$PLAIN $ISW_API_TOKEN" > {out}; '
                                                      "exec sleep 300")),))
    handle = eng.start_job(spec)
    try:
        assert _wait_for(lambda: out.exists() and out.read_text().strip() != "", 60)
        assert out.read_text().split() == ["p", secret]
        stored = cluster.run("scontrol", "write", "batch_script", handle.id, "-")
        assert stored.returncode == 0 and "PLAIN=p" in stored.stdout
        assert secret not in stored.stdout and "ISW_API_TOKEN=" not in stored.stdout
    finally:
        eng.stop(handle, grace_s=10)
    assert handle.extra["final_state"] == "COMPLETED"


@pytest.fixture(scope="module")
def ssh_submit_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshSubmitHost]:
    """A real sshd on 127.0.0.1 standing for the cluster's submit host; needs the SSH provider."""
    pytest.importorskip("airflow.providers.ssh.hooks.ssh",
                        reason="apache-airflow-providers-ssh is not installed (the SSH runner needs it)")
    try:
        host = start_sshd(tmp_path_factory.mktemp("sshd"))
    except ClusterUnavailable as exc:
        pytest.skip(f"no sshd: {exc}")
    try:
        yield host
    finally:
        host.stop()


@pytest.mark.integration
def test_two_node_group_through_an_airflow_ssh_connection(
        cluster: SlurmCluster, ssh_submit_host: SshSubmitHost, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same group, with every Slurm command and log read going over SSH (SSHHook, a real sshd)."""
    monkeypatch.setenv("AIRFLOW_CONN_ISW_SLURM_SUBMIT", ssh_submit_host.airflow_conn())
    eng = SlurmEngine(ssh_conn_id="isw_slurm_submit", slurm_conf=str(cluster.conf), log_dir=tmp_path / "logs",
                      poll_interval_s=0.5, kill_wait_s=60)
    assert isinstance(eng.runner, SSHRunner)
    p_worker, p_entry = _free_port(), _free_port()
    handle = eng.start_job(_two_node_spec(p_worker, p_entry))
    try:
        eng.wait_ready(handle, deadline_s=180)
        assert _step_nodes(cluster, handle.id) == {"entry": "isw1", "worker": "isw2"}
        assert "infersweep: starting entry (router) on isw1" in eng.logs(handle, tail=20)
    finally:
        text = eng.stop(handle, grace_s=20)
    assert handle.extra["final_state"] == "COMPLETED", text
    assert _wait_for(lambda: not _procs_on_port(p_worker) and not _procs_on_port(p_entry), 30)


def _disagg_topology() -> tuple[object, list[Node]]:
    """A Dynamo-SGLang 1P+1D (TP8 each) group of Llama-3.1-8B as `recipes.disagg` builds it, on isw1/isw2."""
    from infersweep.config.master import WorkerConfig
    from infersweep.plan.models import MultinodeJob
    from infersweep.recipes.disagg import build_topology

    pool = WorkerConfig.model_validate({"num-worker": 1, "tp": 8, "ep": 1, "dp-attn": False})
    job = MultinodeJob(config_key="llama-slurm", image="lmsysorg/sglang:v0.5.8.post1",
                       model="meta-llama/Llama-3.1-8B-Instruct", model_prefix="llama3.1-8b", precision="bf16",
                       framework="dynamo-sglang", runner="sim-h100", isl=1024, osl=64, prefill=pool, decode=pool,
                       conc=(1,), max_model_len=1344, exp_name="llama_1k", disagg=True, kv_p2p_transfer="nixl")
    topo = build_topology(job, served_model_name=job.model).model_copy(update={"serve_group": "slurm-pd"})
    nodes = [Node(name=n, runner="sim-h100", gpus=8, gpu_profile="h100") for n in ("isw1", "isw2")]
    return topo, nodes


@pytest.mark.integration
def test_a_disaggregated_topology_runs_as_one_slurm_job(cluster: SlurmCluster, tmp_path: Path) -> None:
    """Every component of a 1P+1D topology is a step of one job on its leased node; the router serves; stop
    ends the job and every component."""
    from infersweep.engines.sim_engine import component_recipe
    from infersweep.engines.slurm_topology import SlurmTopologyEngine

    topo, nodes = _disagg_topology()
    sim = SimulatedEngine(time_scale=100, extra_args=["--tokenizer", str(sim_tokenizer_dir())], log_dir=tmp_path)
    eng = SlurmTopologyEngine(_engine(cluster, tmp_path), topo, nodes, translate=component_recipe,
                              command=sim.command, port_for=lambda _n: _free_port())
    spec = eng.job_spec()
    by_name = {p.name: p for p in spec.processes}
    assert by_name["prefill-0"].node == "isw1" and by_name["decode-0"].node == "isw2"
    assert by_name["prefill-0"].env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
    assert "--role" in by_name["decode-0"].argv and "router" in by_name["router"].argv
    # the router names both workers by their (filled-in) addresses
    router = " ".join(by_name["router"].argv)
    assert f"127.0.0.1:{by_name['prefill-0'].port}" in router and f"127.0.0.1:{by_name['decode-0'].port}" in router
    handle = eng.start()
    try:
        eng.wait_ready(handle, deadline_s=180)
        assert eng.is_alive(handle) and handle.extra["nodes"] == ["isw1", "isw2"]
        steps = _step_nodes(cluster, handle.id)
        assert steps["prefill-0"] == "isw1" and steps["decode-0"] == "isw2" and "router" in steps
        req = urllib.request.Request(f"{handle.base_url}/v1/completions", data=orjson.dumps({
            "model": "meta-llama/Llama-3.1-8B-Instruct", "prompt": [1, 2, 3, 4], "max_tokens": 5,
            "ignore_eos": True}), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert orjson.loads(resp.read())["usage"]["completion_tokens"] == 5
    finally:
        text = eng.stop(handle, grace_s=20)
    assert handle.extra["final_state"] == "COMPLETED", text
    ports = [p.port for p in spec.processes if p.port] + [spec.port]
    assert by_name["etcd"].port is None
    assert _wait_for(lambda: not any(_procs_on_port(p) for p in ports), 30)
