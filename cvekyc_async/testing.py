"""Helpers for the tests of code that uses cvekyc_async: emulator fixtures and answer bodies.

Enable the fixtures in your ``conftest.py`` (needs the ``emulator`` extra and pytest)::

    pytest_plugins = ["cvekyc_async.testing"]

    @pytest.mark.asyncio  # pytest-asyncio in strict mode; not needed in auto mode
    async def test_reads_a_card(cv_client):
        res = await cv_client.extract_card(specimen_path("chip_front.jpg"))

    def test_reads_a_card_in_sync_code(cv_sync_client):
        res = cv_sync_client.extract_card(specimen_path("chip_front.jpg"))

Async tests may run under pytest-asyncio (strict or auto mode) or anyio's pytest plugin
(``@pytest.mark.anyio``, asyncio or trio): ``cv_client`` is opened in the event loop of the
test that asks for it, whichever runs it.

Fixtures:

- ``cv_emulator_server`` (session): one emulator on a free loopback port for the whole run.
- ``cv_emulator``: that emulator with its faults cleared, its settings back to defaults, the
  requests of earlier tests finished and its counts zeroed, before and after each test.
- ``cv_client``: an ``AsyncCVClient`` pointed at it (closed after the test); async tests.
- ``cv_sync_client``: a ``CVClient`` pointed at it (closed after the test); any test.

For respx routes, ``answer_body`` builds an answer the way the service writes it.
``specimen_personal_data`` gives the names and ID numbers on the emulator's specimen cards, to
search your own logs, traces and error answers for (a test that they hold none).
"""

from __future__ import annotations

import inspect
import unicodedata
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest

from ._client import AsyncCVClient
from ._sync import CVClient
from .emulator import EmulatorSettings, Faults, RunningEmulator, serve_emulator, specimens
from .emulator._truth import read_documents

__all__ = [
    "answer_body",
    "cv_client",
    "cv_emulator",
    "cv_emulator_server",
    "cv_sync_client",
    "specimen_personal_data",
]


def _folded(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn").upper()


def specimen_personal_data() -> set[str]:
    """The names and ID numbers on the emulator's specimen cards, as printed, in capitals and
    in capitals without diacritics: what no log line, span, metric or message of an application
    that read them may hold.

    ::

        leaks = [v for v in specimen_personal_data() for line in log_lines if v in line]
        assert leaks == []
    """
    values: set[str] = set()
    for path in specimens().values():
        for page in read_documents(path.read_bytes()) or []:
            for doc in page:
                info = doc.get("info", {})
                for field in ("id", "person_number", "document_number"):
                    value = info.get(field)
                    if isinstance(value, str) and len(value) >= 8:
                        values.add(value)
                for field in ("name", "sur_name", "given_name"):
                    value = info.get(field)
                    if isinstance(value, str) and len(value) >= 5:
                        values.update({value, value.upper(), _folded(value)})
    return values


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
def cv_client(request: pytest.FixtureRequest) -> AsyncCVClient:
    """An ``AsyncCVClient`` for the emulator, opened in the test's event loop and closed after
    the test: under anyio's plugin when the test uses it, else under pytest-asyncio."""
    test = getattr(request, "function", None)
    if test is not None and not inspect.iscoroutinefunction(test):
        raise pytest.UsageError(
            f"{request.node.name} is not an async test: cv_client is an AsyncCVClient for "
            "async tests; a synchronous test takes cv_sync_client"
        )
    if "anyio_backend" in request.fixturenames:
        client: AsyncCVClient = request.getfixturevalue("_cv_client_anyio")
        return client
    if not (_HAS_PYTEST_ASYNCIO and request.config.pluginmanager.hasplugin("asyncio")):
        raise pytest.UsageError(
            "cv_client needs an async test runner: mark the test with @pytest.mark.anyio "
            "(anyio's plugin), or install and enable pytest-asyncio"
        )
    opened: AsyncCVClient = request.getfixturevalue("_cv_client_asyncio")
    return opened


@pytest.fixture
async def _cv_client_anyio(cv_emulator: RunningEmulator) -> AsyncIterator[AsyncCVClient]:
    async with cv_emulator.client() as client:
        yield client


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - pytest-asyncio is optional
    _HAS_PYTEST_ASYNCIO = False
else:
    _HAS_PYTEST_ASYNCIO = True

    @pytest_asyncio.fixture
    async def _cv_client_asyncio(cv_emulator: RunningEmulator) -> AsyncIterator[AsyncCVClient]:
        async with cv_emulator.client() as client:
            yield client


@pytest.fixture
def cv_sync_client(cv_emulator: RunningEmulator) -> Iterator[CVClient]:
    """A ``CVClient`` (the synchronous client) for the emulator, closed after the test."""
    with cv_emulator.sync_client() as client:
        yield client
