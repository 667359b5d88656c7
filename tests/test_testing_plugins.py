"""The fixtures of ``cvekyc_async.testing`` in users' projects: a throwaway project per way of
running async tests (pytest-asyncio strict and auto, anyio's plugin on asyncio and trio, and
anyio's plugin with pytest-asyncio disabled), each run in its own pytest process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TESTS = """
import pytest
from cvekyc_async.emulator import specimen_path

FRONT = specimen_path("chip_front.jpg")
{header}

{mark}
async def test_reads_a_card(cv_client, cv_emulator):
    res = await cv_client.extract_card(FRONT)
    assert res.cards[0].type == "chip_id_card_front"
    assert cv_emulator.stats()["requests"] == 1


{mark}
async def test_each_test_has_its_own_client(cv_client, cv_emulator):
    cv_emulator.set_faults(rate_429=1.0)
    with pytest.raises(Exception) as info:
        await cv_client.with_options(max_retries=0).extract_card(FRONT)
    assert type(info.value).__name__ == "RateLimitError"


def test_the_sync_client(cv_sync_client):
    assert cv_sync_client.extract_card(FRONT).cards[0].type == "chip_id_card_front"
"""

MODES = {
    "pytest-asyncio strict": (
        "asyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n",
        "",
        "@pytest.mark.asyncio",
        [],
        3,
    ),
    "pytest-asyncio auto": (
        "asyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n",
        "",
        "",
        [],
        3,
    ),
    "anyio": (
        "asyncio_default_fixture_loop_scope = function\n",
        (
            '@pytest.fixture(params=["asyncio", "trio"])\n'
            "def anyio_backend(request):\n    return request.param\n"
        ),
        "@pytest.mark.anyio",
        [],
        5,
    ),
    "anyio without pytest-asyncio": (
        "",
        "",
        "@pytest.mark.anyio",
        ["-p", "no:asyncio"],
        5,
    ),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_fixtures_work_in_a_users_project(tmp_path: Path, mode: str) -> None:
    ini, header, mark, options, expected = MODES[mode]
    (tmp_path / "pytest.ini").write_text(
        f"[pytest]\nfilterwarnings = error\n{ini}", encoding="utf-8"
    )
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["cvekyc_async.testing"]\n', encoding="utf-8"
    )
    (tmp_path / "test_user.py").write_text(TESTS.format(header=header, mark=mark), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{expected} passed" in proc.stdout, proc.stdout


def test_a_sync_test_asking_for_the_async_client_is_told_which_to_use(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n", encoding="utf-8"
    )
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["cvekyc_async.testing"]\n', encoding="utf-8"
    )
    (tmp_path / "test_user.py").write_text(
        "def test_by_mistake(cv_client):\n    pass\n", encoding="utf-8"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "not an async test" in proc.stdout
    assert "cv_sync_client" in proc.stdout
