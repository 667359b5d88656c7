"""The README's examples run as written: each Python block against the emulator, once as printed
and once through ``CVClient`` (the same code without ``async``/``await``), and the first example
after pasting the ``export`` lines that ``cvekyc emulator`` prints."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cvekyc_async.emulator import RunningEmulator, specimen_path
from tests.test_cli import CLI, env_for

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
EXPORT_RE = re.compile(r"^export (CVEKYC_[A-Z_]+)=(\S+)$", re.MULTILINE)

# Fragments (code that awaits without a function of its own) run inside this, with a client and
# the names the README's fragments use.
PRELUDE = """\
import anyio
from cvekyc_async import *
from cvekyc_async import checks
from cvekyc_async.emulator import run_emulator, serve_emulator, specimen_path

paths = ["front.jpg", "back.jpg", "scan.pdf"]


def paths_generator():
    yield from paths


async def main():
    async with AsyncCVClient() as client:
        res = await client.extract_cards("front.jpg", "back.jpg")
{body}


anyio.run(main)
"""


def program(block: str) -> str:
    """A block as a program: complete ones as they are, fragments inside the prelude."""
    if "import" in block and ("anyio.run(" in block or "await" not in block):
        return block
    return PRELUDE.format(body=textwrap.indent(block, " " * 8))


def synchronous(code: str) -> str:
    """The same code through ``CVClient``: no ``async``, no ``await``."""
    for pattern, replacement in (
        (r"\banyio\.run\(main\)", "main()"),
        (r"\basync (def|with|for)\b", r"\1"),
        (r"\bawait ", ""),
        (r"\bAsyncCVClient\b", "CVClient"),
        (r"\brun_emulator\(", "serve_emulator("),
        (r"\bemu\.client\(", "emu.sync_client("),
    ):
        code = re.sub(pattern, replacement, code)
    return code


def runnable(index: int) -> bool:
    return "pytest_plugins" not in BLOCKS[index]  # conftest lines: see test_testing_plugins


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(specimen_path("chip_front.jpg"), tmp_path / "front.jpg")
    shutil.copy(specimen_path("chip_back.jpg"), tmp_path / "back.jpg")
    shutil.copy(specimen_path("scan.pdf"), tmp_path / "scan.pdf")
    return tmp_path


def run_python(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = cwd / "example.py"
    script.write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_readme_has_examples() -> None:
    assert len([i for i in range(len(BLOCKS)) if runnable(i)]) >= 8


RUNNER = """\
import sys, traceback
failed = []
for index, code in BLOCKS:
    try:
        exec(compile(code, f"README block {index}", "exec"), {"__name__": "__main__"})
    except BaseException:
        failed.append(index)
        print(f"--- README block {index} failed:\\n{code}", file=sys.stderr)
        traceback.print_exc()
sys.exit(1 if failed else 0)
"""


@pytest.mark.parametrize("flavour", ["async", "sync"])
def test_each_readme_example_runs(
    cv_emulator: RunningEmulator, workdir: Path, flavour: str
) -> None:
    # One process runs every block, each in a namespace of its own (a process per block is
    # most of this test's time otherwise).
    blocks = []
    for index in range(len(BLOCKS)):
        if not runnable(index):
            continue
        code = program(BLOCKS[index])
        if flavour == "sync":
            code = synchronous(code)
            assert "await" not in code
        blocks.append((index, code))
    proc = run_python(f"BLOCKS = {blocks!r}\n{RUNNER}", workdir, env_for(cv_emulator))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_the_first_example_runs_after_pasting_what_the_emulator_prints(workdir: Path) -> None:
    assert len(BLOCKS[0].strip().splitlines()) <= 12  # short enough to read at a glance
    readme = README.read_text(encoding="utf-8")
    documented = dict(EXPORT_RE.findall(readme))
    assert set(documented) == {"CVEKYC_BASE_URL", "CVEKYC_API_KEY", "CVEKYC_API_SECRET"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVEKYC_")}
    with subprocess.Popen(
        [*CLI, "emulator", "--port", "0"], stderr=subprocess.PIPE, text=True, env=env
    ) as server:
        try:
            assert server.stderr is not None
            printed: dict[str, str] = {}
            while len(printed) < 3:
                line = server.stderr.readline()
                assert line, "the emulator ended without printing the export lines"
                printed.update(EXPORT_RE.findall(line))
            # What the README gives is what the emulator prints, but for the port it picked.
            assert printed["CVEKYC_API_KEY"] == documented["CVEKYC_API_KEY"]
            assert printed["CVEKYC_API_SECRET"] == documented["CVEKYC_API_SECRET"]
            assert (
                printed["CVEKYC_BASE_URL"].rsplit(":", 1)[0]
                == documented["CVEKYC_BASE_URL"].rsplit(":", 1)[0]
            )
            proc = run_python(BLOCKS[0], workdir, {**env, **printed})
        finally:
            server.terminate()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("chip_id_card_front True ")
