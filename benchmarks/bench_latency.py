"""Latency-bound throughput: the server takes 100 ms per answer; 2,000 requests at 64 and 256
in flight, as a fraction of the ideal ``in_flight / latency``.

    python -m benchmarks.bench_latency [--quick]
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

LATENCY = 0.1
IN_FLIGHT = (64, 256)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    n = 64 if args.quick else 2000
    rounds = args.rounds or (1 if args.quick else 3)
    pin_to_core(0)
    files = make_files(n)
    contenders: dict[str, Any] = {
        "cvekyc": c.cvekyc,
        "raw httpx": c.raw_httpx,
        "raw aiohttp": c.raw_aiohttp,
    }
    if importlib.util.find_spec("httpx_aiohttp") is not None:
        contenders["cvekyc aiohttp"] = functools.partial(c.cvekyc, transport="aiohttp")
    rates: dict[str, dict[int, list[float]]] = {
        name: {k: [] for k in IN_FLIGHT} for name in contenders
    }
    with emulator(latency=LATENCY) as emu:
        anyio.run(c.cvekyc, emu.base_url, files[:64], 64)
        for _ in range(rounds):
            for k in IN_FLIGHT:
                for name, run in contenders.items():
                    elapsed = timed(lambda run=run, k=k: anyio.run(run, emu.base_url, files, k))
                    rates[name][k].append(n / elapsed)
        loop_n = 4 if args.quick else 40
        loop_rate = loop_n / timed(lambda: c.requests_loop(emu.base_url, files[:loop_n]))
    stats = {name: {k: summary(v) for k, v in per.items()} for name, per in rates.items()}
    header = ["in flight", "ideal", *contenders, "cvekyc % of ideal", "cvekyc / requests loop"]
    rows = []
    for k in IN_FLIGHT:
        ideal = k / LATENCY
        ours = stats["cvekyc"][k]["median"]
        rows.append(
            [
                str(k),
                f"{ideal:.0f}",
                *(spread(stats[name][k]) for name in contenders),
                f"{ours / ideal:.0%}",
                f"{ours / loop_rate:.0f}x",
            ]
        )
    print(
        table(
            f"Requests/s, 100 ms server latency, {n} per run, median (min-max) of {rounds}",
            header,
            rows,
        )
    )
    print(f"\nsequential requests loop (vendor sample): {loop_rate:.1f} requests/s")
    for name in contenders:
        shares = ", ".join(
            f"{k}: {stats[name][k]['median'] / (k / LATENCY):.0%}" for k in IN_FLIGHT
        )
        print(f"{name:>15} of ideal: {shares}")
    path = write_json(
        "latency",
        {
            "n": n,
            "rounds": rounds,
            "latency": LATENCY,
            "rates": rates,
            "summary": stats,
            "requests_loop": loop_rate,
        },
        args.json,
    )
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
