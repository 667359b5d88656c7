"""`cvekyc batch --prepare` and `cvekyc extract --prepare` as users run them, in real subprocesses
against the emulator: a folder as phones fill it, every file accounted for, records that say what
was done to each image while keeping the hash of the file as given, and resume over them."""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import struct
import zlib
from pathlib import Path
from typing import Any

import anyio
import pillow_heif
import pytest
from PIL import Image

from cvekyc_async.emulator import RunningEmulator, specimens
from tests.test_cli import env_for, lines, run


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _card(size: tuple[int, int]) -> Image.Image:
    card = Image.open(specimens()["chip_front.jpg"]).convert("RGB")
    return card.resize(size)


def _encoded(im: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    if fmt == "HEIF":
        pillow_heif.from_pillow(im).save(out, format="HEIF", **options)
    else:
        im.save(out, format=fmt, **options)
    return out.getvalue()


def _bomb() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(999)))


def phone_folder(folder: Path) -> dict[str, str]:
    """A folder as a phone and a desktop leave it; what each file should end as."""
    expect: dict[str, str] = {}

    def put(rel: str, data: bytes, outcome: str) -> None:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expect[rel] = outcome

    upright = _card((1200, 760))
    put("IMG_0001.HEIC", _encoded(upright, "HEIF", quality=60), "converted")
    put("IMG_0002.HEIC", _encoded(upright, "HEIF", quality=60, exif=_exif(6)), "converted")
    put("sub/IMG_0003.avif", _encoded(upright, "AVIF", quality=60), "converted")
    put("IMG_0004.JPG", _encoded(upright.rotate(90, expand=True), "JPEG", exif=_exif(6)),
        "rotated")  # fmt: skip
    put("sub/deeper/IMG_0005.jpg", _encoded(_card((3000, 1900)), "JPEG"), "downscaled")
    put("scan.png", _encoded(_card((900, 570)), "PNG"), "as given")
    whole = _encoded(_card((2600, 1650)), "JPEG")
    put("IMG_0006.jpg", whole[: len(whole) // 2], "InvalidInputError")
    put("bomb.png", _bomb(), "InvalidInputError")
    put(".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(64), "left out")
    put("sub/Thumbs.db", b"\xd0\xcf\x11\xe0" + bytes(64), "left out")
    put("._IMG_0004.JPG", b"\x00\x05\x16\x07" + bytes(64), "left out")
    put("sub/notes.txt", "Nguyễn Văn A gọi lại".encode(), "left out")
    return expect


def test_a_phone_folder_with_prepare_is_every_file_accounted_for(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    folder = tmp_path / "inbox"
    expect = phone_folder(folder)
    out = tmp_path / "out.jsonl"
    summary = tmp_path / "s.json"
    proc = run("batch", str(folder), "--prepare", "-o", str(out), "--summary-json", str(summary),
               env=env_for(cv_emulator))  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # the truncated photo and the bomb failed
    records = {r["key"].removeprefix("inbox/"): r for r in lines(out)}
    figures = json.loads(summary.read_text())
    inputs = [k for k, v in expect.items() if v != "left out"]
    assert sorted(records) == sorted(inputs)
    assert figures["inputs"] == len(inputs)
    assert figures["left_out"]["files"] == len(expect) - len(inputs)
    assert figures["left_out"]["kinds"] == {"system file": 3, "list or manifest": 1}
    # The two damaged files were refused before sending: not "not started", not sent.
    assert (figures["sent"], figures["refused"], figures["not_started"]) == (len(inputs) - 2, 2, 0)
    assert "not started" not in proc.stdout
    for key, outcome in expect.items():
        if outcome == "left out":
            continue
        record = records[key]
        # The hash and size are those of the file as given: resume and dedup go by them.
        data = (folder / key).read_bytes()
        assert record["sha256"] == hashlib.sha256(data).hexdigest(), key
        assert record["size"] == len(data)
        if outcome == "InvalidInputError":
            assert record["error"]["type"] == outcome, key
            assert "prepared" not in record
            continue
        assert record["ok"], (key, record["error"])
        [done] = record["prepared"]
        if outcome == "as given":
            assert done["quality"] is None
            assert done["done"] == "sent as given"
        else:
            assert outcome in done["done"], (key, done)
            assert max(done["size"]) <= 2000
    assert "converted from HEIC to JPEG" in records["IMG_0002.HEIC"]["prepared"][0]["done"]
    assert records["IMG_0002.HEIC"]["prepared"][0]["orientation"] == 6
    assert records["IMG_0004.JPG"]["prepared"][0]["size"] == [1200, 760]
    assert (
        "downscaled from 3000×1900 to 2000×1267"
        in (records["sub/deeper/IMG_0005.jpg"]["prepared"][0]["done"])
    )
    assert "truncated or damaged" in records["IMG_0006.jpg"]["error"]["message"]
    assert "50,000×50,000" in records["bomb.png"]["error"]["message"]
    assert figures["prepared"] == {"converted": 3, "rotated": 2, "downscaled": 1, "re-encoded": 5}
    assert re.search(r"prepared +5 images re-encoded \(3 converted, 2 rotated, 1 downscaled\)",
                     proc.stdout)  # fmt: skip
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    # No file's content in what the run printed.
    assert "Nguy" not in proc.stdout + proc.stderr

    # Resume: every input is where it was, with the bytes it had: nothing is sent again.
    again = run("batch", str(folder), "--prepare", "-o", str(out), "--resume", "--summary-json",
                str(summary), env=env_for(cv_emulator))  # fmt: skip
    figures = json.loads(summary.read_text())
    assert figures["sent"] == 0, again.stderr
    assert figures["prepared"] == {"converted": 0, "rotated": 0, "downscaled": 0, "re-encoded": 0}


def test_without_prepare_a_heic_photo_is_an_error_record_that_says_add_prepare(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "IMG_0001.HEIC").write_bytes(_encoded(_card((600, 380)), "HEIF", quality=50))
    (folder / "big.jpg").write_bytes(_encoded(_card((3000, 1900)), "JPEG", quality=95))
    out = tmp_path / "out.jsonl"
    proc = run("batch", str(folder), "-o", str(out), "--max-file-size", "100K",
               env=env_for(cv_emulator))  # fmt: skip
    assert proc.returncode == 1
    records = {r["key"]: r for r in lines(out)}
    heic = records["inbox/IMG_0001.HEIC"]["error"]["message"]
    assert (
        "image 'IMG_0001.HEIC' is a HEIC photo, which the service does not read: add --prepare"
        in (heic)
    )
    big = records["inbox/big.jpg"]["error"]["message"]
    assert "raise it with --max-file-size, or add --prepare to downscale images" in big
    # Resumed with --prepare, both go (refused for what --prepare fixes), the photo under the cap.
    proc = run("batch", str(folder), "-o", str(out), "--max-file-size", "100K", "--prepare",
               "--resume", env=env_for(cv_emulator))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "re-sent: refused before, --prepare sends it now" in proc.stdout
    latest = {r["key"]: r for r in lines(out)}
    assert all(r["ok"] for r in latest.values())
    assert latest["inbox/big.jpg"]["prepared"][0]["sent_bytes"] <= 100 * 1024


def test_extract_prepare_reads_a_heic_photo(cv_emulator: RunningEmulator, tmp_path: Path) -> None:
    photo = tmp_path / "IMG_0001.HEIC"
    photo.write_bytes(_encoded(_card((1200, 760)), "HEIF", quality=60, exif=_exif(8)))
    proc = run("extract", str(photo), "--prepare", "--json", env=env_for(cv_emulator))
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["cards"]
    [done] = answer["prepared"]
    assert (done["source_format"], done["orientation"], done["quality"]) == ("heic", 8, 90)
    table = run("extract", str(photo), "--prepare", env=env_for(cv_emulator))
    assert "prepared img: converted from HEIC to JPEG, rotated 90° counter-clockwise" in (
        table.stdout
    )
    refused = run("extract", str(photo), "--json", env=env_for(cv_emulator))
    assert refused.returncode == 2  # refused before sending, as any bad input
    assert "add --prepare" in refused.stdout + refused.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-side", "1600"], "--max-side takes effect with --prepare"),
        (["--prepare", "--max-side", "20"], "--max-side"),
    ],
)
def test_prepare_options_are_checked_before_sending(
    cv_emulator: RunningEmulator, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "a.jpg").write_bytes(_encoded(_card((600, 380)), "JPEG"))
    out = tmp_path / "out.jsonl"
    proc = run("batch", str(tmp_path / "a.jpg"), "-o", str(out), *args, env=env_for(cv_emulator))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not out.exists()
    assert cv_emulator.state.stats()["requests"] == 0


@pytest.mark.anyio
async def test_a_batch_reads_no_more_input_bytes_than_its_bound_while_answers_are_due() -> None:
    from cvekyc_async.cli.batch import _Held

    held = _Held(100)
    taken: list[int] = []

    async def read(size: int) -> None:
        await held.take(size)
        taken.append(size)

    await held.take(60)
    async with anyio.create_task_group() as tg:
        tg.start_soon(read, 50)  # 60 + 50 > 100: waits for an answer
        await anyio.wait_all_tasks_blocked()
        assert taken == []
        held.give(60)
    assert (taken, held.used) == ([50], 50)
    held.give(50)
    await read(500)  # bigger than the bound: goes alone, at once
    assert held.used == 500
