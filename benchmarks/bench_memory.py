"""Peak RSS of a batch of 1,000 and of 10,000 inputs read from files on disk.

Each batch runs in a fresh process, which reports its own peak RSS: ``extract_as_completed``
writing results to a file as they come (the way ``cvekyc batch`` works), and ``extract_many``,
which returns the list of every result.

    python -m benchmarks.bench_memory [--quick]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from benchmarks._harness import API_KEY, API_SECRET, emulator, make_files, parser, table, write_json

CHILD = r"""
import json, resource, sys
import anyio, msgspec
from cvekyc_async import AsyncCVClient

base, listing, out, concurrency, helper = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]

def paths():
    with open(listing) as fh:
        for line in fh:
            yield line.rstrip("\n")

async def main():
    done = ok = 0
    async with AsyncCVClient(%r, %r, base_url=base, max_concurrency=concurrency) as client:
        if helper == "extract_many":  # the list of every result, written at the end
            results = await client.extract_many(list(paths()), concurrency=concurrency)
            with open(out, "wb") as sink:
                for r in results:
                    sink.write(msgspec.json.encode({"i": r.index, "ok": r.ok, "result": r.result}) + b"\n")
            return len(results), sum(r.ok for r in results)
        with open(out, "wb") as sink:
            async with client.extract_as_completed(paths(), concurrency=concurrency) as results:
                async for r in results:
                    sink.write(msgspec.json.encode({"i": r.index, "ok": r.ok, "result": r.result}) + b"\n")
                    done += 1
                    ok += r.ok
    return done, ok

done, ok = anyio.run(main)
print(json.dumps({"done": done, "ok": ok, "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
""" % (API_KEY, API_SECRET)


def run_batch(base: str, files: list, concurrency: int, helper: str) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(str(p) for p in files) + "\n")
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as out:
        pass
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, base, listing.name, out.name, str(concurrency), helper],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    sizes = (50, 300) if args.quick else (1000, 10_000)
    concurrency = 32
    files = make_files(max(sizes), size=50_000)
    helpers = ("extract_as_completed", "extract_many")
    measured: dict[str, dict[int, dict]] = {h: {} for h in helpers}
    with emulator() as emu:
        for n in sizes:
            for helper in helpers:
                got = run_batch(emu.base_url, files[:n], concurrency, helper)
                assert got["done"] == n == got["ok"], got
                measured[helper][n] = got
    mb = {h: {n: measured[h][n]["peak_rss_kb"] / 1024 for n in sizes} for h in helpers}
    rows = [[f"{n:,}", *(f"{mb[h][n]:.1f}" for h in helpers)] for n in sizes]
    print(
        table(
            f"Peak RSS of a batch (50 KB files, concurrency {concurrency}), MB",
            ["inputs", *helpers],
            rows,
        )
    )
    ratio = mb["extract_as_completed"][sizes[1]] / mb["extract_as_completed"][sizes[0]]
    print(f"\nextract_as_completed {sizes[1]:,} / {sizes[0]:,}: {ratio:.2f}x")
    print(
        f"extract_many keeps every result until the end: {mb['extract_many'][sizes[1]]:.0f} MB "
        f"at {sizes[1]:,} against {mb['extract_as_completed'][sizes[1]]:.0f} MB"
    )
    path = write_json(
        "memory",
        {
            "concurrency": concurrency,
            "batches": [
                {"helper": h, "inputs": n, "peak_rss_mb": mb[h][n]} for h in helpers for n in sizes
            ],
            "ratio": ratio,
        },
        args.json,
    )
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
