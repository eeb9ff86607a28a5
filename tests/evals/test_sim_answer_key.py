"""The eval against the simulated engine's answer-key mode: the score is exactly what the key implies."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from infersweep.evals.data import Gsm8kData
from infersweep.evals.gsm8k import run_gsm8k
from tests.procs import stop_process_groups

from .conftest import final_answer

answers = pytest.importorskip("infersweep.engines.sim.answers", reason="the simulator's answer-key module is absent")

N_QUESTIONS = 200
ACCURACY = 0.8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sim_with_key(gsm8k_data: Gsm8kData, tmp_path: Path) -> Iterator[str]:
    key = tmp_path / "key.jsonl"
    key.write_text(
        "".join(
            json.dumps({"question": d.question, "answer": final_answer(d.answer)}) + "\n"
            for d in gsm8k_data.test[:N_QUESTIONS]
        )
    )
    log_path = tmp_path / "sim.log"
    for _attempt in range(3):  # a free port can be taken between probing and binding: try another
        port = _free_port()
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "infersweep.cli", "sim", "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--model", "sim-model", "--answer-key", str(key), "--accuracy", str(ACCURACY),
                 "--max-model-len", "32768", "--time-scale", "1000"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            if _wait_healthy(proc, f"http://127.0.0.1:{port}", deadline_s=120):
                yield f"http://127.0.0.1:{port}"
                return
        finally:
            _stop(proc)
        if "address already in use" not in log_path.read_text(errors="replace").lower():
            break
    pytest.fail(f"sim did not become healthy: {log_path.read_text(errors='replace')[-2000:]}")


def _wait_healthy(proc: subprocess.Popen[bytes], base: str, *, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop_process_groups([proc], grace_s=20)


@pytest.mark.integration
def test_score_is_exactly_what_the_answer_key_implies(sim_with_key: str, gsm8k_data: Gsm8kData) -> None:
    questions = [d.question for d in gsm8k_data.test[:N_QUESTIONS]]
    expected = [answers.is_correct(q, ACCURACY, questions=questions) for q in questions]
    result = run_gsm8k(sim_with_key, "sim-model", limit=N_QUESTIONS, concurrency=32, data=gsm8k_data, context_len=16384)
    assert result.n == N_QUESTIONS
    assert [s.strict_match_correct for s in result.samples] == expected
    assert [s.flexible_extract_correct for s in result.samples] == expected
    assert sum(expected) == round(ACCURACY * N_QUESTIONS)
    assert result.strict_match == result.flexible_extract == sum(expected) / N_QUESTIONS == ACCURACY
    assert result.retries == 0 and result.passed is False  # 0.80 < the 0.90 default floor
    assert result.failure_class == "accuracy_below_threshold"
