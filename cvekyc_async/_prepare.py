"""Image preparation: what a phone's photo needs before the service can read it.

Off by default: a plain call sends the bytes it was given. With ``prepare=True`` (or a
``Prepare``), each file or bytes input is, before it is sent:

- converted to JPEG when it is a HEIC/HEIF or AVIF photo (the service reads neither);
- turned upright when its EXIF orientation says it lies on its side or is mirrored;
- downscaled when its long side is over ``max_side`` pixels, or re-encoded when its file is over
  the client's ``max_file_size``, at a JPEG quality that fits under it.

An image that needs none of this is sent as given, byte for byte. PDFs are always sent whole.
URLs are downloaded by the service and cannot be prepared here.

Decoding is bounded: ``max_pixels`` caps what one image may decode to (a decompression bomb
declares a huge size in a few bytes), JPEGs are decoded at the smallest 1/2, 1/4 or 1/8 scale that
still covers ``max_side``, and the work runs in worker threads, no more at once than the client's
concurrency and the machine's cores, whose decoded pixels together stay within a budget of twice
the default limit (an image bigger than that is decoded alone).
"""

from __future__ import annotations

import importlib.util
import io
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from ._errors import ConfigurationError, InvalidInputError
from ._inputs import (
    PHOTO_NAMES,
    ImageSource,
    Payload,
    not_readable,
    photo_format,
    sniff_format,
)

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "DEFAULT_MAX_INPUT_SIZE",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "DEFAULT_QUALITY",
    "PixelBudget",
    "Preparation",
    "Prepare",
    "coerce_prepare",
    "prepare_payload",
    "prepare_workers",
]

#: Long side, in pixels, an image is downscaled to. The service publishes no figure; OCR engines
#: read best at 300 dpi or more (Tesseract's "Improving the quality of the output"), an ID-1 card
#: (85.60 × 53.98 mm, ISO/IEC 7810) is 1,011 px wide at 300 dpi, and in a phone photo it rarely
#: fills more than half the frame: 2,000 px keeps the card at about 300 dpi. Other card-OCR
#: services cap the long side at 1,920 to 8,192 px.
DEFAULT_MAX_SIDE = 2000
#: Most pixels one image may decode to: Pillow's own default ``MAX_IMAGE_PIXELS`` (its
#: decompression-bomb threshold), about 89.5 MP, so a 48 or 50 MP phone photo passes.
DEFAULT_MAX_PIXELS = 89_478_485
#: Largest file read for preparing (a 200 MP phone photo is about 60 MB).
DEFAULT_MAX_INPUT_SIZE = 100 * 1024 * 1024
#: JPEG quality of a re-encoded image, lowered (to 60 at least) when needed to fit the size cap.
DEFAULT_QUALITY = 90
_QUALITY_FLOOR = 60
_SMALLEST_SIDE = 480  # never shrunk below this to fit a size cap: refused instead
_ICC_MAX = 256 * 1024  # a colour profile bigger than this is no camera's: not carried over
# Formats whose decoder turns the image upright itself (libheif applies the HEIF transforms).
_DECODER_ROTATES = frozenset({"heic", "heif"})
# Formats whose size Pillow reports upright before decoding (it turns TIFFs as it loads them).
_SIZE_UPRIGHT = _DECODER_ROTATES | {"tiff"}

# What each EXIF orientation (1 to 8) means, in the words a record shows.
_ORIENTATIONS = {
    2: "mirrored",
    3: "rotated 180°",
    4: "flipped upside down",
    5: "mirrored and rotated 90° counter-clockwise",
    6: "rotated 90° clockwise",
    7: "mirrored and rotated 90° clockwise",
    8: "rotated 90° counter-clockwise",
}
_PILLOW_FORMATS = {
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "bmp": "BMP",
    "tiff": "TIFF",
    "avif": "AVIF",
}
_EXIF_ORIENTATION = 0x0112


def _positive(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"Prepare({name}=...) must be an integer >= {minimum}")
    return value


@dataclass(frozen=True, slots=True)
class Prepare:
    """How inputs are prepared before they are sent (see the module docstring).

    ``prepare=True`` means ``Prepare()``: these defaults.

    Args:
        max_side: long side, in pixels, an image is downscaled to (default 2,000).
        max_pixels: most pixels one image may decode to (default about 89.5 MP, Pillow's own
            decompression-bomb threshold); Pillow's ``Image.MAX_IMAGE_PIXELS``, when set lower,
            wins.
        max_input_size: largest file, in bytes, read for preparing (default 100 MiB); what is
            sent stays under the client's ``max_file_size``.
        quality: JPEG quality of a re-encoded image (default 90), lowered to fit the size cap.

    Raises:
        ConfigurationError: a value out of range.
    """

    max_side: int = DEFAULT_MAX_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_input_size: int = DEFAULT_MAX_INPUT_SIZE
    quality: int = DEFAULT_QUALITY

    def __post_init__(self) -> None:
        _positive("max_side", self.max_side, _SMALLEST_SIDE)
        _positive("max_pixels", self.max_pixels, _SMALLEST_SIDE * _SMALLEST_SIDE)
        _positive("max_input_size", self.max_input_size, 1)
        _positive("quality", self.quality, _QUALITY_FLOOR)
        if self.quality > 95:
            raise ConfigurationError("Prepare(quality=...) must be at most 95")


class Preparation(msgspec.Struct, frozen=True, kw_only=True):
    """What preparing one input did to it (``ExtractionResult.prepared``)."""

    field: str
    """The request field the image went in: ``img``, or ``img1`` / ``img2`` for two sides."""
    source_format: str
    """The format it was given in: ``jpeg``, ``png``, ``heic``, ``avif``, ..."""
    original_size: tuple[int, int]
    """Its width and height upright (its orientation applied), before any downscale."""
    size: tuple[int, int]
    """The width and height sent."""
    orientation: int = 1
    """The EXIF orientation applied to turn it upright (1: none was needed)."""
    original_bytes: int
    """Size of the input, in bytes."""
    sent_bytes: int
    """Size of what was sent, in bytes."""
    quality: int | None = None
    """The JPEG quality it was re-encoded at; ``None`` when it was sent as given."""

    @property
    def changed(self) -> bool:
        """Whether what was sent differs from the input."""
        return self.quality is not None

    @property
    def converted(self) -> bool:
        """Whether it was converted from a format the service does not read (HEIC, AVIF)."""
        return self.source_format in PHOTO_NAMES

    @property
    def rotated(self) -> bool:
        """Whether it was turned upright."""
        return self.orientation != 1

    @property
    def downscaled(self) -> bool:
        """Whether it was made smaller."""
        return self.size != self.original_size

    def describe(self) -> str:
        """What was done, in words: ``converted from HEIC to JPEG, rotated 90° clockwise,
        downscaled from 4032×3024 to 2000×1500``; ``sent as given`` when nothing was."""
        if not self.changed:
            return "sent as given"
        done = []
        if self.converted:
            done.append(f"converted from {self.source_format.upper()} to JPEG")
        if self.rotated:
            done.append(f"{_ORIENTATIONS.get(self.orientation, 'turned')} (EXIF orientation)")
        if self.downscaled:
            (w, h), (w2, h2) = self.original_size, self.size
            done.append(f"downscaled from {w}×{h} to {w2}×{h2}")
        if not done:
            done.append(f"re-encoded as JPEG to fit {self.sent_bytes:,} bytes")
        return ", ".join(done)

    def __repr__(self) -> str:
        return f"Preparation({self.field!r}: {self.describe()})"


def coerce_prepare(value: object, where: str) -> Prepare | None:
    """``prepare=`` as given (``True``, ``False``, ``None`` or a ``Prepare``) made a ``Prepare``
    or ``None``; ``where`` is the error to raise for anything else."""
    if value is None or value is False:
        return None
    if value is True:
        value = Prepare()
    if not isinstance(value, Prepare):
        message = f"prepare must be True, False or a Prepare(...), not {type(value).__name__}"
        raise ConfigurationError(message) if where == "client" else InvalidInputError(message)
    if importlib.util.find_spec("PIL") is None:
        message = (
            "prepare needs Pillow, which is not installed: "
            "pip install 'cvekyc-async[images]' (Pillow, and pillow-heif for HEIC photos)"
        )
        raise ConfigurationError(message) if where == "client" else InvalidInputError(message)
    return value


class PixelBudget:
    """Pixels being decoded at once, across the worker threads of one client: a preparation
    waits until its image fits (one bigger than the whole budget runs alone), so that memory
    stays bounded whatever the images and the number of cores."""

    def __init__(self, pixels: int = 2 * DEFAULT_MAX_PIXELS) -> None:
        self.pixels = pixels
        self.used = 0
        self._changed = threading.Condition()

    def take(self, pixels: int) -> None:
        with self._changed:
            while self.used and self.used + pixels > self.pixels:
                self._changed.wait()
            self.used += pixels

    def give(self, pixels: int) -> None:
        with self._changed:
            self.used -= pixels
            self._changed.notify_all()


def prepare_workers(max_concurrency: int) -> int:
    """Images prepared at once: decoding is CPU-bound, so more threads than cores only add
    memory; fewer than the concurrency keeps memory bounded however wide the batch is."""
    return max(1, min(max_concurrency, os.cpu_count() or 1))


def prepare_payload(
    src: ImageSource,
    field: str,
    how: Prepare,
    *,
    max_size: int,
    allow_pdf: bool,
    budget: PixelBudget | None = None,
) -> tuple[Payload, Preparation | None]:
    """Read one input and make it what its request carries, prepared as ``how`` says.

    Runs in a worker thread: it reads the file and may decode the image.

    Raises:
        InvalidInputError: the input cannot be read, is not an image the service or this
            module reads, is over a size limit, or cannot be decoded.
    """
    if src.kind == "url":
        return src.load(max_size=max_size, allow_pdf=allow_pdf), None
    data, what = src.read_bytes(
        how.max_input_size, "raise it with Prepare(max_input_size=...), or resize the file"
    )
    head = data[:64]
    fmt = sniff_format(head)
    if fmt == "pdf":
        # Sent whole: its pages are not rasterised here.
        return src.payload_of(data, what, max_size=max_size, allow_pdf=allow_pdf), None
    kind = fmt or photo_format(head)
    if kind is None:
        # Refused with the message every path gives for a file that is no image.
        return src.payload_of(data, what, max_size=max_size, allow_pdf=allow_pdf), None
    image = _open(data, kind, what)
    _check_pixels(image, kind, how, what)
    orientation = _orientation_of(image, kind)
    upright = _upright(image.size, orientation if kind not in _SIZE_UPRIGHT else 1)
    needs = (
        kind in PHOTO_NAMES
        or orientation != 1
        or max(upright) > how.max_side
        or len(data) > max_size
    )
    if not needs:
        payload = src.payload_of(data, what, max_size=max_size, allow_pdf=allow_pdf)
        return payload, Preparation(
            field=field,
            source_format=kind,
            original_size=upright,
            size=upright,
            orientation=1,
            original_bytes=len(data),
            sent_bytes=len(data),
        )
    budget = budget or PixelBudget()
    cost = _decoded_pixels(image, kind, how)
    budget.take(cost)
    try:
        jpeg, size, quality = _remade(image, kind, orientation, how, max_size, what)
    finally:
        budget.give(cost)
    payload = src.payload_of(jpeg, what, max_size=max_size, allow_pdf=False, renamed=".jpg")
    return payload, Preparation(
        field=field,
        source_format=kind,
        original_size=upright,
        size=size,
        orientation=orientation,
        original_bytes=len(data),
        sent_bytes=len(jpeg),
        quality=quality,
    )


def _upright(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def _open(data: bytes, kind: str, what: str) -> PILImage.Image:
    """The image's header read, its pixels not yet decoded.

    The format's own opener is used, not ``Image.open``: that one warns (a process-wide
    warning) for images over Pillow's threshold, which a 108 MP phone photo is, and which the
    bound on decoded pixels here replaces.
    """
    from PIL import Image

    fp = io.BytesIO(data)
    try:
        if kind in ("heic", "heif"):
            if importlib.util.find_spec("pillow_heif") is None:
                raise InvalidInputError(not_readable(what, kind, prepare_on=True))
            from pillow_heif.as_plugin import HeifImageFile

            return HeifImageFile(fp)  # type: ignore[no-untyped-call]
        name = _PILLOW_FORMATS[kind]
        if name not in Image.OPEN:
            Image.init()
        if name not in Image.OPEN:
            raise InvalidInputError(not_readable(what, kind, prepare_on=True))
        factory, _ = Image.OPEN[name]
        return factory(fp, "")
    except InvalidInputError:
        raise
    except Image.DecompressionBombError:
        raise InvalidInputError(f"{what} declares more pixels than Pillow allows") from None
    except Exception as exc:
        # Never the error's text: a decoder's message can quote the file's bytes.
        raise InvalidInputError(
            f"{what} cannot be read as {PHOTO_NAMES.get(kind, kind.upper())} "
            f"(damaged or not what its first bytes say: {type(exc).__name__})"
        ) from None


def _target(size: tuple[int, int], how: Prepare) -> tuple[int, int]:
    scale = min(1.0, how.max_side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _decoded_pixels(image: PILImage.Image, kind: str, how: Prepare) -> int:
    """Pixels decoding the image takes: a JPEG is decoded at the smallest of 1/8, 1/4, 1/2
    or full scale that still covers the target size (as ``Image.draft`` chooses)."""
    w, h = image.size
    if kind == "jpeg":
        tw, th = _target(image.size, how)
        for scale in (8, 4, 2):
            if w // scale >= tw and h // scale >= th:
                return -(-w // scale) * -(-h // scale)
    return w * h


def _check_pixels(image: PILImage.Image, kind: str, how: Prepare, what: str) -> None:
    """Refuse an image that would decode to more than the limit, before anything is decoded
    (reading a PNG's orientation may decode it all)."""
    pixels = _decoded_pixels(image, kind, how)
    limit = _pixel_limit(how)
    w, h = image.size
    # A JPEG decodes at 1/8 scale at best: one declaring more than four times the limit is no
    # phone's photo (200 MP ones pass), and would still take the limit's worth of memory.
    if pixels > limit or w * h > 4 * limit:
        cost = (
            f"decoding it takes {pixels:,} pixels, over the limit of {limit:,}"
            if pixels > limit
            else f"over four times the limit of {limit:,}"
        )
        raise InvalidInputError(
            f"{what} declares {w:,}×{h:,} pixels: {cost} (Prepare(max_pixels=...)); an image "
            "this large in a small file is how a decompression bomb looks"
        )


def _orientation_of(image: PILImage.Image, kind: str) -> int:
    if kind in _DECODER_ROTATES:
        # libheif turns HEIF photos upright as it decodes them; the tag it read is kept here.
        value: Any = image.info.get("original_orientation", 1)
    elif kind == "png" and "exif" not in image.info:
        # Pillow looks for an eXIf chunk after the pixels by decoding them all: one placed
        # there (rare) is not read, rather than decode every PNG to find none.
        value = 1
    else:
        try:
            value = image.getexif().get(_EXIF_ORIENTATION, 1)
        except Exception:  # EXIF that cannot be read is no orientation
            value = 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _pixel_limit(how: Prepare) -> int:
    from PIL import Image

    limit = how.max_pixels
    if Image.MAX_IMAGE_PIXELS is not None:
        limit = min(limit, int(Image.MAX_IMAGE_PIXELS))
    return limit


def _remade(
    image: PILImage.Image, kind: str, orientation: int, how: Prepare, max_size: int, what: str
) -> tuple[bytes, tuple[int, int], int]:
    """Decode, turn upright, downscale and encode as JPEG under ``max_size``."""
    from PIL import Image, ImageOps

    if kind == "jpeg":
        # Decoded at 1/2, 1/4 or 1/8 scale when that still covers the target: a 48 MP photo
        # then costs 3 MP of memory, not 48.
        image.draft(None, _target(image.size, how))
    icc = _profile_for(image)
    try:
        image.load()
        picture = ImageOps.exif_transpose(image) if orientation != 1 else image
        picture = _flattened(picture)
        if max(picture.size) > how.max_side:
            picture.thumbnail((how.max_side, how.max_side), Image.Resampling.LANCZOS)
    except Image.DecompressionBombError:
        raise InvalidInputError(f"{what} holds more pixels than Pillow allows") from None
    except Exception as exc:
        raise InvalidInputError(
            f"{what} cannot be decoded: the {PHOTO_NAMES.get(kind, kind.upper())} data is "
            f"truncated or damaged ({type(exc).__name__})"
        ) from None
    try:
        while True:
            for quality in range(how.quality, _QUALITY_FLOOR - 1, -10):
                encoded = _jpeg(picture, quality, icc)
                if len(encoded) <= max_size:
                    return encoded, picture.size, quality
            if min(picture.size) * 3 // 4 < _SMALLEST_SIDE:
                raise InvalidInputError(
                    f"{what} does not fit under max_file_size={max_size:,} bytes even as a "
                    f"{picture.size[0]}×{picture.size[1]} JPEG at quality {_QUALITY_FLOOR}"
                )
            smaller = (picture.size[0] * 3 // 4, picture.size[1] * 3 // 4)
            picture = picture.resize(smaller, Image.Resampling.LANCZOS)
    except InvalidInputError:
        raise
    except Exception as exc:  # an image mode or profile JPEG cannot hold
        raise InvalidInputError(
            f"{what} cannot be encoded as JPEG ({type(exc).__name__})"
        ) from None


def _profile_for(image: PILImage.Image) -> bytes | None:
    """The colour profile to carry over: one of an RGB or grey image's own colour space (a
    CMYK profile describes no RGB pixels), of a size a camera writes."""
    icc = image.info.get("icc_profile")
    if not isinstance(icc, bytes) or len(icc) > _ICC_MAX or len(icc) < 20:
        return None
    space = icc[16:20]
    if (space == b"RGB " and image.mode in ("RGB", "RGBA", "P", "YCbCr")) or (
        space == b"GRAY" and image.mode in ("L", "LA")
    ):
        return icc
    return None


def _flattened(image: PILImage.Image) -> PILImage.Image:
    """The image in a mode JPEG holds (RGB or L), transparency laid on white."""
    from PIL import Image

    if image.mode in ("RGB", "L"):
        return image
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if image.mode.startswith("I") or image.mode == "F":
        # 16-bit, 32-bit or float grey, scaled to 8 bits from its range: a plain conversion
        # clips everything over 255 to white (or everything of a 0-1 float to black).
        grey = image.convert("F")
        low, high = grey.getextrema()
        assert isinstance(low, (int, float))
        assert isinstance(high, (int, float))
        top = 1.0 if image.mode == "F" and low >= 0 and high <= 1.0 else max(float(high), 255.0)
        return grey.point(lambda v: v * (255.0 / top)).convert("L")
    if image.mode == "1":
        return image.convert("L")
    return image.convert("RGB")


def _jpeg(image: PILImage.Image, quality: int, icc: bytes | None) -> bytes:
    out = io.BytesIO()
    # Only pixels and a colour profile go out: no EXIF (GPS), XMP or comment of the original.
    options: dict[str, Any] = {"quality": quality, "comment": b""}
    if icc is not None:
        options["icc_profile"] = icc  # colours as the camera meant them
    image.save(out, format="JPEG", **options)
    return out.getvalue()
