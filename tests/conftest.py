from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import samples

pytest_plugins = ["cvekyc_async.testing"]


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
