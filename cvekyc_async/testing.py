"""Helpers for the tests of code that uses cvekyc_async: emulator fixtures and answer bodies.

Enable the fixtures in your ``conftest.py`` (needs the ``emulator`` extra and pytest)::

    pytest_plugins = ["cvekyc_async.testing"]

    async def test_reads_a_card(cv_client):
        res = await cv_client.extract_card(specimen_path("chip_front.jpg"))

Fixtures:

- ``cv_emulator_server`` (session): one emulator on a free loopback port for the whole run.
- ``cv_emulator``: that emulator with its faults cleared, its settings back to defaults, the
  requests of earlier tests finished and its counts zeroed, before and after each test.
- ``cv_client``: an ``AsyncCVClient`` pointed at it (closed after the test); async tests only.

For respx routes, ``answer_body`` builds an answer the way the service writes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest

from ._client import AsyncCVClient
from .emulator import EmulatorSettings, Faults, RunningEmulator, serve_emulator

__all__ = ["answer_body", "cv_client", "cv_emulator", "cv_emulator_server"]


def answer_body(data: Any = None, error_code: int = 0, error_message: str = "") -> bytes:
    """An answer body as the service sends it (``errorCode`` as a string), for respx routes.

    Args:
        data: one document dict, a list of them, or ``None`` (sent as ``[]``).
        error_code: the ``errorCode``.
        error_message: the ``errorMessage``.
    """
    return msgspec.json.encode(
        {
            "data": [] if data is None else data,
            "errorCode": str(error_code),
            "errorMessage": error_message,
        }
    )


@pytest.fixture(scope="session")
def cv_emulator_server() -> Iterator[RunningEmulator]:
    """One emulator for the whole test session, on a free loopback port."""
    with serve_emulator() as emulator:
        yield emulator


@pytest.fixture
def cv_emulator(cv_emulator_server: RunningEmulator) -> Iterator[RunningEmulator]:
    """The session's emulator, with faults, settings and counts reset around each test."""
    emulator = cv_emulator_server
    _reset(emulator)
    yield emulator
    _reset(emulator)


def _reset(emulator: RunningEmulator) -> None:
    emulator.state.settings = EmulatorSettings()
    emulator.set_faults(Faults())
    # Requests a test abandoned (cancelled, timed out) are still being handled, and may still
    # be billed: let them finish, so that they do not show up in the next test's counts.
    emulator.wait_idle(30.0)
    emulator.reset()


@pytest.fixture
async def cv_client(cv_emulator: RunningEmulator) -> AsyncIterator[AsyncCVClient]:
    """An ``AsyncCVClient`` for the emulator, closed after the test."""
    async with cv_emulator.client() as client:
        yield client
