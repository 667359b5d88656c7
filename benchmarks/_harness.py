"""Shared pieces of the benchmarks: the emulator in its own process, input files, alternating
rounds, and the table and JSON of results."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from cvekyc_async import AsyncCVClient
from cvekyc_async.emulator import synthetic_jpeg

RESULTS_DIR = Path(__file__).resolve().parent / "results"
API_KEY = "bench-key"
API_SECRET = "bench-secret"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small N, one round: a smoke run")
    p.add_argument("--rounds", type=int, default=None, help="rounds per contender")
    p.add_argument("--json", type=Path, default=None, help="where to write raw numbers")
    return p


def pin_to_core(core: int) -> bool:
    """Pin this process to one core when the machine has two or more."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {core})
        return True
    return False


def environment() -> dict[str, Any]:
    import aiohttp
    import anyio
    import msgspec

    import cvekyc_async

    return {
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "cvekyc_async": cvekyc_async.__version__,
        "httpx": httpx.__version__,
        "anyio": anyio.__version__ if hasattr(anyio, "__version__") else _version("anyio"),
        "aiohttp": aiohttp.__version__,
        "msgspec": msgspec.__version__,
        "uvicorn": _version("uvicorn"),
        "httpcore": _version("httpcore"),
        "loop": loop_name(),
    }


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


class Emulator:
    """The emulator in a separate process, pinned to its own core where possible."""

    def __init__(self, base_url: str, process: subprocess.Popen[str]) -> None:
        self.base_url = base_url
        self.process = process
        self._http = httpx.Client(base_url=base_url, timeout=30)
        self.log: list[str] = []  # the server's last lines of stderr

    def set_faults(self, **faults: Any) -> None:
        self._http.put("/_emulator/faults", json=faults).raise_for_status()

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = self._http.get("/_emulator/stats").json()
        return data

    def reset(self) -> None:
        self._http.post("/_emulator/reset").raise_for_status()


@contextmanager
def server(
    cmd: list[str], core: int = 1, what: str = "the server"
) -> Iterator[tuple[subprocess.Popen[str], str, list[str]]]:
    """A server process that prints ``listening on URL`` on stderr first, pinned to ``core``
    where there are two: the process, its base URL and its last lines of stderr. Ended when the
    block ends."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        cmd = ["taskset", "-c", str(core), *cmd]
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            banner = proc.stderr.readline()
            if "listening on " not in banner:
                raise RuntimeError(f"{what} did not start: {banner!r}")
            # Keep reading its stderr, or a full pipe would stall the server mid-benchmark.
            log: list[str] = []
            threading.Thread(target=_drain, args=(proc.stderr, log), daemon=True).start()
            yield proc, banner.split("listening on ")[1].split()[0], log
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@contextmanager
def emulator(core: int = 1, **faults: Any) -> Iterator[Emulator]:
    cmd = [sys.executable, "-m", "cvekyc_async.emulator", "--port", "0"]
    cmd += ["--api-key", API_KEY, "--api-secret", API_SECRET]
    with server(cmd, core, "the emulator") as (proc, base_url, log):
        emu = Emulator(base_url, proc)
        emu.log = log
        if faults:
            emu.set_faults(**faults)
        yield emu


def _drain(stream: Any, into: list[str]) -> None:
    for line in stream:
        into.append(line)
        del into[:-200]


def make_files(n: int, size: int = 100_000, folder: Path | None = None) -> list[Path]:
    """n distinct real JPEG files of ``size`` bytes (the emulator opens what it is sent and
    answers any image without ground truth with a synthetic card)."""
    folder = folder or Path(tempfile.gettempdir()) / f"cvekyc-bench-{size}-v2"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:06d}.jpg"
        if not path.exists() or path.stat().st_size != size:
            path.write_bytes(synthetic_jpeg(i, size))
        paths.append(path)
    return paths


Runner = Callable[[], Awaitable[int]]


def timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [title, ""]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        cells = [str(c).rjust(w) for c, w in zip(row, widths, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def spread(s: dict[str, float], fmt: str = "{:.0f}") -> str:
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"


def write_json(name: str, data: dict[str, Any], path: Path | None) -> Path:
    target = path or RESULTS_DIR / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "environment": environment(), **data}
    target.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return target


# -- timing contenders: requests/s and CPU per request ------------------------------------------


@dataclass
class Sample:
    """One timed run: requests sent, wall seconds, this process's CPU seconds."""

    requests: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.wall

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.requests * 1e6


async def _measure(
    contender: Any, base_url: str, files: list[Path], in_flight: int, warm: bool
) -> Sample:
    # Cold: the clock runs from opening the client (connections are made during the run).
    # Warm: the client has sent one request per slot first, so its connections are open.
    wall, cpu = time.perf_counter(), time.process_time()
    async with contender(base_url, in_flight) as send:
        if warm:
            await send(files[:in_flight])
            wall, cpu = time.perf_counter(), time.process_time()
        n = await send(files)
        return Sample(n, time.perf_counter() - wall, time.process_time() - cpu)


def loop_name() -> str:
    from cvekyc_async._runner import backend_options

    return "uvloop" if backend_options("asyncio") else "asyncio"


def measure(contender: Any, base_url: str, files: list[Path], in_flight: int, warm: bool) -> Sample:
    """Time one run of ``contender`` in a fresh event loop (uvloop when installed, as the
    ``cvekyc`` command and uvicorn pick it; ``CVEKYC_UVLOOP=0`` for asyncio's own)."""
    from cvekyc_async._runner import run

    return run(_measure, contender, base_url, files, in_flight, warm)


async def drive_limit(
    base_url: str, files: list[Path], setting: Any, seconds: float
) -> dict[str, Any]:
    """Send ``files`` over and over for ``seconds`` at ``max_concurrency=setting``: answers,
    failed calls (retries spent), and answers and the limit in each second."""
    bins: list[int] = []
    levels: list[int] = []
    failed = 0
    async with AsyncCVClient(
        API_KEY, API_SECRET, base_url=base_url, max_concurrency=setting
    ) as client:
        started = time.perf_counter()
        with anyio.move_on_after(seconds):
            async with client.extract_as_completed(itertools.cycle(files)) as results:
                async for result in results:
                    second = int(time.perf_counter() - started)
                    while len(bins) <= second:
                        bins.append(0)
                        levels.append(client.concurrency)
                    levels[second] = client.concurrency
                    if result.ok:
                        bins[second] += 1
                    else:
                        failed += 1
        elapsed = time.perf_counter() - started
    return {
        "answers": sum(bins),
        "failed": failed,
        "elapsed": elapsed,
        "per_second": bins[: int(elapsed)],
        "levels": levels[: int(elapsed)],
    }
