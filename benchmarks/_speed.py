"""The speed runs shared by bench_throughput and bench_latency: every contender at each number
of requests in flight, warm and cold, in alternation, several rounds; requests/s and the client
process's CPU microseconds per request, with ratios to raw aiohttp measured in the same run."""

from __future__ import annotations

import functools
from typing import Any

from benchmarks import contenders as c
from benchmarks._harness import (
    emulator,
    loop_name,
    make_files,
    measure,
    parser,
    pin_to_core,
    summary,
    table,
    timed,
    write_json,
)

MODES = ("warm", "cold")
BASELINE = "raw aiohttp"


def contenders(with_pool: bool) -> dict[str, Any]:
    found: dict[str, Any] = {
        "cvekyc": c.cvekyc,  # as users build it: transport="auto" (aiohttp on asyncio)
        "cvekyc sharded": functools.partial(c.cvekyc, transport="sharded"),
    }
    if with_pool:
        found["cvekyc pool"] = functools.partial(c.cvekyc, transport="pool")
    found["raw httpx"] = c.raw_httpx
    found[BASELINE] = c.raw_aiohttp
    return found


def run(
    name: str,
    doc: str,
    *,
    latency: float,
    in_flight: tuple[int, ...],
    n: int,
    quick_n: int,
    with_pool: bool,
    loop_n: int,
) -> None:
    args = parser(doc).parse_args()
    n = quick_n if args.quick else n
    if args.quick:  # a smoke run: the fewest and the most in flight
        in_flight = (in_flight[0], in_flight[-1])
    rounds = args.rounds or (1 if args.quick else 3)
    pinned = pin_to_core(0)
    files = make_files(n)
    who = contenders(with_pool)
    samples: dict[str, dict[str, dict[int, list[dict[str, float]]]]] = {
        mode: {name: {k: [] for k in in_flight} for name in who} for mode in MODES
    }
    faults = {"latency": latency} if latency else {}
    with emulator(**faults) as emu:
        measure(c.cvekyc, emu.base_url, files[:64], 16, True)  # warm the server and page cache
        for _ in range(rounds):
            for k in in_flight:
                for mode in MODES:
                    for who_name, contender in who.items():  # alternate within each round
                        s = measure(contender, emu.base_url, files, k, mode == "warm")
                        samples[mode][who_name][k].append(
                            {"rate": s.rate, "cpu_us": s.cpu_us, "wall": s.wall}
                        )
        loop_n = min(loop_n, n)
        loop_rate = loop_n / timed(lambda: c.requests_loop(emu.base_url, files[:loop_n]))
    stats: dict[str, Any] = {}
    for mode in MODES:
        stats[mode] = {}
        for who_name in who:
            stats[mode][who_name] = {}
            for k in in_flight:
                runs = samples[mode][who_name][k]
                stats[mode][who_name][k] = {
                    "rate": summary([r["rate"] for r in runs]),
                    "cpu_us": summary([r["cpu_us"] for r in runs]),
                }
    title = "zero latency" if not latency else f"{latency * 1000:.0f} ms server latency"
    for mode in MODES:
        header = [
            "in flight",
            "contender",
            "requests/s",
            "CPU us/request",
            "rate / aiohttp",
            "CPU / aiohttp",
        ]
        if latency:
            header.append("of ideal")
        rows = []
        for k in in_flight:
            base = stats[mode][BASELINE][k]
            for who_name in who:
                st = stats[mode][who_name][k]
                row = [
                    str(k),
                    who_name,
                    f"{st['rate']['median']:.0f}",
                    f"{st['cpu_us']['median']:.0f}",
                    f"{st['rate']['median'] / base['rate']['median']:.2f}",
                    f"{st['cpu_us']['median'] / base['cpu_us']['median']:.2f}",
                ]
                if latency:
                    row.append(f"{st['rate']['median'] / (k / latency):.0%}")
                rows.append(row)
        print(
            table(
                f"{title}, {mode} connections, 100 KB uploads, {n} per run, medians of {rounds}, "
                f"{loop_name()}",
                header,
                rows,
            )
        )
        print()
    print(f"sequential requests loop (vendor sample): {loop_rate:.1f} requests/s")
    print(f"client pinned to a core: {pinned}")
    path = write_json(
        name,
        {
            "n": n,
            "rounds": rounds,
            "latency": latency,
            "in_flight": list(in_flight),
            "contenders": list(who),
            "samples": samples,
            "summary": stats,
            "requests_loop": loop_rate,
        },
        args.json,
    )
    print(f"raw numbers: {path}")
