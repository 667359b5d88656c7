"""Latency-bound throughput and CPU per request: the server takes 100 ms per answer; 16, 64 and
256 requests in flight, as a share of the ideal ``in_flight / latency``.

    python -m benchmarks.bench_latency [--quick]
"""

from __future__ import annotations

from benchmarks._speed import run


def main() -> None:
    run(
        "latency",
        __doc__ or "",
        latency=0.1,
        in_flight=(16, 64, 256),
        n=1536,
        quick_n=64,
        with_pool=False,
        loop_n=40,
    )


if __name__ == "__main__":
    main()
