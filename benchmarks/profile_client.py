"""Where the client's own CPU goes: a profile of calls against the light server, summed by
module, in microseconds per call, beside raw aiohttp doing the same uploads.

The server runs in another process pinned to core 1; this process is pinned to core 0 and runs
``--calls`` uploads of 100 KB at ``--in-flight`` at once, under cProfile. Each function's own
time (not its callees') is charged to the module it is in: ``cvekyc_async.*`` one by one,
third-party packages by name, the standard library and the event loop as "stdlib/asyncio".

    python -m benchmarks.profile_client [--calls 4000] [--in-flight 64] [--transport auto]
        [--save benchmarks/results/profile_client.txt]

``benchmarks/results/profile_client_baseline.txt`` is the profile before the work on the
client's own cost; ``--save`` writes the printed summary beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import socket
import subprocess
import sys
import sysconfig
import time
from collections import defaultdict
from pathlib import Path

import aiohttp

from cvekyc_async import AsyncCVClient

UPLOAD = b"\xff\xd8\xff\xe0" + os.urandom(100 * 1024)
_LINES: list[str] = []


def say(line: str = "") -> None:
    print(line)
    _LINES.append(line)


_STDLIB = sysconfig.get_paths()["stdlib"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "benchmarks.light_server", "--port", str(port)]
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        command = ["taskset", "-c", "1", *command]
    server = subprocess.Popen(command)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("the light server did not start")


def module_of(filename: str) -> str:
    if filename.startswith(("~", "<")):
        return "builtins"
    parts = Path(filename).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].split(".")[0]
    if "cvekyc_async" in parts:
        at = len(parts) - 1 - parts[::-1].index("cvekyc_async")
        return "cvekyc_async." + ".".join(parts[at + 1 :]).removesuffix(".py")
    if filename.startswith(_STDLIB):
        return "stdlib/asyncio" if "asyncio" in parts else "stdlib"
    return "other"


async def ours(base_url: str, calls: int, in_flight: int, transport: str) -> None:
    async with AsyncCVClient(
        "k",
        "s",
        base_url=base_url,
        max_concurrency=in_flight,
        transport=transport,  # type: ignore[arg-type]
    ) as client:
        await client.extract_many([UPLOAD] * in_flight, concurrency=in_flight)  # warm
        results = await client.extract_many([UPLOAD] * calls, concurrency=in_flight)
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:1]


async def raw_aiohttp(base_url: str, calls: int, in_flight: int) -> None:
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:
        left = iter(range(calls + in_flight))

        async def worker() -> None:
            for _ in left:
                form = aiohttp.FormData()
                form.add_field("img", UPLOAD, filename="a.jpg", content_type="image/jpeg")
                async with session.post(
                    base_url + "/api/v2/ekyc/card",
                    params={"format_type": "file", "get_thumb": "false"},
                    data=form,
                ) as answer:
                    body = await answer.json()
                    assert body["errorCode"] == "0"

        await asyncio.gather(*(worker() for _ in range(in_flight)))


def profiled(name: str, run: object, calls: int) -> dict[str, float]:
    profile = cProfile.Profile()
    started = time.process_time()
    profile.enable()
    asyncio.run(run)  # type: ignore[arg-type]
    profile.disable()
    cpu = time.process_time() - started
    stats = pstats.Stats(profile)
    by_module: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_module[module_of(filename)] += tottime
    say()
    say(f"{name}: {calls} calls, CPU {cpu * 1e6 / calls:.0f} us/call under the profiler")
    total = sum(by_module.values())
    for module, seconds in sorted(by_module.items(), key=lambda kv: -kv[1]):
        share = seconds / total if total else 0.0
        if share >= 0.005:
            say(f"  {module:32} {seconds * 1e6 / calls:8.1f} us/call  {share:6.1%}")
    return {k: v * 1e6 / calls for k, v in by_module.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=4000, help="uploads per contender")
    p.add_argument("--in-flight", type=int, default=64, help="uploads at once")
    p.add_argument("--transport", default="auto", help="the client's transport")
    p.add_argument("--save", type=Path, default=None, help="also write the summary to this file")
    args = p.parse_args(argv)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
    port = free_port()
    server = start_server(port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        profiled(
            f"cvekyc ({args.transport})",
            ours(base_url, args.calls, args.in_flight, args.transport),
            args.calls,
        )
        profiled("raw aiohttp", raw_aiohttp(base_url, args.calls, args.in_flight), args.calls)
    finally:
        server.terminate()
        server.wait(10)
    if args.save is not None:
        head = (
            f"# python -m benchmarks.profile_client --calls {args.calls} --in-flight "
            f"{args.in_flight} --transport {args.transport} (100 KB uploads, light server on "
            f"core 1); {os.cpu_count()} cores, Python {sys.version.split()[0]}"
        )
        args.save.write_text("\n".join([head, *_LINES]) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
