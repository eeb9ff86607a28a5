"""`infersweep bench` when things go wrong (issue 16): every failure says why on the console, absurd values and
unwritable result paths are refused before any request, a silent server ends the point after the stall window,
and a result that cannot be written where asked is saved elsewhere, never lost to a traceback."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import tempfile
import types
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infersweep.bench import runner as bench_runner
from infersweep.bench.records import RequestRecord
from infersweep.bench.result import error_cause, error_causes, format_causes
from infersweep.cli import app

from .conftest import ServerThread, aiohttp_openai_mock
from .test_cli import args


def raw_http(response: bytes | None) -> Any:
    """A ServerThread factory answering every request with the raw bytes ``response`` then closing; None: read
    the request and never answer (the connection stays open until the client gives up)."""
    state: dict[str, int] = {"requests": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            state["requests"] += 1
            m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(m[1]) if m else 0)
            if response is None:
                while await reader.read(65536):  # say nothing; return once the client closes
                    pass
                return
            writer.write(response)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def factory() -> tuple[str, dict[str, int], Any]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def cleanup() -> None:
            server.close()

        return f"http://127.0.0.1:{port}", state, cleanup

    return factory


def sse(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + body


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(url: str, tokenizer_dir: Path, out: Path, *extra: str) -> Any:
    return CliRunner().invoke(app, args(url, tokenizer_dir, out, *extra))


# 1. the causes of failed requests, grouped with their counts, on the console


def test_connection_refused_prints_the_cause_and_exits_1(tokenizer_dir, tmp_path):
    port = closed_port()
    out = tmp_path / "res.json"
    r = run(f"http://127.0.0.1:{port}", tokenizer_dir, out, "--conc", "2", "--num-prompts", "5")
    assert r.exit_code == 1, r.output
    assert f"  errors: 5 × connection refused (127.0.0.1:{port})\n" in r.output
    assert "FAIL: no request completed" in r.output
    causes = json.loads(out.read_text())["infersweep"]["error_causes"]
    assert causes == [{"cause": f"connection refused (127.0.0.1:{port})", "count": 5}]


def test_http_500_prints_status_and_body_when_some_requests_completed(tokenizer_dir, tmp_path):
    with ServerThread(aiohttp_openai_mock(fail_every=3)) as srv:
        r = run(srv.url, tokenizer_dir, tmp_path / "res.json", "--conc", "1", "--num-prompts", "6",
                "--num-warmups", "0")  # fmt: skip
    assert r.exit_code == 1, r.output
    assert "completed=4 failed=2" in r.output
    assert '  errors: 2 × HTTP 500: {"error": "injected"}\n' in r.output


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (b"hello\n\nthis is not an event stream\n\n",
         "stream ended without a token event (is this an OpenAI-compatible SSE stream?)"),
        (b'data: {"choices": [\n\n', "malformed JSON in a stream event: unexpected end of data"),
        (b"data: {not json}\n\n", "malformed JSON in a stream event: unexpected character, expected a string key"),
    ],
    ids=["garbage-sse", "truncated-json", "malformed-json"],
)
def test_broken_streams_print_the_cause(tokenizer_dir, tmp_path, body, cause):
    with ServerThread(raw_http(sse(body))) as srv:
        r = run(srv.url, tokenizer_dir, tmp_path / "res.json", "--conc", "2", "--num-prompts", "4")
    assert r.exit_code == 1, r.output
    assert f"  errors: 4 × {cause}\n" in r.output and "FAIL: no request completed" in r.output


def test_error_causes_group_and_clip():
    errors = ["HTTP 503 Service Unavailable: " + "x" * 500, "HTTP 503 Service Unavailable: " + "x" * 500,
              "ClientConnectorError: Cannot connect to host h:1 ssl:default [Connect call failed ('h', 1)]",
              "ClientConnectorDNSError: Cannot connect to host nope:80 ssl:default [Name or service not known]",
              "TimeoutError: ", "ServerDisconnectedError: Server disconnected", None, ""]  # fmt: skip
    causes = error_causes(errors)
    assert causes[0] == {"cause": "HTTP 503: " + "x" * 199 + "…", "count": 2}
    assert [c["cause"] for c in causes[1:]] == [
        "connection refused (h:1)", "cannot connect to nope:80: Name or service not known",
        "request timed out (--request-timeout-s)", "ServerDisconnectedError: Server disconnected"]
    assert format_causes(causes, limit=2).endswith('; and 3 more causes (see "errors" in the result)')
    assert error_cause("JSONDecodeError: unexpected character: line 1 column 2 (char 1)") == (
        "malformed JSON in a stream event: unexpected character")


# 2. a server that accepts and never answers: progress lines, then the stall window ends the point


def test_silent_server_shows_progress_and_fails_after_the_stall_window(tokenizer_dir, tmp_path):
    out = tmp_path / "res.json"
    with ServerThread(raw_http(None)) as srv:
        r = run(srv.url, tokenizer_dir, out, "--conc", "1", "--num-prompts", "3", "--stall-timeout-s", "0.5",
                "--progress-interval-s", "0.1")  # fmt: skip
    assert r.exit_code == 1, r.output
    assert re.search(r"bench conc=1 warm-up: 0/2 completed, \d failed, 1 in flight, \d+ s elapsed", r.stderr)
    stalled = "server stalled: no response for 0.5 s with 1 request in flight during the warm-up " \
              "(--stall-timeout-s 0.5); point aborted"
    assert f"  FAIL: {stalled}" in r.stdout
    assert "  errors: 3 × not sent: the server stalled during warm-up (--stall-timeout-s 0.5)" in r.stdout
    res = json.loads(out.read_text())
    assert res["completed"] == 0 and res["failed"] == 3 and res["infersweep"]["fail_reasons"][0] == stalled
    assert srv.state["requests"] <= 2  # warm-ups only; the measured phase never started


def test_silent_server_in_the_measurement_fails_its_requests(tokenizer_dir, tmp_path):
    out = tmp_path / "res.json"
    with ServerThread(raw_http(None)) as srv:
        r = run(srv.url, tokenizer_dir, out, "--conc", "2", "--num-prompts", "6", "--num-warmups", "0",
                "--stall-timeout-s", "0.5", "--progress-interval-s", "0")  # fmt: skip
    assert r.exit_code == 1, r.output
    assert "bench conc=2 measurement:" in r.stderr and "during the measurement (--stall-timeout-s 0.5)" in r.stdout
    res = json.loads(out.read_text())
    assert res["completed"] == 0 and res["failed"] == 6
    # the first two stalled (per request, or cut by the abort); a lane refilled before the abort may have sent
    # one more each, and nothing went out after it
    assert all(e.startswith(("stalled:", "aborted:")) for e in res["errors"][:2])
    assert all(e.startswith(("stalled:", "aborted:", "not sent:")) for e in res["errors"][2:4])
    assert all(e.startswith("not sent: the point was aborted") for e in res["errors"][4:])
    assert srv.state["requests"] <= 4


def test_the_stall_clock_runs_only_while_requests_wait(monkeypatch):
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(bench_runner, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    t = bench_runner.PhaseTracker("bench conc=1", "measurement", 3)
    clock.now = 100.0  # rate mode: nothing in flight for a long time is not a stall
    a = RequestRecord(0, 16, 4)
    tok = t.started(a)
    clock.now = 101.0
    assert t.silent_for(clock.now) == 1.0
    a.read_times.append(101.0)  # a token event is a sign of life
    clock.now = 102.5
    assert t.silent_for(clock.now) == 1.5
    t.finished(tok, a, asyncio.CancelledError())  # cancelled as stalled: not a sign of life
    b = RequestRecord(1, 16, 4)
    t.started(b)  # the lane refills at once and inherits the silence
    clock.now = 103.0
    assert t.silent_for(clock.now) == 2.0 and t.failed == 1 and t.completed == 0
    assert t.line(clock.now) == "bench conc=1 measurement: 0/3 completed, 1 failed, 1 in flight, 103 s elapsed"


# 3. absurd numbers are refused before anything is sent


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--conc", "4,1000000000"], "--conc 1000000000 is above the maximum of 65,535 (one client host can hold "
                                     "at most 65,535 TCP connections to one server address and port)"),
        (["--conc", "1", "--num-prompts", "2000000"], "--num-prompts 2000000 is above the maximum of 1,000,000"),
        (["--conc", "1", "--num-warmups", "10000000000"], "--num-warmups 10000000000 is above the maximum of "
                                                          "1,000,000"),
        (["--conc", "1", "--osl", "20000000"], "--osl 20000000 is above the maximum of 10,000,000 (no served model"),
        (["--conc", "64", "--isl", "10000000"], "--isl × (--num-prompts + --num-warmups) = 10,000,000 × 768 = "
                                                "7,680,000,000 prompt tokens, above the maximum of 1,000,000,000"),
        (["--conc", "1", "--request-rate", "0.00001"], "--request-rate 1e-05 spreads 10 requests over 1,000,000 s, "
                                                       "above the maximum of 604,800 s (a week)"),
        (["--conc", "1", "--request-timeout-s", "inf"], "--request-timeout-s inf is above the maximum of 604,800 s"),
        (["--conc", "1", "--stall-timeout-s", "nan"], "--stall-timeout-s nan is not a number"),
        (["--conc", "1", "--gpus", "1000000000000000000000"], "--gpus 1000000000000000000000 is above the maximum "
                                                               "of 100,000"),
        (["--conc", "1", "--seed", "-1"], "--seed -1 is out of range: it must be ≥ 0 (the result JSON stores it"),
        (["--conc", "1", "--burstiness", "0.001"], "--burstiness 0.001 is out of range: it must be ≥ 0.01"),
        (["--conc", "1", "--random-range-ratio", "0"], "--random-range-ratio 0 is out of range: it must be > 0"),
        (["--conc", "1", "--max-failed-fraction", "2"], "--max-failed-fraction 2 is above the maximum of 1"),
        (["--conc", "1", "--workers", "many"], "--workers 'many': give a whole number ≥ 1 or auto"),
    ],
    ids=lambda v: v[1] if isinstance(v, list) else None,
)
def test_absurd_values_are_refused_up_front(aiohttp_mock, tokenizer_dir, tmp_path, extra, message):
    out = tmp_path / "res.json"
    r = run(aiohttp_mock.url, tokenizer_dir, out, *extra)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "Traceback" not in r.output
    assert aiohttp_mock.state["requests"] == 0 and not out.exists()


# 4. result files: checked before the run, and never lost after it


def test_result_file_in_an_unwritable_place_is_refused_before_any_request(aiohttp_mock, tokenizer_dir, tmp_path):
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "sub" / "res.json"
    r = run(aiohttp_mock.url, tokenizer_dir, out, "--conc", "1,2")
    assert r.exit_code == 2, r.output
    assert r.stderr == (f"infersweep bench: cannot write the result file {out.with_name('res_conc1.json')}: "
                        f"{tmp_path / 'afile'} is a file, not a folder. Fix: point --result-file at a folder you "
                        "can create and write to. Nothing was sent.\n")
    assert aiohttp_mock.state["requests"] == 0
    r = run(aiohttp_mock.url, tokenizer_dir, tmp_path, "--conc", "1")
    assert r.exit_code == 2 and f"cannot write the result file {tmp_path}: it is a folder" in r.stderr
    assert aiohttp_mock.state["requests"] == 0


@pytest.fixture
def folder_removed_during_the_run(monkeypatch):
    """Make the result folder disappear while the benchmark runs (as a cleanup job or unmount would)."""
    import infersweep.bench.api as api

    real = api.run_benchmark
    removed: list[Path] = []

    def run_then_remove(cfg):
        result = real(cfg)
        for folder in removed:
            shutil.rmtree(folder)
        return result

    monkeypatch.setattr(api, "run_benchmark", run_then_remove)
    return removed


def test_write_failure_after_the_run_saves_the_result_in_the_temp_folder(
    aiohttp_mock, tokenizer_dir, tmp_path, monkeypatch, folder_removed_during_the_run
):
    fallback = tmp_path / "fallback"
    fallback.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(fallback))
    out = tmp_path / "results" / "res.json"
    folder_removed_during_the_run.append(out.parent)
    r = run(aiohttp_mock.url, tokenizer_dir, out, "--conc", "1", "--num-prompts", "2")
    assert r.exit_code == 1, r.output
    (saved,) = fallback.glob("res-*.json")
    assert r.stderr == (f"infersweep bench: could not write the result file {out}: No such file or directory; "
                        f"the result was saved to {saved} instead\n")
    assert json.loads(saved.read_text())["completed"] == 2 and "Traceback" not in r.output
    assert "  wrote " not in r.stdout and "ttft  ms" in r.stdout


def test_write_failure_with_no_fallback_prints_the_result(
    aiohttp_mock, tokenizer_dir, tmp_path, monkeypatch, folder_removed_during_the_run
):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-temp"))
    out = tmp_path / "results" / "res.json"
    folder_removed_during_the_run.append(out.parent)
    r = run(aiohttp_mock.url, tokenizer_dir, out, "--conc", "1", "--num-prompts", "2")
    assert r.exit_code == 1, r.output
    assert r.stderr == (f"infersweep bench: could not write the result file {out}: No such file or directory, "
                        "nor to the temporary folder; the result follows on stdout\n")
    printed = r.stdout[r.stdout.index("\n{") + 1:]
    assert json.loads(printed)["completed"] == 2
