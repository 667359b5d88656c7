"""Image preparation (``prepare=``), checked as a user would check it: by what the service is sent.

The images are made here with Pillow and pillow-heif. The service is a respx route whose multipart
body is read back and decoded (tests/_multipart.py), or the emulator for a real read. Noise is
drawn from ``random.Random(SEED)``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import os
import random
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pillow_heif
import pytest
import respx
from PIL import Image, ImageStat, PngImagePlugin, features

import cvekyc_async._attempts as attempts_module
import cvekyc_async._inputs as inputs_module
import cvekyc_async._prepare as prepare_module
from cvekyc_async import (
    AsyncCVClient,
    ConfigurationError,
    CVClient,
    ExtractionResult,
    ImageSource,
    InvalidInputError,
    Preparation,
    Prepare,
)
from cvekyc_async._prepare import prepare_workers
from cvekyc_async.emulator import RunningEmulator, specimen_path
from tests import samples
from tests._multipart import parse_multipart

CARD = "/api/v2/ekyc/card"
CARDS = "/api/v2/ekyc/cards"
OCR = "/api/v2/ocr/card"
SEED = 20_240_601
EXIF_ORIENTATION = 0x0112
IMAGES_EXTRA = "pip install 'cvekyc-async[images]'"

needs_avif = pytest.mark.skipif(not features.check("avif"), reason="Pillow built without AVIF")

# -- images ------------------------------------------------------------------------------------

# The upright picture: four quadrants of clearly different colours, in big solid blocks so that
# JPEG noise does not matter. Wider than tall, so that a turn shows in the size too; the eight
# EXIF orientations put the four colours in eight different places.
W, H = 640, 400
COLOURS = ((220, 30, 30), (30, 200, 40), (40, 60, 220), (240, 220, 40))
TOLERANCE = 12  # per channel, on a quadrant's mean colour

T = Image.Transpose
# How a camera stores the upright picture for each orientation tag: the inverse of what the tag
# tells a viewer to do (EXIF 2.32, tag 0x0112). 6 ("rotate 90° clockwise to view") is stored
# turned 90° counter-clockwise; 5 and 7 (mirror and turn) and the plain mirrors undo themselves.
STORED_AS: dict[int, Image.Transpose | None] = {
    1: None,
    2: T.FLIP_LEFT_RIGHT,
    3: T.ROTATE_180,
    4: T.FLIP_TOP_BOTTOM,
    5: T.TRANSPOSE,
    6: T.ROTATE_90,  # Pillow's ROTATE_90 turns counter-clockwise
    7: T.TRANSVERSE,
    8: T.ROTATE_270,
}
# What a record says was done to turn each orientation upright.
TURNED = {
    2: "mirrored",
    3: "rotated 180°",
    4: "flipped upside down",
    5: "mirrored and rotated 90° counter-clockwise",
    6: "rotated 90° clockwise",
    7: "mirrored and rotated 90° clockwise",
    8: "rotated 90° counter-clockwise",
}
SUFFIX = {"JPEG": "jpg", "PNG": "png", "HEIF": "heic", "AVIF": "avif"}
SOURCE = {"JPEG": "jpeg", "PNG": "png", "HEIF": "heic", "AVIF": "avif"}


def upright() -> Image.Image:
    im = Image.new("RGB", (W, H))
    for i, colour in enumerate(COLOURS):
        x, y = (i % 2) * W // 2, (i // 2) * H // 2
        im.paste(colour, (x, y, x + W // 2, y + H // 2))
    return im


def stored_for(orientation: int) -> Image.Image:
    how = STORED_AS[orientation]
    return upright() if how is None else upright().transpose(how)


def exif(orientation: int) -> bytes:
    tags = Image.Exif()
    tags[EXIF_ORIENTATION] = orientation
    return tags.tobytes()


def encoded(im: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    if fmt == "HEIF":
        pillow_heif.from_pillow(im).save(out, format="HEIF", **options)
    else:
        im.save(out, format=fmt, **options)
    return out.getvalue()


def photo(fmt: str, orientation: int = 1) -> bytes:
    """The upright picture stored as a camera would for ``orientation``, tag included."""
    return encoded(stored_for(orientation), fmt, exif=exif(orientation))


def quadrant_colours(im: Image.Image) -> list[tuple[float, ...]]:
    """The mean colour of the middle of each quadrant (away from the edges JPEG blurs)."""
    w, h = im.size
    out = []
    for i in range(4):
        x, y = (i % 2) * w // 2, (i // 2) * h // 2
        box = (x + w // 8, y + h // 8, x + w // 2 - w // 8, y + h // 2 - h // 8)
        out.append(tuple(ImageStat.Stat(im.convert("RGB").crop(box)).mean))
    return out


def assert_upright(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG"
        assert im.size == (W, H)
        # The service would turn it again: what is sent carries no orientation of its own.
        assert im.getexif().get(EXIF_ORIENTATION, 1) == 1
        got = quadrant_colours(im)
    for quadrant, (mean, want) in enumerate(zip(got, COLOURS, strict=True)):
        assert all(abs(m - w) <= TOLERANCE for m, w in zip(mean, want, strict=True)), (
            f"quadrant {quadrant}: {[round(v) for v in mean]} is not {want}"
        )


def noise_jpeg(size: tuple[int, int], seed: int, **options: Any) -> bytes:
    """Seeded noise (at half resolution, so it compresses about as badly as a photo's detail)."""
    rng = random.Random(seed)
    half = (size[0] // 2, size[1] // 2)
    im = Image.frombytes("RGB", half, rng.randbytes(half[0] * half[1] * 3))
    options.setdefault("quality", 85)
    return encoded(im.resize(size, Image.Resampling.NEAREST), "JPEG", **options)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, *, with_exif: bool = False) -> bytes:
    """A few hundred bytes of PNG whose header declares ``width`` × ``height`` RGB pixels (and,
    ``with_exif``, an eXIf chunk before its pixel data, as a camera app writes)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * width) * 4, 9)
    tags = png_chunk(b"eXIf", exif(1).removeprefix(b"Exif\x00\x00")) if with_exif else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + tags
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small valid JPEG whose frame header (SOF0) is rewritten to declare another size."""
    data = bytearray(encoded(Image.new("RGB", (16, 16), (120, 120, 120)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the service ---------------------------------------------------------------------------------


def client(**kwargs: Any) -> AsyncCVClient:
    kwargs.setdefault("base_url", samples.BASE_URL)
    kwargs.setdefault("max_retries", 0)
    return AsyncCVClient(samples.API_KEY, samples.API_SECRET, **kwargs)


def sync_client(**kwargs: Any) -> CVClient:
    kwargs.setdefault("base_url", samples.BASE_URL)
    kwargs.setdefault("max_retries", 0)
    return CVClient(samples.API_KEY, samples.API_SECRET, **kwargs)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=samples.BASE_URL, assert_all_called=False) as router:
        for path in (CARD, CARDS, OCR):
            router.route(path=path, name=path).respond(200, content=samples.answer([]))
        yield router


def uploads(router: respx.MockRouter, path: str = CARD) -> dict[str, tuple[str | None, str, bytes]]:
    """The parts of the one request sent to ``path``."""
    route = router.routes[path]
    assert route.call_count == 1, f"{route.call_count} requests to {path}"
    request = route.calls.last.request
    return parse_multipart(request.headers["Content-Type"], request.content)


def nothing_sent(router: respx.MockRouter) -> bool:
    return not router.calls


def without_modules(*names: str) -> SimpleNamespace:
    """An ``importlib`` for one module's namespace in which ``names`` are not installed."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name in names else real(name, *args, **kwargs)

    return SimpleNamespace(util=SimpleNamespace(find_spec=find_spec))


@pytest.fixture
def png_decodes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The sizes of the PNGs whose pixels were decoded, none of them decoded for real.

    Used wherever a PNG bomb is sent: the library decodes a PNG before checking its size (see
    ``test_a_png_bomb_is_refused_before_any_pixel_is_decoded``), and that decode touched 7 GB in
    one of these tests' processes. Refused here like an allocation that fails.
    """
    decoded: list[tuple[int, int]] = []

    def no_decode(self: PngImagePlugin.PngImageFile) -> Any:
        decoded.append(self.size)
        raise MemoryError("PNG decode refused by the test")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decode)
    return decoded


@pytest.fixture(scope="module")
def wide_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12,000 × 4,000 photo of about 25 MB (seeded noise): over 2,000 px and over 10 MB."""
    path = tmp_path_factory.mktemp("wide") / "wide.jpg"
    path.write_bytes(noise_jpeg((12_000, 4_000), SEED, quality=70))
    return path


@pytest.fixture(scope="module")
def heic_card() -> bytes:
    """The emulator's chip card front as an iPhone would store it: HEIC, lying on its side."""
    with Image.open(specimen_path("chip_front.jpg")) as card:
        sideways = card.convert("RGB").transpose(T.ROTATE_90)
    return encoded(sideways, "HEIF", exif=exif(6))


# -- 1. orientation ----------------------------------------------------------------------------

ORIENTATION_CASES = [
    *(pytest.param("JPEG", o, id=f"jpeg-{o}") for o in range(1, 9)),
    pytest.param("PNG", 6, id="png-6"),
    pytest.param("PNG", 2, id="png-2"),
    pytest.param("HEIF", 8, id="heic-8"),
    pytest.param("HEIF", 5, id="heic-5"),
    pytest.param("AVIF", 3, id="avif-3", marks=needs_avif),
    pytest.param("AVIF", 4, id="avif-4", marks=needs_avif),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("fmt", "orientation"), ORIENTATION_CASES)
async def test_exif_orientation_is_applied_before_sending(
    mock: respx.MockRouter, tmp_path: Path, fmt: str, orientation: int
) -> None:
    data = photo(fmt, orientation)
    path = tmp_path / f"photo.{SUFFIX[fmt]}"
    path.write_bytes(data)
    async with client(prepare=True, max_file_size=200_000) as c:
        result = await c.extract_card(path)
    filename, content_type, sent = uploads(mock)["img"]
    assert content_type == "image/jpeg"
    assert filename == "photo.jpg"
    assert len(sent) <= 200_000
    assert_upright(sent)
    [done] = result.prepared
    assert (done.field, done.source_format) == ("img", SOURCE[fmt])
    assert done.orientation == orientation
    assert done.rotated is (orientation != 1)
    assert done.size == done.original_size == (W, H)
    assert not done.downscaled
    assert done.sent_bytes == len(sent)
    assert done.original_bytes == len(data)
    steps = []
    if fmt in ("HEIF", "AVIF"):
        steps.append(f"converted from {SOURCE[fmt].upper()} to JPEG")
    if orientation != 1:
        steps.append(f"{TURNED[orientation]} (EXIF orientation)")
    assert done.describe() == (", ".join(steps) or "sent as given")
    if steps:
        assert done.changed
        assert done.quality is not None
    else:
        # Already upright and small: the file itself goes, byte for byte.
        assert sent == data
        assert done.quality is None


@needs_avif
@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_a_sideways_avif_is_sent_upright(orientation: int) -> None:
    # Its record is checked apart (test_original_size_is_upright_...): it is wrong for these.
    src = ImageSource.from_bytes(photo("AVIF", orientation))
    payload, done = prepare_module.prepare_payload(
        src, "img", Prepare(), max_size=10_000_000, allow_pdf=True
    )
    assert payload.content_type == "image/jpeg"
    assert isinstance(payload.data, bytes)
    assert_upright(payload.data)
    assert done is not None
    assert (done.orientation, done.rotated, done.converted) == (orientation, True, True)
    assert done.size == (W, H)


@pytest.mark.parametrize(
    "fmt",
    [
        "JPEG",
        "PNG",
        "HEIF",
        "TIFF",
        "WEBP",
        pytest.param("AVIF", marks=[needs_avif]),
    ],
)
def test_original_size_is_upright_and_nothing_is_said_to_be_downscaled(fmt: str) -> None:
    src = ImageSource.from_bytes(photo(fmt, 6))
    payload, done = prepare_module.prepare_payload(
        src, "img", Prepare(), max_size=10_000_000, allow_pdf=True
    )
    assert isinstance(payload.data, bytes)
    assert_upright(payload.data)  # the pixels are right whatever the record says
    assert done is not None
    assert done.original_size == (W, H)
    assert not done.downscaled
    assert "downscaled" not in done.describe()


# -- 2. HEIC and AVIF ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["HEIF", pytest.param("AVIF", marks=needs_avif)])
async def test_phone_formats_are_converted_to_jpeg(mock: respx.MockRouter, fmt: str) -> None:
    data = encoded(upright(), fmt)
    async with client(prepare=True) as c:
        result = await c.extract_card(data)
    filename, content_type, sent = uploads(mock)["img"]
    assert (filename, content_type) == ("image.jpg", "image/jpeg")
    assert_upright(sent)
    [done] = result.prepared
    assert done.converted
    assert done.changed
    assert not done.rotated
    assert not done.downscaled
    assert done.describe() == f"converted from {SOURCE[fmt].upper()} to JPEG"


@pytest.mark.anyio
async def test_a_heic_sent_as_base64_goes_as_a_base64_jpeg(mock: respx.MockRouter) -> None:
    source = ImageSource.from_base64(base64.b64encode(photo("HEIF", 6)))
    async with client(prepare=True) as c:
        result = await c.extract_card(source)
    request = mock.routes[CARD].calls.last.request
    assert request.url.params["format_type"] == "base64"
    assert request.headers["Content-Type"] == "application/json"
    assert_upright(base64.b64decode(json.loads(request.content)["img"]))
    assert result.prepared[0].converted
    assert result.prepared[0].rotated


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["path", "bytes", "base64"])
async def test_heic_without_prepare_is_refused_with_how_to_turn_it_on(
    mock: respx.MockRouter, tmp_path: Path, kind: str
) -> None:
    data = photo("HEIF")
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(data)
    image: Any = {
        "path": path,
        "bytes": data,
        "base64": ImageSource.from_base64(base64.b64encode(data)),
    }[kind]
    async with client() as c:
        with pytest.raises(InvalidInputError, match="HEIC photo") as info:
            await c.extract_card(image)
    message = str(info.value)
    assert "turn on prepare" in message
    assert "prepare=True" in message
    assert nothing_sent(mock)


@pytest.mark.anyio
@pytest.mark.parametrize("prepare", [False, True])
async def test_heic_without_pillow_heif_names_the_images_extra(
    mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch, prepare: bool
) -> None:
    monkeypatch.setattr(inputs_module, "importlib", without_modules("pillow_heif"))
    monkeypatch.setattr(prepare_module, "importlib", without_modules("pillow_heif"))
    async with client() as c:
        with pytest.raises(InvalidInputError, match="pillow-heif") as info:
            await c.extract_card(photo("HEIF"), prepare=prepare)
    message = str(info.value)
    assert IMAGES_EXTRA in message
    # Turning prepare on is the other half of the fix only when it is off.
    assert ("turn on prepare" in message) is not prepare
    assert nothing_sent(mock)


@pytest.mark.anyio
async def test_prepare_without_pillow_names_the_images_extra(
    mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prepare_module, "importlib", without_modules("PIL"))
    with pytest.raises(ConfigurationError, match=r"needs Pillow") as info:
        client(prepare=True)
    assert IMAGES_EXTRA in str(info.value)
    async with client() as c:
        with pytest.raises(InvalidInputError, match=r"needs Pillow.*cvekyc-async\[images\]"):
            await c.extract_card(photo("JPEG", 6), prepare=True)
    assert nothing_sent(mock)


# -- 3. size ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_large_photo_is_downscaled_to_2000_px_under_the_cap(
    mock: respx.MockRouter, wide_jpeg: Path
) -> None:
    before = digest(wide_jpeg)
    assert wide_jpeg.stat().st_size > 20_000_000
    async with client(prepare=True) as c:
        result = await c.extract_card(wide_jpeg)
    filename, content_type, sent = uploads(mock)["img"]
    assert (filename, content_type) == ("wide.jpg", "image/jpeg")
    assert len(sent) <= 10 * 1024 * 1024  # the default max_file_size
    with Image.open(io.BytesIO(sent)) as im:
        assert im.size == (2000, 667)
    [done] = result.prepared
    assert done.original_size == (12_000, 4_000)
    assert done.size == (2000, 667)
    assert done.downscaled
    assert not done.rotated
    assert done.quality == 90
    assert done.original_bytes == wide_jpeg.stat().st_size
    assert done.describe() == "downscaled from 12000×4000 to 2000×667"
    assert digest(wide_jpeg) == before  # the file on disk is never touched


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_small_size_cap_lowers_the_jpeg_quality_to_fit(
    mock: respx.MockRouter, wide_jpeg: Path
) -> None:
    before = digest(wide_jpeg)
    async with client(prepare=True, max_file_size=300_000) as c:
        result = await c.extract_card(wide_jpeg)
    _, content_type, sent = uploads(mock)["img"]
    assert content_type == "image/jpeg"
    assert len(sent) <= 300_000
    [done] = result.prepared
    assert done.quality is not None
    assert done.quality < 90  # at 90 this noise takes about 700 kB
    assert done.sent_bytes == len(sent)
    assert max(done.size) <= 2000
    assert digest(wide_jpeg) == before


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_photo_that_cannot_fit_the_cap_is_refused_unsent(
    mock: respx.MockRouter, wide_jpeg: Path
) -> None:
    async with client(prepare=True, max_file_size=20_000) as c:
        with pytest.raises(InvalidInputError, match=r"does not fit under max_file_size=20,000"):
            await c.extract_card(wide_jpeg)
    assert nothing_sent(mock)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_without_prepare_a_large_photo_is_refused_saying_prepare_would_fit_it(
    mock: respx.MockRouter, wide_jpeg: Path
) -> None:
    async with client() as c:
        with pytest.raises(InvalidInputError, match="turn on prepare to downscale"):
            await c.extract_card(wide_jpeg)
    assert nothing_sent(mock)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_jpeg_over_pillows_lowered_limit_is_decoded_at_reduced_scale(
    mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch, wide_jpeg: Path
) -> None:
    # 48 MP declared, but decoded at 1/4 scale (3,000 × 1,000): under a 15 MP limit, and without
    # Pillow's DecompressionBombWarning (warnings are errors here).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 15_000_000)
    async with client(prepare=True) as c:
        result = await c.extract_card(wide_jpeg)
        assert result.prepared[0].size == (2000, 667)
        # Declaring more than four times the limit is refused, however small its decoding.
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000_000)
        with pytest.raises(InvalidInputError, match="over four times the limit of 10,000,000"):
            await c.extract_card(wide_jpeg)


@pytest.mark.anyio
async def test_an_image_that_needs_nothing_is_sent_byte_for_byte(
    mock: respx.MockRouter, tmp_path: Path
) -> None:
    path = tmp_path / "plain.png"
    path.write_bytes(encoded(Image.new("RGB", (300, 200), (10, 120, 90)), "PNG"))
    before = path.read_bytes()
    async with client(prepare=True) as c:
        result = await c.extract_card(path)
    assert uploads(mock)["img"] == ("plain.png", "image/png", before)
    [done] = result.prepared
    assert done.quality is None
    assert not done.changed
    assert done.describe() == "sent as given"
    assert (done.size, done.original_size) == ((300, 200), (300, 200))
    assert done.sent_bytes == done.original_bytes == len(before)
    assert path.read_bytes() == before


# -- 4. damaged files and decompression bombs --------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("size", "orientation"),
    [
        pytest.param((800, 600), 6, id="sideways"),
        pytest.param((3000, 2000), 1, id="over-max-side"),
    ],
)
async def test_a_truncated_photo_is_refused_unsent(
    mock: respx.MockRouter, size: tuple[int, int], orientation: int
) -> None:
    data = noise_jpeg(size, SEED, exif=exif(orientation))
    async with client(prepare=True) as c:
        with pytest.raises(InvalidInputError, match="truncated or damaged") as info:
            await c.extract_card(data[: len(data) // 2])
    assert info.value.__cause__ is None
    assert nothing_sent(mock)


@pytest.mark.anyio
async def test_a_png_bomb_is_refused_by_the_pixel_limit_unsent(
    mock: respx.MockRouter, png_decodes: list[tuple[int, int]]
) -> None:
    bomb = png_declaring(60_000, 60_000)
    assert len(bomb) < 2_000
    async with client(prepare=True) as c:
        with pytest.raises(InvalidInputError, match=r"60,000×60,000 pixels") as info:
            await c.extract_card(bomb)
    message = str(info.value)
    assert "over the limit of 89,478,485" in message
    assert "decompression bomb" in message
    assert nothing_sent(mock)


@pytest.mark.parametrize(
    "with_exif",
    [
        pytest.param(True, id="exif-chunk-first"),
        pytest.param(False, id="plain"),
    ],
)
def test_a_png_bomb_is_refused_before_any_pixel_is_decoded(
    png_decodes: list[tuple[int, int]], with_exif: bool
) -> None:
    with pytest.raises(InvalidInputError, match="decompression bomb"):
        prepare_module.prepare_payload(
            ImageSource.from_bytes(png_declaring(60_000, 60_000, with_exif=with_exif)),
            "img",
            Prepare(),
            max_size=10_000_000,
            allow_pdf=True,
        )
    assert png_decodes == [], f"decoded before the limit was checked: {png_decodes}"


@pytest.mark.anyio
async def test_a_jpeg_declaring_more_than_max_pixels_even_at_one_eighth_is_refused(
    mock: respx.MockRouter,
) -> None:
    # 65,000² at 1/8 scale is still 66 MP: over a 50 MP limit.
    async with client(prepare=Prepare(max_pixels=50_000_000)) as c:
        with pytest.raises(InvalidInputError, match=r"65,000×65,000 pixels.*over the limit"):
            await c.extract_card(jpeg_declaring(65_000, 65_000))
    assert nothing_sent(mock)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_tiny_jpeg_declaring_65000_px_squared_is_refused(mock: respx.MockRouter) -> None:
    async with client(prepare=True) as c:
        # Decoded at 1/8 it would be 66 MP, under the limit; declared, it is over four times it.
        with pytest.raises(InvalidInputError, match=r"over four times the limit of 89,478,485"):
            await c.extract_card(jpeg_declaring(65_000, 65_000))
    assert nothing_sent(mock)


@pytest.mark.anyio
async def test_pillows_own_lowered_limit_is_honoured(
    mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = encoded(Image.new("RGB", (3000, 2000), (90, 120, 200)), "JPEG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    async with client(prepare=True) as c:
        with pytest.raises(
            InvalidInputError, match=r"6,000,000 pixels, over the limit of 1,000,000"
        ):
            await c.extract_card(data)
    assert nothing_sent(mock)


# -- 5. PDFs -----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("prepare", [False, True])
@pytest.mark.parametrize("method", ["ocr_card", "extract_card"])
async def test_a_pdf_over_the_cap_is_refused_saying_pdfs_are_sent_whole(
    mock: respx.MockRouter, tmp_path: Path, prepare: bool, method: str
) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(samples.PDF + b"%" * 5_000)
    async with client(max_file_size=2_000) as c:
        with pytest.raises(InvalidInputError, match="is a PDF of") as info:
            await getattr(c, method)(path, prepare=prepare)
    assert "PDFs are sent whole" in str(info.value)
    assert nothing_sent(mock)


@pytest.mark.anyio
async def test_a_pdf_under_the_cap_is_sent_whole_when_preparing(
    mock: respx.MockRouter, pdf_file: Path
) -> None:
    async with client(prepare=True) as c:
        result = await c.ocr_card(pdf_file)
    assert uploads(mock, OCR)["img"] == ("scan.pdf", "application/pdf", samples.PDF)
    assert result.prepared == []


# -- 6, 7. each endpoint, and who decides ------------------------------------------------------


@pytest.mark.anyio
async def test_both_sides_are_prepared_each_in_its_field(mock: respx.MockRouter) -> None:
    async with client() as c:
        result = await c.extract_cards(photo("HEIF"), photo("JPEG", 3), prepare=True)
    parts = uploads(mock, CARDS)
    assert list(parts) == ["img1", "img2"]
    for _, content_type, sent in parts.values():
        assert content_type == "image/jpeg"
        assert_upright(sent)
    assert [p.field for p in result.prepared] == ["img1", "img2"]
    assert [p.converted for p in result.prepared] == [True, False]
    assert [p.orientation for p in result.prepared] == [1, 3]


@pytest.mark.anyio
async def test_ocr_card_prepares_too(mock: respx.MockRouter) -> None:
    async with client() as c:
        result = await c.ocr_card(photo("HEIF", 6), prepare=Prepare(max_side=500))
    _, content_type, sent = uploads(mock, OCR)["img"]
    assert content_type == "image/jpeg"
    with Image.open(io.BytesIO(sent)) as im:
        assert im.size == (500, 313)
    assert result.prepared[0].describe() == (
        "converted from HEIC to JPEG, rotated 90° clockwise (EXIF orientation), "
        "downscaled from 640×400 to 500×313"
    )


@pytest.mark.anyio
async def test_a_call_can_turn_off_the_clients_prepare(mock: respx.MockRouter) -> None:
    data = photo("JPEG", 6)
    async with client(prepare=True) as c:
        assert c.prepare == Prepare()
        result = await c.extract_card(data, prepare=False)
    assert uploads(mock)["img"][2] == data
    assert result.prepared == []


@pytest.mark.anyio
async def test_a_view_with_prepare_prepares_and_the_client_does_not(
    mock: respx.MockRouter,
) -> None:
    data = photo("JPEG", 6)
    async with client() as c:
        assert c.prepare is None
        view = c.with_options(prepare=True)
        assert view.prepare == Prepare()
        prepared = await view.extract_card(data)
        plain = await c.extract_card(data)
    first, second = (
        parse_multipart(call.request.headers["Content-Type"], call.request.content)["img"][2]
        for call in mock.routes[CARD].calls
    )
    assert_upright(first)
    assert prepared.prepared[0].rotated
    assert second == data
    assert plain.prepared == []


@pytest.mark.anyio
async def test_urls_are_sent_as_urls_even_when_preparing(mock: respx.MockRouter) -> None:
    async with client(prepare=True) as c:
        result = await c.extract_card("https://files.example/front.heic")
    request = mock.routes[CARD].calls.last.request
    assert request.method == "GET"
    assert request.url.params["img"] == "https://files.example/front.heic"
    assert result.prepared == []


def test_the_sync_client_and_raw_responses_prepare(mock: respx.MockRouter) -> None:
    with sync_client(prepare=True) as c:
        result = c.extract_card(photo("HEIF", 8))
        raw = c.with_raw_response.extract_card(photo("JPEG", 2))
        plain = c.extract_card(samples.JPEG, prepare=False)
    first, second, third = (
        parse_multipart(call.request.headers["Content-Type"], call.request.content)["img"]
        for call in mock.routes[CARD].calls
    )
    assert_upright(first[2])
    assert_upright(second[2])
    assert third[2] == samples.JPEG
    assert result.prepared[0].describe() == (
        "converted from HEIC to JPEG, rotated 90° counter-clockwise (EXIF orientation)"
    )
    assert raw.parse().prepared[0].describe() == "mirrored (EXIF orientation)"
    assert plain.prepared == []


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["yes", 1, Prepare, {"max_side": 800}])
async def test_prepare_must_be_a_bool_or_a_prepare(mock: respx.MockRouter, value: Any) -> None:
    with pytest.raises(ConfigurationError, match="prepare must be True, False or a Prepare"):
        client(prepare=value)
    async with client() as c:
        with pytest.raises(ConfigurationError, match="prepare must be True, False or a Prepare"):
            c.with_options(prepare=value)
        with pytest.raises(InvalidInputError, match="prepare must be True, False or a Prepare"):
            await c.extract_card(samples.JPEG, prepare=value)
    assert nothing_sent(mock)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_side": 10}, r"max_side=\.\.\.\) must be an integer >= 480"),
        ({"max_side": True}, "max_side"),
        ({"max_pixels": 1000}, "max_pixels"),
        ({"max_input_size": 0}, "max_input_size"),
        ({"quality": 40}, r"quality=\.\.\.\) must be an integer >= 60"),
        ({"quality": 99}, "at most 95"),
        ({"quality": 85.0}, "quality"),
    ],
)
def test_prepare_options_out_of_range_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Prepare(**options)


# -- 8. against the emulator -------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_emulator_reads_a_card_from_a_prepared_heic(
    cv_emulator: RunningEmulator, heic_card: bytes
) -> None:
    async with cv_emulator.client(prepare=True) as c:
        result = await c.extract_card(heic_card)
    assert result.cards
    [done] = result.prepared
    assert done.converted
    assert done.rotated
    assert done.size == (640, 404)
    assert cv_emulator.stats()["requests"] == 1


def test_the_emulator_reads_a_card_from_a_heic_sent_by_the_sync_client(
    cv_emulator: RunningEmulator, heic_card: bytes
) -> None:
    with cv_emulator.sync_client() as c:
        with pytest.raises(InvalidInputError, match="turn on prepare"):
            c.extract_card(heic_card)
        result = c.extract_card(heic_card, prepare=True)
    assert result.cards
    assert result.prepared[0].converted
    assert cv_emulator.stats()["requests"] == 1


# -- 9. off the event loop, bounded, and private ----------------------------------------------


@pytest.mark.anyio
async def test_preparations_run_in_worker_threads_no_more_at_once_than_prepare_workers(
    mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers = prepare_workers(16)
    assert 1 <= workers <= min(16, os.cpu_count() or 1)
    lock = threading.Lock()
    # The first ``workers`` preparations wait for each other: the pool must let that many run
    # at once (else the barrier times out and the calls fail), and no more may join them.
    together = threading.Barrier(workers, timeout=30)
    state = {"running": 0, "peak": 0, "entered": 0}
    threads: set[int] = set()
    real = attempts_module.prepare_payload

    def counted(*args: Any, **kwargs: Any) -> Any:
        with lock:
            state["running"] += 1
            state["entered"] += 1
            state["peak"] = max(state["peak"], state["running"])
            first = state["entered"] <= workers
            threads.add(threading.get_ident())
        try:
            if first:
                together.wait()
            return real(*args, **kwargs)
        finally:
            with lock:
                state["running"] -= 1

    monkeypatch.setattr(attempts_module, "prepare_payload", counted)
    inputs = [photo("JPEG", 6) + f"{i}".encode() for i in range(20)]  # 20 distinct files
    results: list[ExtractionResult | None] = [None] * len(inputs)
    loop_thread = threading.get_ident()

    async with client(prepare=True, max_concurrency=16) as c:

        async def one(i: int) -> None:
            results[i] = await c.extract_card(inputs[i])

        async with anyio.create_task_group() as tg:
            for i in range(len(inputs)):
                tg.start_soon(one, i)

    assert state["entered"] == 20
    assert state["peak"] == workers
    assert loop_thread not in threads
    assert all(r is not None and r.prepared[0].rotated for r in results)
    assert mock.routes[CARD].call_count == 20


PERSONAL = b"NGUYEN VAN MAU 001099012345"


@pytest.mark.anyio
async def test_records_and_errors_never_show_the_files_bytes_or_its_neighbours(
    mock: respx.MockRouter, tmp_path: Path, png_decodes: list[tuple[int, int]]
) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir()
    (folder / "CCCD_001099012345_tran_thi_b.jpg").write_bytes(samples.JPEG)
    whole = noise_jpeg((800, 600), SEED, exif=exif(6), comment=PERSONAL)
    assert PERSONAL in whole
    good = folder / "good.jpg"
    good.write_bytes(whole)
    damaged = folder / "damaged.jpg"
    damaged.write_bytes(whole[: len(whole) // 2])
    heic = folder / "photo.heic"
    heic.write_bytes(photo("HEIF"))
    bomb = folder / "huge.png"
    bomb.write_bytes(png_declaring(60_000, 60_000))
    errors = []
    async with client(prepare=True) as c:
        result = await c.extract_card(good)
        for path, prepare in ((damaged, True), (heic, False), (bomb, True)):
            with pytest.raises(InvalidInputError) as info:
                await c.extract_card(path, prepare=prepare)
            assert info.value.__cause__ is None
            errors.append((path, str(info.value), repr(info.value)))
    shown = [repr(result), repr(result.prepared), str(result.to_dict())]
    for text in shown:
        assert PERSONAL.decode() not in text
        assert str(folder) not in text
        assert "001099012345" not in text
    for path, message, representation in errors:
        for text in (message, representation):
            assert str(path) in text  # the path, as every message names a file
            assert PERSONAL.decode() not in text
            assert "tran_thi_b" not in text
            assert "\\x" not in text  # no bytes quoted


def test_a_prepared_jpeg_carries_no_exif_of_the_original() -> None:
    tags = Image.Exif()
    tags[EXIF_ORIENTATION] = 6
    tags[0x010F] = "PhoneMaker"  # Make
    tags[0x010E] = PERSONAL.decode()  # ImageDescription
    original = noise_jpeg((800, 600), SEED, exif=tags.tobytes())
    payload, _ = prepare_module.prepare_payload(
        ImageSource.from_bytes(original), "img", Prepare(), max_size=10_000_000, allow_pdf=True
    )
    assert isinstance(payload.data, bytes)
    assert PERSONAL not in payload.data
    assert b"PhoneMaker" not in payload.data
    with Image.open(io.BytesIO(payload.data)) as sent:
        assert "exif" not in sent.info


def test_a_prepared_jpeg_carries_no_comment_of_the_original() -> None:
    original = noise_jpeg((800, 600), SEED, exif=exif(6), comment=PERSONAL)
    payload, _ = prepare_module.prepare_payload(
        ImageSource.from_bytes(original), "img", Prepare(), max_size=10_000_000, allow_pdf=True
    )
    assert isinstance(payload.data, bytes)
    assert PERSONAL not in payload.data


def test_a_preparations_repr_says_what_was_done_and_nothing_else() -> None:
    done = Preparation(
        field="img1",
        source_format="heic",
        original_size=(4032, 3024),
        size=(2000, 1500),
        orientation=6,
        original_bytes=2_345_678,
        sent_bytes=456_789,
        quality=90,
    )
    assert repr(done) == (
        "Preparation('img1': converted from HEIC to JPEG, rotated 90° clockwise "
        "(EXIF orientation), downscaled from 4032×3024 to 2000×1500)"
    )


# -- 10. memory ----------------------------------------------------------------------------------

# Run in a fresh interpreter, 50 calls at concurrency 16 through the client against respx; prints
# the figures as JSON. Its peak is read from VmHWM, the peak RSS of its own memory: ru_maxrss
# starts at the peak of the pytest process it was started from (Linux keeps it across exec, and
# subprocess starts children with vfork), which hides any growth smaller than that.
_MEMORY_RUN = """
import json, resource, sys
import anyio, httpx, respx
from PIL import Image, JpegImagePlugin, PngImagePlugin
from cvekyc_async import AsyncCVClient
from cvekyc_async._prepare import prepare_workers
from cvekyc_async.testing import answer_body

path, copies, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

def maxrss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

async def main():
    with respx.mock(base_url="https://api.test") as router:
        router.post("/api/v2/ekyc/card").respond(200, content=answer_body())
        async with AsyncCVClient(
            "k", "s", base_url="https://api.test", max_concurrency=concurrency,
            max_retries=0, prepare=True,
        ) as c:
            before, maxrss_before = peak(), maxrss()
            sizes = []
            async def one():
                result = await c.extract_card(path)
                sizes.append(result.prepared[0].size)
            async with anyio.create_task_group() as tg:
                for _ in range(copies):
                    tg.start_soon(one)
            print(json.dumps({
                "before": before, "after": peak(), "workers": prepare_workers(concurrency),
                "maxrss_before": maxrss_before, "maxrss_after": maxrss(),
                "sizes": sorted(set(sizes)), "calls": len(sizes), "sent": router.calls.call_count,
            }))

anyio.run(main)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_memory_stays_bounded_by_the_workers_not_the_concurrency(tmp_path: Path) -> None:
    width, height, copies, concurrency = 4000, 3000, 50, 16
    # A smooth gradient: a small file (a PNG always decodes whole) of 12 MP.
    across = Image.linear_gradient("L").rotate(90).resize((width, height))
    down = Image.linear_gradient("L").resize((width, height))
    picture = Image.merge("RGB", (across, down, Image.new("L", (width, height), 128)))
    path = tmp_path / "gradient.png"
    picture.save(path, compress_level=1)
    del picture, across, down
    run = subprocess.run(
        [sys.executable, "-c", _MEMORY_RUN, str(path), str(copies), str(concurrency)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(run.stdout)
    assert figures["calls"] == figures["sent"] == copies
    assert figures["sizes"] == [[2000, 1500]]
    decoded = width * height * 4  # Pillow holds RGB in 4 bytes a pixel
    workers = figures["workers"]
    growth = figures["after"] - figures["before"]
    # Each worker holds its decoded image, the half-resampled one and the result (about 1.75
    # images, 2 said here), and two more for the interpreter's and the allocator's slack. 16
    # preparations at once (the concurrency, unbounded) reach about 28 images: 1.3 GB.
    bound = (2 * workers + 2) * decoded
    mib = 2**20
    print(
        f"\npeak RSS growth {growth / mib:.0f} MiB for {copies} × {width}×{height} PNG at "
        f"concurrency {concurrency}, {workers} workers; bound {bound / mib:.0f} MiB; 16 decodes "
        f"at once would take {16 * decoded / mib:.0f} MiB (ru_maxrss, which starts at the "
        f"parent's peak: {figures['maxrss_before'] / mib:.0f} -> "
        f"{figures['maxrss_after'] / mib:.0f} MiB)"
    )
    if 2 * workers + 2 < 16:
        assert bound < 16 * decoded
    assert growth < bound, f"peak grew {growth:,} bytes, over {bound:,}"


# -- image modes and colour profiles ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "value", "grey"),
    [("I;16", 40_000, 255), ("I;16", 300, 255), ("I", 70_000, 255), ("F", 0.5, 127)],
)
def test_deep_grey_images_are_scaled_to_eight_bits(mode: str, value: float, grey: int) -> None:
    # Over max_side, so it is decoded and re-encoded; a gradient keeps its range.
    image = Image.new(mode, (2400, 100), 0)
    image.paste(Image.new(mode, (1200, 100), value), (1200, 0))
    assert image.getextrema() == (0, value)
    data = encoded(image, "PNG" if mode == "I;16" else "TIFF")
    payload, done = prepare_module.prepare_payload(
        ImageSource.from_bytes(data), "img", Prepare(), max_size=10_000_000, allow_pdf=True
    )
    assert done is not None
    assert done.size == (2000, 83)
    assert isinstance(payload.data, bytes)
    with Image.open(io.BytesIO(payload.data)) as sent:
        assert sent.mode == "L"
        assert sent.getpixel((100, 40)) <= 3  # black stays black
        assert abs(sent.getpixel((1900, 40)) - grey) <= 3  # scaled from its range, not clipped


def test_only_a_colour_profile_of_the_images_own_space_is_carried_over() -> None:
    rgb_profile = bytes(16) + b"RGB " + bytes(108)
    cmyk_profile = bytes(16) + b"CMYK" + bytes(108)
    for source_mode, profile, kept in (
        ("RGB", rgb_profile, True),
        ("CMYK", cmyk_profile, False),
        ("RGB", rgb_profile + bytes(300_000), False),  # no camera writes one this big
    ):
        data = encoded(Image.new(source_mode, (2400, 1600)), "JPEG", icc_profile=profile)
        payload, _ = prepare_module.prepare_payload(
            ImageSource.from_bytes(data), "img", Prepare(), max_size=10_000_000, allow_pdf=True
        )
        assert isinstance(payload.data, bytes)
        with Image.open(io.BytesIO(payload.data)) as sent:
            assert sent.mode == "RGB"
            assert (sent.info.get("icc_profile") == profile) is kept, source_mode
