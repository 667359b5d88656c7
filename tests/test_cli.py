"""The ``cvekyc`` command, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cvekyc_async._cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_demo_reads_every_specimen_against_the_emulator() -> None:
    proc = run("demo")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "emulator at http://127.0.0.1:" in out
    assert "chip_front.jpg    chip_id_card_front: 040204683524, BÙI MINH CƯỜNG" in out
    assert "blank.jpg         error: errorCode 1" in out
    assert "scan.pdf          9_id_card_front:" in out
    assert "[flagged: Photo contains sign of being taken through an electronic screen]" in out
    assert "10 read, 1 failed, 10 billed, 11 requests" in out


def test_usage_errors_exit_2() -> None:
    assert run().returncode == 2
    assert run("frobnicate").returncode == 2
    bad = run("demo", "--concurrency", "0")
    assert bad.returncode == 2
    assert "--concurrency must be at least 1" in bad.stderr
