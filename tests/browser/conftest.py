"""Browser tests run against real `gridrun` processes, like the system tests."""

from tests.system.conftest import system_grid

__all__ = ["system_grid"]
