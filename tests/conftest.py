from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anyio.lowlevel
import pytest
import respx
from hypothesis import HealthCheck, settings

import cvekyc_async._attempts as attempts_module
from tests import samples

pytest_plugins = ["cvekyc_async.testing"]

# Deterministic property tests: the same cases on every run and machine, no example database.
# ``--slow`` runs the slow tier (tests marked ``slow``, and fuzzing at full size).
_PROFILE = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("cvekyc", max_examples=300, **_PROFILE)
settings.register_profile("cvekyc-slow", max_examples=10_000, **_PROFILE)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the slow tier")


def pytest_configure(config: pytest.Config) -> None:
    settings.load_profile("cvekyc-slow" if config.getoption("--slow") else "cvekyc")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    # CVClient runs its own asyncio loop whichever loop drives the test: the default tier drives
    # it from asyncio only (the slow tier from trio too).
    kept = [
        item
        for item in items
        if not (
            getattr(item, "callspec", None) is not None
            and item.callspec.params.get("flavour") == "sync"
            and item.callspec.params.get("anyio_backend") == "trio"
        )
    ]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept
    skip = pytest.mark.skip(reason="slow tier: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def slow_tier(request: pytest.FixtureRequest) -> bool:
    """Whether the slow tier runs (``--slow``): fuzz loops size themselves by it."""
    return bool(request.config.getoption("--slow"))


@pytest.fixture(params=["async", "sync"])
def flavour(request: pytest.FixtureRequest) -> str:
    """Which client a behaviour table runs through: ``AsyncCVClient`` or ``CVClient``
    (see tests/_flavours.py)."""
    return str(request.param)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _no_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own credentials must never leak into a test, nor make one pass by accident.
    for name in ("CVEKYC_API_KEY", "CVEKYC_API_SECRET", "CVEKYC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    # Nor a proxy of the machine's (CI may have one for the package registries): the tests
    # that use one set it themselves.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def jpeg_file(tmp_path: Path) -> Path:
    path = tmp_path / "front.jpg"
    path.write_bytes(samples.JPEG)
    return path


@pytest.fixture
def png_file(tmp_path: Path) -> Path:
    path = tmp_path / "back.png"
    path.write_bytes(samples.PNG)
    return path


@pytest.fixture
def pdf_file(tmp_path: Path) -> Path:
    path = tmp_path / "scan.pdf"
    path.write_bytes(samples.PDF)
    return path


def pytest_report_header() -> str:
    return f"cvekyc-async tests, pid {os.getpid()}"


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    """respx routes for ``samples.BASE_URL``; a route need not be called."""
    with respx.mock(base_url=samples.BASE_URL, assert_all_called=False) as router:
        yield router


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A fake clock for the waits between attempts: records each one instead of sleeping."""
    waited: list[float] = []

    async def fake_sleep(delay: float) -> None:
        waited.append(delay)
        await anyio.lowlevel.checkpoint()

    monkeypatch.setattr(attempts_module, "_sleep", fake_sleep)
    return waited
