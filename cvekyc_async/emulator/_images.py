"""What an upload is, as the service sees it: opened by an image library, not judged by its magic
bytes (the client's sniffing is not used here, so a bug in either shows up in the tests).

Images are opened and decoded with Pillow under a pixel limit (JPEGs at a reduced scale); an
image over it, a decompression bomb, or bytes Pillow cannot read are "not a readable image"
(error 3), never a server error. Only small uploads of few pixels are checked on the event loop;
the rest, and every thumbnail, in a worker thread, so no upload can stall the server. Verdicts are
cached by digest, so an image sent again costs a hash.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import threading
from collections import OrderedDict

import anyio.to_thread

__all__ = ["MAX_PIXELS", "content_type", "identify", "synthetic_jpeg", "thumbnail"]

#: Largest image the emulator reads, in pixels (a 50-megapixel phone photo passes).
MAX_PIXELS = 64_000_000
# Small uploads are checked on the event loop (less work than handing them to a thread); the
# rest, and any image of many pixels, in a worker thread.
_INLINE_BYTES = 64 * 1024
_INLINE_PIXELS = 1_000_000
_FORMATS = {
    "JPEG": "jpeg",
    "MPO": "jpeg",
    "PNG": "png",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tiff",
}
_CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "pdf": "application/pdf"}
_CACHE_SIZE = 4096
_cache: OrderedDict[bytes, str | None] = OrderedDict()
_cache_lock = threading.Lock()


def _is_pdf(data: bytes) -> bool:
    # A PDF starts with its header (after at most 1 KB of junk, as readers allow) and has an
    # end-of-file marker near its end.
    return b"%PDF-" in data[:1024] and b"%%EOF" in data[-8192:]


def _probe(data: bytes) -> tuple[str, int] | None:
    """The image's format and pixel count from its headers, or ``None`` when Pillow cannot
    open it, it is not a format the service reads, or it is over ``MAX_PIXELS``."""
    from PIL import Image  # the emulator extra

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = _FORMATS.get(img.format or "")
            width, height = img.size
    except Exception:  # whatever the bytes provoke (bombs included) means "not an image"
        return None
    pixels = width * height
    if fmt is None or width <= 0 or height <= 0 or pixels > MAX_PIXELS:
        return None
    return fmt, pixels


def _decodes(data: bytes) -> bool:
    """Whether the image decodes all the way (JPEGs at a reduced scale: the same data read)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except Exception:  # truncated data, bad pixel data, a bomb
        return False
    return True


def _identify(data: bytes) -> str | None:
    if _is_pdf(data):
        return "pdf"
    probed = _probe(data)
    return probed[0] if probed is not None and _decodes(data) else None


def _remember(digest: bytes, fmt: str | None) -> str | None:
    with _cache_lock:
        _cache[digest] = fmt
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return fmt


async def identify(data: bytes) -> str | None:
    """The upload's format (``jpeg``, ``png``, ``webp``, ``bmp``, ``tiff``, ``pdf``), or ``None``
    when the service could not read it (error 3): it must open and decode, within the pixel
    limit."""
    digest = hashlib.blake2b(data, digest_size=16).digest()
    with _cache_lock:
        if digest in _cache:
            _cache.move_to_end(digest)
            return _cache[digest]
    if len(data) > _INLINE_BYTES or _is_pdf(data):
        return _remember(digest, await anyio.to_thread.run_sync(_identify, data))
    probed = _probe(data)
    if probed is None:
        return _remember(digest, None)
    fmt, pixels = probed
    if pixels <= _INLINE_PIXELS:
        ok = _decodes(data)
    else:
        ok = await anyio.to_thread.run_sync(_decodes, data)
    return _remember(digest, fmt if ok else None)


def content_type(data: bytes) -> str:
    """The content type to serve a specimen file with."""
    if _is_pdf(data):
        return _CONTENT_TYPES["pdf"]
    probed = _probe(data)
    return _CONTENT_TYPES.get(probed[0] if probed else "", "application/octet-stream")


def _thumbnail(data: bytes, box: list[float] | None, max_side: int) -> str | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                return None
            # JPEGs decode straight at a reduced scale: a large photo costs a fraction.
            img.draft("RGB", (max_side * 2, max_side * 2))
            img.load()
            picture = img.convert("RGB")
    except Exception:  # an undecodable image, truncated data, a bomb
        return None
    try:
        if box and len(box) == 4:
            sx, sy = picture.width / width, picture.height / height
            left, top, right, bottom = (float(v) for v in box)
            picture = picture.crop(
                (int(left * sx), int(top * sy), int(right * sx), int(bottom * sy))
            )
        picture.thumbnail((max_side, max_side))
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=80)
    except Exception:  # a box that crops to nothing, or out of any range
        return None
    return base64.b64encode(out.getvalue()).decode("ascii")


async def thumbnail(data: bytes, box: list[float] | None, *, max_side: int = 480) -> str | None:
    """The document cropped from the image and downscaled, as base64 JPEG, decoded in a worker
    thread; ``""`` for a PDF (as the service sends), ``None`` when the image cannot be decoded."""
    if _is_pdf(data):
        return ""
    return await anyio.to_thread.run_sync(_thumbnail, data, box, max_side)


@functools.cache
def _plain_jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (214, 200, 180)).save(out, "JPEG", quality=75)
    return out.getvalue()


def synthetic_jpeg(index: int, size: int | None = None) -> bytes:
    """A real JPEG, different for every ``index``, of ``size`` bytes when given (at least about
    a kilobyte): a plain picture with comment segments that hold the index and padding.

    For tests and benchmarks that need many distinct images: the emulator answers each with a
    stable synthetic card.
    """
    base = _plain_jpeg()
    payload = f"cvekyc synthetic image {index}".encode()
    if size is not None:
        # Every comment segment costs 4 bytes of marker and length around its payload.
        payload += b"." * max(0, size - len(base) - len(payload) - 4 * (1 + size // 65533))
    segments = b"".join(
        b"\xff\xfe" + (len(chunk) + 2).to_bytes(2, "big") + chunk
        for chunk in (payload[i : i + 65533] for i in range(0, len(payload), 65533))
    )
    return base[:2] + segments + base[2:]
