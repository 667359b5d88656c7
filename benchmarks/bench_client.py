"""What the client itself costs per request, against a server that is not the bound.

The emulator decodes every image with Pillow and tops out near 1,000 requests/s on its core,
so against it every fast contender measures the emulator. Here the server is
``benchmarks/light_server.py`` (uvicorn + httptools, reading each upload whole and answering a
fixed JSON of a chip card, 561 bytes), in its own process pinned to core 1 (``taskset -c 1``, with two cores
or more). Each run of each contender is a fresh client process pinned to core 0
(``python -m benchmarks.bench_client --one CONTENDER ...``, printing one JSON line), so that
one contender's imports, warm-up and garbage do not colour the next one's figures. Within a
round every contender runs once per cell, the first of them turning round from one round to
the next; the figures are medians of the rounds.

- **cvekyc**: ``AsyncCVClient(max_concurrency=N)`` as users build it (``transport="auto"``:
  aiohttp on asyncio) and ``extract_many(files, concurrency=N)``.
- **cvekyc sharded**: the same with ``transport="sharded"`` (several small httpx pools, what
  trio gets).
- **raw httpx**, **raw aiohttp**: one client, a pool as large as the requests in flight, N
  worker tasks (``benchmarks/contenders.py``). Raw httpx is sent a fifth of the requests (at
  least two per slot): it manages 50-150 requests/s from 64 in flight up, where the same count
  would take minutes a run, and its CPU bounds its rate from the first turn of the slots.

Every contender uploads 100 KB JPEG files, each read from disk when it is sent (a pool of
distinct files, cycled; the page cache holds them), as multipart to ``/api/v2/ekyc/card``, and
checks that each answer's ``errorCode`` is ``"0"``: a failed request is counted and shown, not
averaged away. Cells are (server latency, requests in flight): (0, 16), (0, 64), (0, 256),
(100 ms, 256), (100 ms, 1024) with warm connections (one request per slot sent before the
clock starts), TLS warm (0, 64) and TLS cold (100 ms, 256): the clock runs from opening the
client, handshakes included. TLS uses a local CA made by ``trustme`` (an ECDSA key): the
server gets its certificate, the clients trust the CA as their users would
(``AsyncCVClient(verify=ca_path)``, an ``ssl.SSLContext`` for aiohttp and httpx).

Per run: requests/s (wall), the client process's CPU microseconds per request
(``time.process_time()``, all its threads, the timed part only), the server's CPU over the
same time as a share of its core (near 100 %: the server is the bound in that cell) and, with
latency, the share of the ideal rate (in flight / latency). Targets, reported and not asserted:
cvekyc's CPU per request at most 1.25 x raw aiohttp's and its rate at least 0.85 x; sharded's
rate at least 0.6 x; at (100 ms, 256) cvekyc's share of the ideal within 5 points of raw
aiohttp's.

    python -m benchmarks.bench_client [--quick] [--rounds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import contenders as c
from benchmarks._harness import (
    RESULTS_DIR,
    loop_name,
    make_files,
    measure,
    parser,
    pin_to_core,
    server,
    summary,
    table,
    write_json,
)
from benchmarks.light_server import ANSWER

BASELINE = "raw aiohttp"
CONTENDERS: dict[str, Any] = {
    "cvekyc": c.cvekyc,  # as users build it: transport="auto" (aiohttp on asyncio)
    "cvekyc sharded": functools.partial(c.cvekyc, transport="sharded"),
    "raw httpx": c.raw_httpx,
    BASELINE: c.raw_aiohttp,
}
#: Contenders sent a fifth of the requests (at least two per slot): see Cell.requests.
SLOW = frozenset({"raw httpx"})
#: Distinct files the uploads cycle through (made once, kept in the temporary folder).
POOL = 256
QUICK_REQUESTS = 200
CPU_LIMIT = 1.25  # cvekyc's CPU per request over raw aiohttp's, at most
RATE_FLOOR = 0.85  # cvekyc's requests/s over raw aiohttp's, at least
SHARDED_FLOOR = 0.6  # the sharded transport's requests/s over raw aiohttp's, at least
IDEAL_POINTS = 5  # cvekyc's share of the ideal rate at (100 ms, 256), points below raw aiohttp


@dataclass(frozen=True)
class Cell:
    """Server latency, requests in flight, and how the connections are made."""

    latency: float
    in_flight: int
    tls: bool = False
    warm: bool = True

    @property
    def key(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}-{self.connections.split()[-1]}-{self.latency_ms}ms-{self.in_flight}"

    @property
    def latency_ms(self) -> int:
        return round(self.latency * 1000)

    @property
    def connections(self) -> str:
        return ("TLS " if self.tls else "") + ("warm" if self.warm else "cold")

    @property
    def label(self) -> str:
        return f"{self.connections}, {self.latency_ms} ms, {self.in_flight} in flight"

    @property
    def ideal(self) -> float | None:
        """Requests/s if every request took the server's latency and nothing more."""
        return self.in_flight / self.latency if self.latency else None

    def requests(self, quick: bool, contender: str = BASELINE) -> int:
        # About 2-4 s per run of the faster contenders: the latency cells take ten turns of
        # every slot, so that the ramp at the start and the drain at the end weigh little.
        if quick:
            return QUICK_REQUESTS
        n = max(3000, (10 if self.latency else 8) * self.in_flight)
        if contender in SLOW:
            # 50-150 requests/s from 64 in flight up: the same count would take 20-150 s a run.
            # Its rate is bound by its CPU from the first turn of the slots, so two do.
            return max(2 * self.in_flight, n // 5)
        return n


FULL_CELLS = (
    Cell(0.0, 16),
    Cell(0.0, 64),
    Cell(0.0, 256),
    Cell(0.1, 256),
    Cell(0.1, 1024),
    Cell(0.0, 64, tls=True),
    Cell(0.1, 256, tls=True, warm=False),
)
# A smoke run: the smallest cell, and the TLS handshakes at a few in flight.
QUICK_CELLS = (Cell(0.0, 16), Cell(0.1, 32, tls=True, warm=False))
IDEAL_CELL = Cell(0.1, 256)


def uploads(n: int) -> list[Path]:
    pool = make_files(min(n, POOL))
    return [pool[i % len(pool)] for i in range(n)]


# -- one run, in a process of its own ---------------------------------------------------------


def _server_cpu(pid: int | None) -> float | None:
    """Seconds of CPU the server process has used (user + system), from ``/proc``."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            # The command name may hold spaces: the fields are counted after its ")".
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class _Clock:
    pid: int | None
    wall: float = 0.0
    cpu: float = 0.0
    server: float | None = None

    def start(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.server = _server_cpu(self.pid)

    def stop(self, requests: int) -> dict[str, Any]:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        now = _server_cpu(self.pid)
        busy = (now - self.server) / wall if now is not None and self.server is not None else None
        return {
            "requests": requests,
            "wall": wall,
            "cpu": cpu,
            "rate": requests / wall,
            "cpu_us": cpu / requests * 1e6,
            "server_busy": busy,
        }


async def _timed(
    contender: Any, base_url: str, files: list[Path], in_flight: int, warm: bool, pid: int | None
) -> dict[str, Any]:
    # As _harness._measure, with the server's CPU read at the same moments.
    clock = _Clock(pid)
    clock.start()
    async with contender(base_url, in_flight) as send:
        if warm:
            await send(files[:in_flight])
            clock.start()
        return clock.stop(await send(files))


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    pin_to_core(0)
    files = uploads(args.requests)
    failures: list[str] = []
    contender = functools.partial(CONTENDERS[args.one], verify=args.ca, failures=failures)
    from cvekyc_async._runner import run

    got: dict[str, Any] = run(
        _timed, contender, args.url, files, args.in_flight, not args.cold, args.server_pid
    )
    # Failures of the warm-up count too: they are failures of this contender in this cell.
    got["failed"] = len(failures)
    got["first_failure"] = failures[0] if failures else None
    got["crashed"] = False
    return got


def run_child(name: str, cell: Cell, url: str, n: int, ca: Path | None, pid: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_client", "--one", name, "--url", url]
    cmd += ["--in-flight", str(cell.in_flight), "--requests", str(n), "--server-pid", str(pid)]
    if not cell.warm:
        cmd.append("--cold")
    if ca is not None:
        cmd += ["--ca", str(ca)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
    if proc.returncode != 0:
        # Reported as a run without figures rather than ending the benchmark: one broken run
        # should not cost the figures of every other one.
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(
            f"{name} in {cell.label}: the run ended with status {proc.returncode}:", file=sys.stderr
        )
        print(proc.stderr, file=sys.stderr)
        return {"crashed": True, "failed": 0, "first_failure": f"the run crashed: {last}"}
    got: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return got


# -- the servers --------------------------------------------------------------------------------


def local_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA's certificate, and a certificate for 127.0.0.1 it signed with its key: three files."""
    import trustme

    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    ca_path, cert, key = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca.cert_pem.write_to_path(str(ca_path))
    for i, blob in enumerate(issued.cert_chain_pems):
        blob.write_to_path(str(cert), append=i > 0)
    issued.private_key_pem.write_to_path(str(key))
    return ca_path, cert, key


@dataclass(frozen=True)
class Served:
    url: str
    pid: int
    ca: Path | None


def light_server(stack: ExitStack, latency: float, tls: tuple[Path, Path, Path] | None) -> Served:
    cmd = [sys.executable, "-m", "benchmarks.light_server", "--port", "0"]
    cmd += ["--latency", str(latency)]
    if tls is not None:
        cmd += ["--tls", str(tls[1]), str(tls[2])]
    proc, url, _log = stack.enter_context(server(cmd, 1, "the light server"))
    return Served(url, proc.pid, tls[0] if tls else None)


# -- the report ---------------------------------------------------------------------------------


def _rotated(names: list[str], by: int) -> Iterator[str]:
    for i in range(len(names)):
        yield names[(i + by) % len(names)]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarise(cell: Cell, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, samples in runs.items():
        done = [s for s in samples if not s["crashed"]]
        busy = [s["server_busy"] for s in done if s["server_busy"] is not None]
        rate = summary([s["rate"] for s in done]) if done else None
        found[name] = {
            "rate": rate,
            "cpu_us": summary([s["cpu_us"] for s in done]) if done else None,
            "share_of_ideal": _ratio(rate["median"] if rate else None, cell.ideal),
            "server_busy": statistics.median(busy) if busy else None,
            "failed": sum(s["failed"] for s in samples),
            "crashed": len(samples) - len(done),
            "first_failure": next(
                (s["first_failure"] for s in samples if s["first_failure"]), None
            ),
        }

    def median(figures: dict[str, Any], what: str) -> float | None:
        return figures[what]["median"] if figures[what] else None

    base = found[BASELINE]
    for figures in found.values():
        figures["rate_ratio"] = _ratio(median(figures, "rate"), median(base, "rate"))
        figures["cpu_ratio"] = _ratio(median(figures, "cpu_us"), median(base, "cpu_us"))
    return {
        "latency": cell.latency,
        "in_flight": cell.in_flight,
        "tls": cell.tls,
        "warm": cell.warm,
        "ideal": cell.ideal,
        "contenders": found,
    }


def targets(cells: tuple[Cell, ...], stats: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def add(cell: Cell, who: str, what: str, met: bool | None, figure: str) -> None:
        figures = stats[cell.key]["contenders"][who]
        if met is None:
            figure = "no figures: every run of it or of raw aiohttp crashed"
        if figures["failed"]:
            figure += f", {figures['failed']} failed"
        if figures["crashed"]:
            figure += f", crashed runs: {figures['crashed']}"
        met = bool(met) and not figures["failed"] and not figures["crashed"]
        found.append(
            {"cell": cell.key, "label": cell.label, "target": what, "met": met, "figure": figure}
        )

    for cell in cells:
        figures = stats[cell.key]["contenders"]
        cpu, rate = figures["cvekyc"]["cpu_ratio"], figures["cvekyc"]["rate_ratio"]
        sharded = figures["cvekyc sharded"]["rate_ratio"]
        add(
            cell,
            "cvekyc",
            f"cvekyc CPU/request <= {CPU_LIMIT} x raw aiohttp",
            None if cpu is None else cpu <= CPU_LIMIT,
            f"{cpu or 0:.3f} x",
        )
        add(
            cell,
            "cvekyc",
            f"cvekyc requests/s >= {RATE_FLOOR} x raw aiohttp",
            None if rate is None else rate >= RATE_FLOOR,
            f"{rate or 0:.3f} x",
        )
        add(
            cell,
            "cvekyc sharded",
            f"sharded requests/s >= {SHARDED_FLOOR} x raw aiohttp",
            None if sharded is None else sharded >= SHARDED_FLOOR,
            f"{sharded or 0:.3f} x",
        )
        if cell == IDEAL_CELL:
            ours = figures["cvekyc"]["share_of_ideal"]
            base = figures[BASELINE]["share_of_ideal"]
            both = ours is not None and base is not None
            points = (ours - base) * 100 if both else 0.0
            add(
                cell,
                "cvekyc",
                f"cvekyc share of ideal within {IDEAL_POINTS} points of raw aiohttp's",
                points >= -IDEAL_POINTS if both else None,
                f"{ours or 0:.0%} against {base or 0:.0%} ({points:+.0f} points)",
            )
    return found


def _shown(value: float | None, fmt: str, missing: str = "n/a") -> str:
    return missing if value is None else fmt.format(value)


def report(
    cells: tuple[Cell, ...], stats: dict[str, Any], goals: list[dict[str, Any]], rounds: int
) -> str:
    header = ["connections", "latency", "in flight", "contender", "requests/s", "of ideal"]
    header += ["CPU us/request", "rate / aiohttp", "CPU / aiohttp", "server CPU", "failed"]
    rows = []
    for cell in cells:
        for name, f in stats[cell.key]["contenders"].items():
            share, busy = f["share_of_ideal"], f["server_busy"]
            failed = str(f["failed"]) + (f" (crashed runs: {f['crashed']})" if f["crashed"] else "")
            rows.append(
                [
                    cell.connections,
                    f"{cell.latency_ms} ms" if cell.latency else "0",
                    str(cell.in_flight),
                    name,
                    _shown(f["rate"] and f["rate"]["median"], "{:,.0f}"),
                    _shown(share, "{:.0%}", ""),
                    _shown(f["cpu_us"] and f["cpu_us"]["median"], "{:,.0f}"),
                    _shown(f["rate_ratio"], "{:.2f}"),
                    _shown(f["cpu_ratio"], "{:.2f}"),
                    _shown(busy, "{:.0%}", ""),
                    failed,
                ]
            )
    runs = f"medians of {rounds} rounds" if rounds > 1 else "one round"
    title = (
        f"light server (uvicorn + httptools, a {len(ANSWER):,}-byte answer), 100 KB uploads read "
        f"from disk per request, a fresh client process per run, {runs}, {loop_name()}"
    )
    lines = [table(title, header, rows), ""]
    lines.append(
        table(
            "targets (reported, not asserted), cvekyc = AsyncCVClient() (transport auto)",
            ["cell", "target", "result"],
            [
                [
                    g["label"],
                    g["target"],
                    f"{'met' if g['met'] else 'not met'} ({g['figure']})",
                ]
                for g in goals
            ],
        )
    )
    failed = [
        (cell, name, f)
        for cell in cells
        for name, f in stats[cell.key]["contenders"].items()
        if f["failed"] or f["crashed"]
    ]
    if failed:
        lines.append("")
        for cell, name, f in failed:
            lines.append(
                f"{name}, {cell.label}: requests failed: {f['failed']}, crashed runs: "
                f"{f['crashed']}; first: {f['first_failure']}"
            )
    lines.append("")
    shown = []
    for cell in cells:
        counts = stats[cell.key]["requests"]
        fewer = [f"{name} {n:,}" for name, n in counts.items() if n != counts[BASELINE]]
        shown.append(
            f"{cell.label}: {counts[BASELINE]:,}" + (f" ({', '.join(fewer)})" if fewer else "")
        )
    lines.append("requests per run: " + "; ".join(shown))
    lines.append(
        f"server on core 1, each client run a fresh process on core 0: {(os.cpu_count() or 1) >= 2}"
    )
    return "\n".join(lines)


# -- the whole benchmark ------------------------------------------------------------------------


def main() -> None:
    p = parser(__doc__ or "")
    one = p.add_argument_group("one run in this process, printed as a JSON line (for the parent)")
    one.add_argument("--one", choices=list(CONTENDERS), help="the contender")
    one.add_argument("--url", help="the server's base URL")
    one.add_argument("--in-flight", type=int, default=16, help="requests at once")
    one.add_argument("--requests", type=int, default=QUICK_REQUESTS, help="timed requests")
    one.add_argument("--cold", action="store_true", help="time from opening the client")
    one.add_argument("--ca", default=None, help="a CA bundle file to trust")
    one.add_argument("--server-pid", type=int, default=None, help="the server's process id")
    args = p.parse_args()
    if args.one:
        print(json.dumps(one_run(args)))
        return
    cells = QUICK_CELLS if args.quick else FULL_CELLS
    rounds = args.rounds or (1 if args.quick else 3)
    pin_to_core(0)  # the children inherit it; each pins itself too
    uploads(max(cell.requests(args.quick) for cell in cells))  # made before any clock runs
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        cell.key: {name: [] for name in CONTENDERS} for cell in cells
    }
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        tls = local_ca(Path(folder)) if any(cell.tls for cell in cells) else None
        servers: dict[tuple[float, bool], Served] = {}
        for cell in cells:
            if (cell.latency, cell.tls) not in servers:
                served = light_server(stack, cell.latency, tls if cell.tls else None)
                servers[cell.latency, cell.tls] = served
                # The server's first connections and imports, outside every contender's run.
                warm_up = functools.partial(c.raw_aiohttp, verify=served.ca)
                measure(warm_up, served.url, uploads(64), 16, True)
        for turn in range(rounds):
            for cell in cells:
                served = servers[cell.latency, cell.tls]
                for name in _rotated(list(CONTENDERS), turn):
                    n = cell.requests(args.quick, name)
                    got = run_child(name, cell, served.url, n, served.ca, served.pid)
                    samples[cell.key][name].append(got)
    stats = {cell.key: summarise(cell, samples[cell.key]) for cell in cells}
    for cell in cells:
        stats[cell.key]["requests"] = {name: cell.requests(args.quick, name) for name in CONTENDERS}
    goals = targets(cells, stats)
    text = report(cells, stats, goals, rounds)
    print(text)
    data = {
        "rounds": rounds,
        "quick": args.quick,
        "server": "benchmarks.light_server",
        "upload_bytes": make_files(1)[0].stat().st_size,
        "contenders": list(CONTENDERS),
        "cells": {
            cell.key: {
                "latency": cell.latency,
                "in_flight": cell.in_flight,
                "tls": cell.tls,
                "warm": cell.warm,
                "requests": {name: cell.requests(args.quick, name) for name in CONTENDERS},
                "samples": samples[cell.key],
            }
            for cell in cells
        },
        "summary": stats,
        "targets": goals,
    }
    path = write_json("client", data, args.json)
    if not args.quick:
        # The figures run_all shows, even when --json sent the raw numbers elsewhere.
        if args.json is not None:
            write_json("client", data, None)
        (RESULTS_DIR / "bench_client.txt").write_text(text + "\n", encoding="utf-8")
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
