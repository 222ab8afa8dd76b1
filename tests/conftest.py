"""Every test runs without the developer's gridrun settings (GRIDRUN_* variables, the CLI config
file), so what it checks does not depend on who runs it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.helpers import NO_CLIENT_CONFIG


@pytest.fixture(autouse=True, scope="session")
def _no_user_settings() -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("GRIDRUN_")}
    for key in saved:
        del os.environ[key]
    os.environ["GRIDRUN_CONFIG"] = NO_CLIENT_CONFIG
    yield
    del os.environ["GRIDRUN_CONFIG"]
    os.environ.update(saved)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/system carries the `system` marker (so `-m "not system"` means
    what it says)."""
    unmarked = [
        item.nodeid
        for item in items
        if item.nodeid.startswith("tests/system/") and item.get_closest_marker("system") is None
    ]
    if unmarked:
        raise pytest.UsageError(f"system tests without the system marker: {unmarked}")
