"""One Airflow stack shared by the test modules that need it (see airflow_services.SharedAirflow).

A module takes part by declaring `AIRFLOW_STACK = StackPart(...)` and using the `shared_airflow` fixture.
Its tests are run one after another (moved up to the first of them, each module's own order kept), and the
stack is stopped right after the last of them rather than at the end of the session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.airflow_services import SharedAirflow, StackPart

FIXTURE = "shared_airflow"
_HANDLE = pytest.StashKey[SharedAirflow]()


def _uses_stack(item: pytest.Item) -> bool:
    return FIXTURE in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    users = [i for i in items if _uses_stack(i)]
    if not users:
        return
    first = items.index(users[0])
    rest = [i for i in items[first:] if not _uses_stack(i)]
    items[first:] = users + rest


@pytest.fixture(scope="session")
def shared_airflow(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedAirflow]:
    parts: dict[str, StackPart] = {}
    for item in request.session.items:
        module = getattr(item, "module", None)
        if _uses_stack(item) and module is not None:
            part = getattr(module, "AIRFLOW_STACK", None)
            assert isinstance(part, StackPart), f"{module.__name__} uses {FIXTURE} but declares no AIRFLOW_STACK"
            parts[module.__name__] = part
    handle = SharedAirflow(tmp_path_factory.mktemp("airflow_shared"), parts)
    request.config.stash[_HANDLE] = handle
    try:
        yield handle
    finally:
        handle.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    # After the last test that uses the stack (and its module fixtures' teardown): stop the services now.
    if _uses_stack(item) and (nextitem is None or not _uses_stack(nextitem)):
        handle = item.config.stash.get(_HANDLE, None)
        if handle is not None:
            handle.close()
