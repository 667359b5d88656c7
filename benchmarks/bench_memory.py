"""Peak RSS of a batch of 1,000 and of 10,000 inputs read from files on disk.

Each batch runs in a fresh process (``extract_as_completed``, results written to a file as they
come, the way ``cvekyc batch`` works), which reports its own peak RSS.

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

base, listing, out, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def paths():
    with open(listing) as fh:
        for line in fh:
            yield line.rstrip("\n")

async def main():
    done = ok = 0
    async with AsyncCVClient(%r, %r, base_url=base, max_concurrency=concurrency) as client:
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


def run_batch(base: str, files: list, concurrency: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(str(p) for p in files) + "\n")
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as out:
        pass
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, base, listing.name, out.name, str(concurrency)],
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
    measured = {}
    with emulator() as emu:
        for n in sizes:
            measured[n] = run_batch(emu.base_url, files[:n], concurrency)
            assert measured[n]["done"] == n == measured[n]["ok"], measured[n]
    small, large = (measured[n]["peak_rss_kb"] / 1024 for n in sizes)
    rows = [[f"{n:,}", f"{measured[n]['peak_rss_kb'] / 1024:.1f}"] for n in sizes]
    print(
        table(
            f"Peak RSS of a batch (50 KB files, concurrency {concurrency})",
            ["inputs", "peak RSS (MB)"],
            rows,
        )
    )
    print(f"\nratio {sizes[1]:,} / {sizes[0]:,}: {large / small:.2f}x")
    path = write_json(
        "memory",
        {"concurrency": concurrency, "batches": measured, "ratio": large / small},
        args.json,
    )
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
