"""Adaptive concurrency against a capacity-limited service.

The emulator serves 32 requests at once (latency 50 ms +0-20 ms, growing by half at full load),
queues 16 more and answers 429 with ``Retry-After: 1`` beyond that. A sweep of fixed
``max_concurrency`` values finds the best fixed throughput; then ``max_concurrency="auto"`` runs
for 30 s from its start of 4. Reported: throughput against the best fixed, the share of requests
answered 429, and the time until every further second ran at 90 % of the best fixed or more.

    python -m benchmarks.bench_adaptive [--quick]
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks._harness import (
    drive_limit,
    emulator,
    loop_name,
    make_files,
    parser,
    pin_to_core,
    table,
    write_json,
)
from cvekyc_async._runner import run

MODEL = {
    "capacity": 32,
    "queue": 16,
    "latency": 0.05,
    "jitter": 0.02,
    "slowdown": 0.5,
    "retry_after": "1",
    "seed": 1,
}
FIXED = (8, 16, 24, 32, 40, 48, 64)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    sweep_seconds = 1.5 if args.quick else 10.0
    auto_seconds = 3.0 if args.quick else 30.0
    fixed = (16, 48) if args.quick else FIXED
    pin_to_core(0)
    files = make_files(200, size=20_000)
    sweep: dict[int, dict[str, Any]] = {}
    with emulator(**MODEL) as emu:
        for k in fixed:
            emu.reset()
            run_ = run(drive_limit, emu.base_url, files, k, sweep_seconds)
            stats = emu.stats()
            run_["rate"] = run_["answers"] / run_["elapsed"]
            run_["requests"], run_["busy"] = stats["requests"], stats["busy"]
            sweep[k] = run_
            time.sleep(1.2)  # let Retry-After waits and the server's queue drain
        emu.reset()
        auto = run(drive_limit, emu.base_url, files, "auto", auto_seconds)
        stats = emu.stats()
        auto["rate"] = auto["answers"] / auto["elapsed"]
        auto["requests"], auto["busy"] = stats["requests"], stats["busy"]
    best_k = max(sweep, key=lambda k: sweep[k]["rate"])
    best = sweep[best_k]["rate"]
    bins = auto["per_second"]
    converged = next((t for t in range(len(bins)) if all(b >= 0.9 * best for b in bins[t:])), None)
    rows = [
        [
            str(k),
            f"{r['rate']:.0f}",
            f"{r['rate'] / best:.0%}",
            f"{r['busy'] / max(1, r['requests']):.2%}",
            str(r["failed"]),
        ]
        for k, r in sweep.items()
    ]
    rows.append(
        [
            "auto",
            f"{auto['rate']:.0f}",
            f"{auto['rate'] / best:.0%}",
            f"{auto['busy'] / max(1, auto['requests']):.2%}",
            str(auto["failed"]),
        ]
    )
    print(
        table(
            f"Capacity-limited emulator (32 in service, queue 16, 50 ms): {sweep_seconds:g} s per "
            f"fixed setting, {auto_seconds:g} s of auto, {loop_name()}",
            ["max_concurrency", "answers/s", "of best fixed", "answered 429", "failed"],
            rows,
        )
    )
    print(f"\nbest fixed: {best_k} in flight, {best:.0f}/s")
    print(
        f"auto: {auto['rate']:.0f}/s over {auto['elapsed']:.0f} s = {auto['rate'] / best:.0%} of "
        f"the best fixed; 429 share {auto['busy'] / max(1, auto['requests']):.2%}; "
        f"every second at >= 90 % of the best fixed from t = {converged} s"
    )
    print("auto concurrency by second:", " ".join(str(v) for v in auto["levels"]))
    path = write_json(
        "adaptive",
        {
            "model": MODEL,
            "sweep": {str(k): v for k, v in sweep.items()},
            "auto": auto,
            "best_fixed": {"in_flight": best_k, "rate": best},
            "auto_over_best": auto["rate"] / best,
            "converged_after_s": converged,
        },
        args.json,
    )
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
