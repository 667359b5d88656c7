"""Throughput and CPU per request at zero server latency, 1 to 256 requests in flight.

python -m benchmarks.bench_throughput [--quick]
"""

from __future__ import annotations

from benchmarks._speed import run


def main() -> None:
    run(
        "throughput",
        __doc__ or "",
        latency=0.0,
        in_flight=(1, 16, 64, 256),
        n=2000,
        quick_n=64,
        with_pool=True,
        loop_n=300,
    )


if __name__ == "__main__":
    main()
