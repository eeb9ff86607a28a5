"""Fixtures of the eval tests: the shared GSM8K data and a factory of local mock chat servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infersweep.evals.data import Gsm8kData, load_gsm8k

from .mock_chat import MockChatServer


@pytest.fixture(scope="session")
def gsm8k_data(gsm8k_dir: Path) -> Gsm8kData:
    return load_gsm8k(gsm8k_dir)


@pytest.fixture
def mock_chat() -> Iterator[Callable[..., MockChatServer]]:
    servers: list[MockChatServer] = []

    def start(**kwargs: Any) -> MockChatServer:
        server = MockChatServer(**kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def final_answer(answer: str) -> str:
    """The number after the reference's last '#### '."""
    return answer.split("#### ")[-1].strip()
