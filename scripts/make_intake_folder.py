"""Make a folder of 300 mixed files as phones, scanners and back offices produce them, and run
``cvekyc batch --prepare`` over it against the embedded emulator.

Run from the repository root (needs the ``images`` and ``emulator`` extras):

    python scripts/make_intake_folder.py            # make /tmp/cvekyc-intake and run on it
    python scripts/make_intake_folder.py DIR --no-run

The folder holds the emulator's specimen cards as phone photos (JPEG in every EXIF orientation,
HEIC, AVIF, 12 MP and 12,000 px photos over the upload cap), scans (PNG, TIFF, PDF, one PDF over
the cap), damaged files (truncated, a decompression bomb, an empty file) and what folders collect
besides (``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, AppleDouble ``._`` files, notes, a
manifest, a ZIP, a GIF), some in subfolders. Every figure printed comes from the run's
``--summary-json`` and its records. Seeded: the same folder every time.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

from PIL import Image, ImageOps

SPECIMENS = Path(__file__).resolve().parent.parent / "cvekyc_async" / "emulator" / "specimens"
CARDS = sorted(
    p for p in SPECIMENS.iterdir() if p.suffix in (".jpg", ".png") and "blank" not in p.name
)
# What each EXIF orientation's stored pixels are, made from an upright picture.
STORED = {
    1: lambda im: im,
    2: lambda im: ImageOps.mirror(im),
    3: lambda im: im.rotate(180),
    4: lambda im: ImageOps.flip(im),
    5: lambda im: im.transpose(Image.Transpose.TRANSPOSE),
    6: lambda im: im.rotate(90, expand=True),
    7: lambda im: im.transpose(Image.Transpose.TRANSVERSE),
    8: lambda im: im.rotate(-90, expand=True),
}


def photo(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A specimen card lying on a desk, as a phone photographs it."""
    card = Image.open(rng.choice(CARDS)).convert("RGB")
    desk = Image.new("RGB", size, (rng.randrange(90, 160), rng.randrange(70, 120), 60))
    scale = size[0] * rng.uniform(0.45, 0.7) / card.width
    card = card.resize((int(card.width * scale), int(card.height * scale)))
    x = rng.randrange(0, size[0] - card.width)
    y = rng.randrange(0, size[1] - card.height)
    desk.paste(card, (x, y))
    return desk


def exif_of(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def encoded(im: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.from_pillow(im).save(out, format="HEIF", **options)
    else:
        im.save(out, format=fmt, **options)
    return out.getvalue()


def huge_photo(rng: random.Random) -> bytes:
    """12,000 × 8,000 px, about 25 MB: over the 10 MiB cap and six times the 2,000 px side."""
    noise = Image.effect_noise((12000, 8000), 30)
    base = Image.linear_gradient("L").resize((12000, 8000))
    im = Image.merge("RGB", (noise, base, Image.blend(noise, base, 0.5)))
    im.paste(photo(rng, (6000, 4000)), (3000, 2000))
    return encoded(im, "JPEG", quality=80)


def bomb_png() -> bytes:
    """A few hundred bytes that declare 60,000 × 60,000 pixels (3.6 gigapixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 200_000, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def small_pdf(pages: int, pad: int = 0, tag: int = 0) -> bytes:
    objects = [f"<< /Type /Catalog /Pages 2 0 R /Tag {tag} >>".encode()]
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 243 153] >>"] * pages
    out = bytearray(b"%PDF-1.4\n")
    for i, obj in enumerate(objects, 1):
        out += f"{i} 0 obj\n".encode() + obj + b"\nendobj\n"
    out += b"%" + b"x" * pad + b"\n" if pad else b""
    out += b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
    return bytes(out)


def make_folder(root: Path, seed: int = 2026) -> Counter[str]:
    """Write the 300 files; returns how many of each kind were made."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    made: Counter[str] = Counter()

    def put(rel: str, data: bytes, kind: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        made[kind] += 1

    n = 0
    # Phone JPEGs, 4032×3024 as stored, in every orientation (most upright, as phones write).
    for i in range(120):
        orientation = 1 if i % 3 else rng.randrange(2, 9) if i % 9 else 6
        im = STORED[orientation](photo(rng, (1600, 1200))).resize(
            (4032, 3024) if orientation < 5 else (3024, 4032)
        )
        put(f"phone/IMG_{n:04d}.JPG", encoded(im, "JPEG", quality=85, exif=exif_of(orientation)),
            f"JPEG photo, orientation {orientation}")  # fmt: skip
        n += 1
    # iPhone HEIC (some lying on their side) and AVIF.
    for i in range(40):
        orientation = 6 if i % 4 == 0 else 1
        im = photo(rng, (2016, 1512))
        put(f"phone/IMG_{n:04d}.HEIC", encoded(im, "HEIF", quality=60, exif=exif_of(orientation)),
            "HEIC photo")  # fmt: skip
        n += 1
    for _ in range(15):
        put(f"phone/avif/IMG_{n:04d}.avif", encoded(photo(rng, (2000, 1500)), "AVIF", quality=60),
            "AVIF image")  # fmt: skip
        n += 1
    # Scans already the right size: sent as given.
    for _ in range(50):
        put(f"scans/scan_{n:04d}.png", encoded(photo(rng, (1400, 1000)), "PNG"), "PNG scan")
        n += 1
    for _ in range(10):
        put(f"scans/scan_{n:04d}.tif", encoded(photo(rng, (1200, 900)), "TIFF"), "TIFF scan")
        n += 1
    for i in range(8):
        put(f"scans/pdf/doc_{n:04d}.pdf", small_pdf(1 + i % 3, tag=n), "PDF")
        n += 1
    put("scans/pdf/whole_file.pdf", small_pdf(2, pad=11 * 1024 * 1024), "PDF over the cap")
    # Photos over the cap: 12,000 px wide, about 25 MB.
    for i in range(2):
        put(f"phone/huge_{i}.jpg", huge_photo(rng), "12,000 px photo")
    # Damaged: cut in half, a bomb, nothing at all.
    whole = encoded(STORED[6](photo(rng, (1600, 1200))), "JPEG", quality=85, exif=exif_of(6))
    put("phone/IMG_cut.jpg", whole[: len(whole) // 2], "truncated JPEG")
    put("scans/bomb.png", bomb_png(), "decompression bomb")
    put("scans/empty.jpg", b"", "empty file")
    # What folders collect besides.
    put(".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(2000), "system file")
    put("phone/.DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(500), "system file")
    put("scans/Thumbs.db", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1000), "system file")
    put("scans/desktop.ini", b"[.ShellClassInfo]\r\n", "system file")
    for i in range(6):
        put(f"phone/._IMG_{i:04d}.JPG", b"\x00\x05\x16\x07" + bytes(200), "system file")
    for i in range(12):
        put(f"notes/note_{i}.txt", f"customer {i} called back\n".encode(), "text note")
    put("notes/danh_sach.csv", b"path\nphone/IMG_0001.JPG\n", "manifest")
    put("notes/archive.zip", b"PK\x03\x04" + bytes(100), "ZIP archive")
    put("notes/logo.gif", encoded(Image.new("P", (32, 32)), "GIF"), "GIF image")
    for i in range(300 - sum(made.values())):
        put(f"scans/extra/scan_{i:03d}.jpg", encoded(photo(rng, (1200, 900)), "JPEG"), "JPEG scan")
    assert sum(made.values()) == 300, sum(made.values())
    return made


def run_batch(root: Path, work: Path) -> dict[str, object]:
    from cvekyc_async.emulator import serve_emulator

    out = work / "results.jsonl"
    summary = work / "summary.json"
    for stale in (out, summary):
        stale.unlink(missing_ok=True)
    with serve_emulator() as emu:
        env = dict(os.environ)
        env.update(
            CVEKYC_API_KEY=emu.api_key,
            CVEKYC_API_SECRET=emu.api_secret,
            CVEKYC_BASE_URL=emu.base_url,
        )
        command = [
            sys.executable,
            "-m",
            "cvekyc_async.cli",
            "batch",
            str(root),
            "--prepare",
            "--concurrency",
            "16",
            "-o",
            str(out),
            "--summary-json",
            str(summary),
        ]
        started = time.perf_counter()
        proc = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            command, env=env, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - started
    figures = json.loads(summary.read_text(encoding="utf-8"))
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    errors = Counter(
        f"{r['error']['type']}: {r['error']['message'].split(':')[-1].strip()[:70]}"
        for r in records
        if r["error"]
    )
    return {"exit": proc.returncode, "wall": wall, "summary": figures, "errors": errors,
            "stderr": proc.stderr, "records": len(records)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=Path("/tmp/cvekyc-intake"))  # noqa: S108
    parser.add_argument("--no-run", action="store_true", help="make the folder only")
    args = parser.parse_args()
    root: Path = args.folder / "inbox"
    if root.exists():
        import shutil

        shutil.rmtree(root)
    started = time.perf_counter()
    made = make_folder(root)
    print(f"made {sum(made.values())} files in {root} ({time.perf_counter() - started:.1f} s):")
    for kind, count in sorted(made.items()):
        print(f"  {count:4d}  {kind}")
    if args.no_run:
        return 0
    got = run_batch(root, args.folder)
    s = got["summary"]
    assert isinstance(s, dict)
    print(f"\ncvekyc batch --prepare --concurrency 16: exit {got['exit']}, {got['wall']:.1f} s")
    print(f"  files          {sum(made.values())}")
    print(f"  inputs         {s['inputs']} (records written: {got['records']})")
    print(f"  left out       {s['left_out']['files']}: {s['left_out']['kinds']}")
    print(f"  accounted for  {s['inputs'] + s['left_out']['files']}")
    print(
        f"  of which       sent {s['sent']}, shared (same bytes as another input) {s['shared']}, "
        f"refused {s['refused']}, not started {s['not_started']}, skipped {s['skipped']}"
    )
    print(f"  ok / failed    {s['ok']} / {s['failed']}  outcomes {s['outcomes']}")
    print(f"  prepared       {s['prepared']}")
    errors = got["errors"]
    assert isinstance(errors, Counter)
    for why, count in errors.most_common():
        print(f"  error x{count}: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
