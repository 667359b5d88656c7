"""Throughput at zero server latency for 1, 16, 64 and 256 requests in flight.

python -m benchmarks.bench_throughput [--quick]
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import anyio

from benchmarks import contenders as c
from benchmarks._harness import (
    emulator,
    make_files,
    parser,
    pin_to_core,
    spread,
    summary,
    table,
    timed,
    write_json,
)

IN_FLIGHT = (1, 16, 64, 256)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    n = 64 if args.quick else 2000
    rounds = args.rounds or (1 if args.quick else 3)
    pinned = pin_to_core(0)
    files = make_files(n)
    contenders: dict[str, Any] = {
        "cvekyc": c.cvekyc,
        "cvekyc pool=1": functools.partial(c.cvekyc, transport="pool"),
        "raw httpx": c.raw_httpx,
        "raw aiohttp": c.raw_aiohttp,
    }
    if importlib.util.find_spec("httpx_aiohttp") is not None:
        contenders["cvekyc aiohttp"] = functools.partial(c.cvekyc, transport="aiohttp")
    rates: dict[str, dict[int, list[float]]] = {
        name: {k: [] for k in IN_FLIGHT} for name in contenders
    }
    with emulator() as emu:
        anyio.run(c.cvekyc, emu.base_url, files[:100], 16)  # warm up server and page cache
        for _ in range(rounds):
            for k in IN_FLIGHT:
                for name, run in contenders.items():  # alternate contenders within each round
                    elapsed = timed(lambda run=run, k=k: anyio.run(run, emu.base_url, files, k))
                    rates[name][k].append(n / elapsed)
        loop_n = 10 if args.quick else 300
        loop_rate = loop_n / timed(lambda: c.requests_loop(emu.base_url, files[:loop_n]))
    stats = {name: {k: summary(v) for k, v in per.items()} for name, per in rates.items()}
    best_httpx = max(s["median"] for s in stats["raw httpx"].values())
    header = ["in flight", *contenders, "cvekyc / best raw httpx", "cvekyc / raw aiohttp"]
    rows = []
    for k in IN_FLIGHT:
        ours = stats["cvekyc"][k]["median"]
        rows.append(
            [
                str(k),
                *(spread(stats[name][k]) for name in contenders),
                f"{ours / best_httpx:.2f}",
                f"{ours / stats['raw aiohttp'][k]['median']:.2f}",
            ]
        )
    print(
        table(
            f"Requests/s, zero latency, 100 KB uploads, {n} per run, median (min-max) of {rounds}",
            header,
            rows,
        )
    )
    print(f"\nsequential requests loop (vendor sample): {loop_rate:.0f} requests/s")
    ours_16, ours_256 = stats["cvekyc"][16]["median"], stats["cvekyc"][256]["median"]
    print(f"cvekyc 256 vs 16 in flight: {ours_256 / ours_16:.2f}x; client pinned: {pinned}")
    path = write_json(
        "throughput",
        {"n": n, "rounds": rounds, "rates": rates, "summary": stats, "requests_loop": loop_rate},
        args.json,
    )
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
