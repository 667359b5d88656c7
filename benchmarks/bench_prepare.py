"""Peak RSS and time of preparing 50 phone photos of 48 MP each at concurrency 16.

The photos are made once (seeded, cached in the temporary folder): an 8000×6000 JPEG of a smooth
gradient under seeded noise, the size a phone writes (about 14 MB), tagged EXIF orientation 6
(lying on its side, so it is turned upright), and the same picture as a 48 MP HEIC, which cannot
be decoded at a reduced scale as a JPEG can: the worst case for memory. Each run gets 50 paths to
the same file (hard links), each read and decoded in full, as 50 distinct photos would be.

Every contender runs in a fresh process, which imports the same modules (cvekyc_async, Pillow,
pillow-heif, httpx, aiohttp, anyio) and reads its RSS before it starts, so that its peak RSS
is its own and its growth is what the work added. The peak is ``VmHWM``: ``ru_maxrss`` is the
same figure as long as the process that starts it stays small, which is why the photos are made
in a process of their own (Linux carries the starter's peak into ``ru_maxrss`` across exec);
both are saved.

- **cvekyc prepare only**: ``AsyncCVClient(prepare=True, max_concurrency=16)`` and
  ``extract_many(paths, concurrency=16)`` over an ``httpx.MockTransport`` answering at once
  (the way respx mocks): preparing and building each request, no server, no socket.
- **cvekyc end to end**: the same against the emulator, in its own process pinned to a core:
  what a user's batch costs, sending included.
- **plain sequential loop**: ``Image.open``, ``ImageOps.exif_transpose``,
  ``thumbnail((2000, 2000))``, save as JPEG at quality 90, one photo after another.
- **naive 16 threads**: the same function in a ``ThreadPoolExecutor(16)``, what a hand-written
  concurrent version does: 16 photos decoded at once.

    python -m benchmarks.bench_prepare [--quick] [--rounds N]
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._harness import (
    API_KEY,
    API_SECRET,
    emulator,
    parser,
    table,
    write_json,
)

SEED = 20261126
CONCURRENCY = 16
JPEG_QUALITY = 92  # a phone's camera JPEG
HEIC_QUALITY = 50
NOISE = 0.10  # share of seeded noise over the gradient: about 14 MB at 48 MP, quality 92

CHILD = r"""
import io, json, os, resource, sys, time
from concurrent.futures import ThreadPoolExecutor

import aiohttp, anyio, httpx, pillow_heif
from PIL import Image, ImageOps

from cvekyc_async import AsyncCVClient

pillow_heif.register_heif_opener()  # Image.open reads HEIC (the peers); cvekyc opens it itself
mode, listing, concurrency, base_url = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(listing) as fh:
    paths = fh.read().split("\n")
ANSWER = b'{"data": [], "errorCode": "0", "errorMessage": ""}'


def status_kb(field):
    # This process's own figures: ru_maxrss also counts the peak of the process that started it
    # (Linux keeps it across exec), VmHWM does not.
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def by_hand(path):
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        im.thumbnail((2000, 2000))
        out = io.BytesIO()
        im.save(out, format="JPEG", quality=90)
    return im.size, len(out.getvalue())


async def ours():
    async def answer(request):
        await request.aread()
        return httpx.Response(200, content=ANSWER)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as mock:
        kwargs = {"base_url": base_url, "trust_env": False}
        if mode == "mock":
            kwargs.update(base_url="https://api.invalid", http_client=mock)
        async with AsyncCVClient(
            %r, %r, prepare=True, max_concurrency=concurrency, **kwargs
        ) as client:
            results = await client.extract_many(paths, concurrency=concurrency)
    bad = [repr(r.error) for r in results if not r.ok]
    assert not bad, bad[:3]
    return [(tuple(r.result.prepared[0].size), r.result.prepared[0].sent_bytes) for r in results]


baseline = status_kb("VmRSS")
wall, cpu = time.perf_counter(), time.process_time()
if mode in ("mock", "emulator"):
    outputs = anyio.run(ours)
elif mode == "loop":
    outputs = [by_hand(p) for p in paths]
else:
    with ThreadPoolExecutor(concurrency) as pool:
        outputs = list(pool.map(by_hand, paths))
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({
    "wall": wall,
    "cpu": cpu,
    "baseline_kb": baseline,
    "peak_kb": status_kb("VmHWM"),
    "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "photos": len(outputs),
    "sizes": sorted({tuple(s) for s, _ in outputs}),
    "mean_out_bytes": sum(n for _, n in outputs) / len(outputs),
}))
""" % (API_KEY, API_SECRET)

CONTENDERS = {
    "mock": "cvekyc prepare only",
    "emulator": "cvekyc end to end",
    "loop": "plain sequential loop",
    "threads": f"naive {CONCURRENCY} threads",
}
FORMATS = {"jpeg": ("JPEG", "jpg"), "heic": ("HEIC", "heic")}


def _picture(width: int, height: int) -> Any:
    """A smooth colour gradient (a seeded 8×6 field upscaled) under seeded noise."""
    from PIL import Image

    rng = random.Random(SEED)
    field = Image.frombytes("RGB", (8, 6), rng.randbytes(8 * 6 * 3))
    gradient = field.resize((width, height), Image.Resampling.BICUBIC)
    noise = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    return Image.blend(gradient, noise, NOISE)


def _write(path: Path, data: bytes) -> None:
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    part.write_bytes(data)
    os.replace(part, path)  # whole or absent, should two runs make it at once


def _make_originals(width: int, height: int, originals: dict[str, Path]) -> None:
    import pillow_heif
    from PIL import Image

    picture = _picture(width, height)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait: rotated 90° clockwise
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=JPEG_QUALITY, exif=exif.tobytes())
    _write(originals["jpeg"], out.getvalue())
    out = io.BytesIO()
    pillow_heif.from_pillow(picture).save(out, format="HEIF", quality=HEIC_QUALITY)
    _write(originals["heic"], out.getvalue())


def make_photos(width: int, height: int, n: int) -> dict[str, list[Path]]:
    """``n`` paths to one photo per format, made once and cached: a JPEG tagged EXIF
    orientation 6 and a HEIC of the same picture."""
    folder = Path(tempfile.gettempdir()) / f"cvekyc-bench-prepare-v1-{width}x{height}"
    folder.mkdir(parents=True, exist_ok=True)
    originals = {fmt: folder / f"photo.{ext}" for fmt, (_, ext) in FORMATS.items()}
    if not all(p.exists() for p in originals.values()):
        # Made in another process: a process started from this one would count this one's
        # peak RSS (1.5 GB for a 48 MP picture) in its own ru_maxrss.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            pool.submit(_make_originals, width, height, originals).result()
    inputs: dict[str, list[Path]] = {}
    for fmt, (_, ext) in FORMATS.items():
        (folder / fmt).mkdir(exist_ok=True)
        inputs[fmt] = []
        for i in range(n):
            path = folder / fmt / f"{i:03d}.{ext}"
            if not path.exists():
                try:
                    os.link(originals[fmt], path)
                except FileExistsError:
                    pass
                except OSError:
                    _write(path, originals[fmt].read_bytes())
            inputs[fmt].append(path)
    return inputs


def run_child(mode: str, paths: list[Path], base_url: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(str(p) for p in paths))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, mode, listing.name, str(CONCURRENCY), base_url],
            capture_output=True,
            text=True,
            check=False,
            timeout=3600,
        )
    finally:
        os.unlink(listing.name)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stdout}\n{proc.stderr}")
    got: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["photos"] == len(paths), got
    return got


def _median(samples: list[dict[str, Any]], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    width, height, n = (2400, 1800, 4) if args.quick else (8000, 6000, 50)
    rounds = args.rounds or (1 if args.quick else 3)
    inputs = make_photos(width, height, n)
    upright = (height * 2000 // width, 2000)  # EXIF orientation 6: portrait once upright
    expected = {"jpeg": [list(upright)], "heic": [[2000, height * 2000 // width]]}
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        fmt: {mode: [] for mode in CONTENDERS} for fmt in FORMATS
    }
    with emulator() as emu:
        for _ in range(rounds):
            for fmt in FORMATS:
                for mode in CONTENDERS:
                    got = run_child(mode, inputs[fmt], emu.base_url)
                    assert got["sizes"] == expected[fmt], (mode, fmt, got["sizes"])
                    samples[fmt][mode].append(got)

    import PIL
    import pillow_heif

    from cvekyc_async._prepare import prepare_workers

    megapixels = width * height / 1e6
    summary: dict[str, dict[str, dict[str, float]]] = {}
    photos: dict[str, dict[str, Any]] = {}
    for fmt, (name, _) in FORMATS.items():
        original = inputs[fmt][0]
        photos[fmt] = {"path": str(original), "bytes": original.stat().st_size}
        rows_of = summary[fmt] = {}
        for mode in CONTENDERS:
            ss = samples[fmt][mode]
            rows_of[mode] = {
                "wall_s": _median(ss, "wall"),
                "cpu_s": _median(ss, "cpu"),
                "peak_rss_mb": _median(ss, "peak_kb") / 1024,
                "baseline_rss_mb": _median(ss, "baseline_kb") / 1024,
                "growth_mb": statistics.median(
                    (s["peak_kb"] - s["baseline_kb"]) / 1024 for s in ss
                ),
                "mean_out_kb": _median(ss, "mean_out_bytes") / 1024,
            }
        loop, threads = rows_of["loop"], rows_of["threads"]
        rows = [
            [
                CONTENDERS[mode],
                f"{r['wall_s']:.1f}",
                f"{r['cpu_s']:.1f}",
                f"{r['peak_rss_mb']:.0f}",
                f"{r['growth_mb']:.0f}",
                f"{r['wall_s'] / loop['wall_s']:.2f}",
                f"{r['peak_rss_mb'] / loop['peak_rss_mb']:.2f}",
                f"{r['wall_s'] / threads['wall_s']:.2f}",
                f"{r['peak_rss_mb'] / threads['peak_rss_mb']:.2f}",
            ]
            for mode, r in rows_of.items()
        ]
        detail = f"{photos[fmt]['bytes'] / 1e6:.1f} MB"
        if fmt == "jpeg":
            detail += ", EXIF orientation 6"
        runs = f"medians of {rounds} rounds" if rounds > 1 else "one round"
        title = (
            f"{n} {name} photos of {megapixels:.0f} MP ({width}×{height}, {detail}) made JPEGs "
            f"of 2,000 px at concurrency {CONCURRENCY}, a fresh process each, {runs}"
        )
        header = ["contender", "wall s", "CPU s", "peak RSS MB", "growth MB"]
        header += ["wall / loop", "peak / loop", "wall / threads", "peak / threads"]
        if fmt != "jpeg":
            print()
        print(table(title, header, rows))
        ours = rows_of["mock"]
        print(
            f"\n{name}: RSS growth of cvekyc prepare only {ours['growth_mb']:.0f} MB against "
            f"{loop['growth_mb']:.0f} MB for the loop ({ours['growth_mb'] / loop['growth_mb']:.2f}"
            f" x) and {threads['growth_mb']:.0f} MB for {CONCURRENCY} threads "
            f"({ours['growth_mb'] / threads['growth_mb']:.2f} x)"
        )
    workers = prepare_workers(CONCURRENCY)
    print(
        f"\n{os.cpu_count()} cores: cvekyc prepares {workers} images at once (min(concurrency, "
        f"cores)); RSS after imports {summary['jpeg']['loop']['baseline_rss_mb']:.0f} MB in "
        f"every process; Pillow {PIL.__version__}, pillow-heif {pillow_heif.__version__} "
        f"(libheif {pillow_heif.libheif_version()})"
    )
    path = write_json(
        "prepare",
        {
            "concurrency": CONCURRENCY,
            "rounds": rounds,
            "photos": {"count": n, "width": width, "height": height, "seed": SEED, **photos},
            "prepare_workers": workers,
            "contenders": CONTENDERS,
            "summary": summary,
            "samples": samples,
        },
        args.json,
    )
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
