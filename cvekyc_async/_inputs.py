"""Image inputs: paths, bytes, URLs and base64, their validation, and what each sends.

A plain argument is read as follows: a ``str`` starting ``http://`` or ``https://`` is a URL
(``format_type=url``), any other ``str`` or ``os.PathLike`` is a file path and ``bytes`` are file
contents (both ``format_type=file``, multipart). ``ImageSource`` states the choice explicitly and
adds base64 (``format_type=base64``, JSON body).

Paths are checked when the source is built, and read only when its request is sent, so a batch of
many paths never holds many images in memory.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import os
import re
import stat
from pathlib import Path
from typing import Literal, Union
from urllib.parse import urlsplit

from ._constants import DEFAULT_MAX_FILE_SIZE
from ._errors import InvalidInputError
from ._redact import describe_head

__all__ = [
    "PHOTO_NAMES",
    "ImageInput",
    "ImageSource",
    "Payload",
    "as_source",
    "check_size",
    "describe_input",
    "not_readable",
    "photo_format",
    "sniff_format",
]

FormatType = Literal["file", "url", "base64"]

# Magic bytes of the formats the service decodes. It documents JPEG, PNG and PDF; WebP, BMP and
# TIFF are decoded by the same image stack (OpenCV), so they are let through rather than refused.
_MAGIC: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png", "image/png"),
    (b"%PDF-", 0, "pdf", "application/pdf"),
    (b"WEBP", 8, "webp", "image/webp"),
    (b"BM", 0, "bmp", "image/bmp"),
    (b"II*\x00", 0, "tiff", "image/tiff"),
    (b"MM\x00*", 0, "tiff", "image/tiff"),
)
_MIME = {name: mime for _, _, name, mime in _MAGIC}
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_DATA_URI_RE = re.compile(r"^data:[^,]*;base64,", re.IGNORECASE)
_SNIFF_LEN = 64

#: Photo formats phones write that the service does not read, sent only when prepared (as JPEG).
PHOTO_NAMES = {"heic": "a HEIC photo", "heif": "a HEIF photo", "avif": "an AVIF image"}
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


def photo_format(head: bytes) -> str | None:
    """``"heic"``, ``"heif"`` or ``"avif"`` when the first bytes (64 of them) are those of such
    a photo (an ISO media ``ftyp`` box naming its brand), else ``None``."""
    if head[4:8] != b"ftyp" or len(head) < 12:
        return None
    major = head[8:12]
    box = int.from_bytes(head[:4], "big")
    brands = [head[i : i + 4] for i in range(16, min(box, len(head)) - 3, 4)]
    if major in _AVIF_BRANDS:
        return "avif"
    if major in _HEIF_BRANDS:
        return "heic"
    if major in (b"mif1", b"msf1"):
        if any(b in _AVIF_BRANDS for b in brands):
            return "avif"
        return "heic" if any(b in _HEIF_BRANDS for b in brands) else "heif"
    return None


def _can_read(kind: str) -> bool:
    if importlib.util.find_spec("PIL") is None:
        return False
    if kind == "avif":
        from PIL import features

        return bool(features.check("avif"))
    return importlib.util.find_spec("pillow_heif") is not None


def not_readable(what: str, kind: str, *, prepare_on: bool) -> str:
    """Why a HEIC/HEIF or AVIF input is not sent, and what to do about it."""
    name = PHOTO_NAMES[kind]
    if not _can_read(kind):
        missing = "Pillow with AVIF support" if kind == "avif" else "pillow-heif"
        turn_on = "" if prepare_on else " and turn on prepare (prepare=True; cvekyc --prepare)"
        return (
            f"{what} is {name}, which the service does not read and which needs {missing} "
            f"to convert: install the images extra (pip install 'cvekyc-async[images]')"
            f"{turn_on}"
        )
    return (
        f"{what} is {name}, which the service does not read: turn on prepare "
        "(prepare=True on the client or the call; cvekyc --prepare) to send it as a JPEG"
    )


def sniff_format(head: bytes) -> str | None:
    """Name the file format from its first bytes.

    Returns:
        ``"jpeg"``, ``"png"``, ``"pdf"``, ``"webp"``, ``"bmp"`` or ``"tiff"``, or ``None``.
    """
    for magic, offset, name, _ in _MAGIC:
        if head[offset : offset + len(magic)] == magic and (name != "webp" or head[:4] == b"RIFF"):
            return name
    return None


def _check_format(
    head: bytes, what: str, *, allow_pdf: bool, size: int | None = None, photo_ok: bool = False
) -> str:
    fmt = sniff_format(head)
    if fmt is None and (kind := photo_format(head)) is not None:
        if photo_ok:
            return kind
        raise InvalidInputError(not_readable(what, kind, prepare_on=False))
    if fmt is None:
        # Described, never quoted: the file may be anything, a password file included.
        raise InvalidInputError(
            f"{what} is not a JPEG, PNG or PDF (nor WebP, BMP, TIFF): {describe_head(head, size)}"
        )
    if fmt == "pdf" and not allow_pdf:
        raise InvalidInputError(
            f"{what} is a PDF, which this endpoint does not take; use ocr_card() or extract_card()"
        )
    return fmt


# Longer than any file name a file system allows: such a "path" is data passed by mistake (a
# base64 string, a document's text), and a message never repeats data.
_PATH_SHOWN_MAX = 255


def _shown(path: os.PathLike[str] | str) -> str:
    text = os.fspath(path)
    if len(text) > _PATH_SHOWN_MAX or "\x00" in text:
        return f"<a path of {len(text):,} characters>"
    return repr(text)


def describe_input(value: object) -> str:
    """An input as reprs and messages may show it: paths, URLs without their query, data by
    its size."""
    if isinstance(value, ImageSource):
        return repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value):,} bytes>"
    if isinstance(value, str):
        return repr(_redact_url(value)) if _SCHEME_RE.match(value.strip()) else _shown(value)
    if isinstance(value, os.PathLike):
        return _shown(value)
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe_input(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    return f"<{type(value).__name__}>"


def _redact_url(url: str) -> str:
    # Signed URLs carry credentials in their query: show where it points, never the query.
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "<a URL that cannot be read>"
    return f"{parts.scheme}://{host}{parts.path}" + ("?..." if parts.query else "")


class Payload:
    """An input made ready to send: what goes in the request for one image field."""

    __slots__ = ("content_type", "data", "filename", "format_type")

    def __init__(
        self, format_type: FormatType, data: bytes | str, filename: str = "", content_type: str = ""
    ) -> None:
        self.format_type: FormatType = format_type
        self.data = data
        self.filename = filename
        self.content_type = content_type


class ImageSource:
    """One image (or PDF) to send, and how to send it.

    Build it with ``from_path``, ``from_bytes``, ``from_url`` or ``from_base64``. Plain ``str``,
    ``os.PathLike`` and ``bytes`` arguments are turned into one of these automatically.
    """

    __slots__ = ("_data", "_filename", "_kind", "_path", "_send_as", "_url", "_what")

    def __init__(self) -> None:
        # Use the from_* constructors; this only sets defaults.
        self._kind: Literal["path", "bytes", "url", "base64"] = "bytes"
        self._path: Path | None = None
        self._data: bytes | str = b""
        self._url = ""
        self._filename = ""
        self._send_as: Literal["file", "base64"] = "file"
        self._what = "image bytes"  # how messages name it

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        send_as: Literal["file", "base64"] = "file",
        filename: str | None = None,
    ) -> ImageSource:
        """An image or PDF file on disk, read only when its request is sent.

        Args:
            path: the file.
            send_as: ``"file"`` (multipart upload, the default and the smallest on the wire) or
                ``"base64"`` (JSON body).
            filename: name to give the upload; defaults to the file's own name.

        Raises:
            InvalidInputError: the path does not exist, is not a regular file, or is empty.
        """
        p = Path(path)
        try:
            st = p.stat()
        except FileNotFoundError:
            raise InvalidInputError(f"image file not found: {_shown(p)}") from None
        except OSError as exc:
            raise InvalidInputError(f"cannot read image file {_shown(p)}: {exc.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise InvalidInputError(f"{_shown(p)} is a directory, not an image file")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInputError(f"{_shown(p)} is not a regular file")
        if st.st_size == 0:
            raise InvalidInputError(f"image file {_shown(p)} is empty")
        _check_send_as(send_as)
        src = cls()
        src._kind = "path"
        src._path = p
        src._filename = filename or p.name
        src._send_as = send_as
        return src

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        send_as: Literal["file", "base64"] = "file",
        filename: str | None = None,
    ) -> ImageSource:
        """An image or PDF held in memory.

        Args:
            data: the file's bytes (JPEG, PNG, PDF; also WebP, BMP, TIFF).
            send_as: ``"file"`` (multipart, the default) or ``"base64"`` (JSON body).
            filename: name to give the upload; defaults to ``image.<ext>``.

        Raises:
            InvalidInputError: the bytes are empty or not a supported format.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInputError(f"from_bytes() takes bytes, not {type(data).__name__}")
        data = bytes(data)
        if not data:
            raise InvalidInputError("image bytes are empty")
        what = "image bytes" if not filename else f"image {_shown(filename)}"
        fmt = _check_format(data[:_SNIFF_LEN], what, allow_pdf=True, size=len(data), photo_ok=True)
        _check_send_as(send_as)
        src = cls()
        src._kind = "bytes"
        src._what = what
        src._data = data
        src._filename = filename or f"image.{'jpg' if fmt == 'jpeg' else fmt}"
        src._send_as = send_as
        return src

    @classmethod
    def from_url(cls, url: str) -> ImageSource:
        """A public ``http(s)`` URL the service downloads itself (``format_type=url``).

        Raises:
            InvalidInputError: the URL's scheme is not http or https, or it has no host.
        """
        if not isinstance(url, str):
            raise InvalidInputError(f"from_url() takes a str, not {type(url).__name__}")
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in ("http", "https"):
            scheme = parts.scheme or "(none)"
            raise InvalidInputError(
                f"URL scheme {scheme!r} is not supported: the service downloads only http(s) URLs"
            )
        if not parts.netloc:
            raise InvalidInputError(f"URL {_redact_url(url)!r} has no host")
        src = cls()
        src._kind = "url"
        src._url = url.strip()
        return src

    @classmethod
    def from_base64(cls, data: str | bytes) -> ImageSource:
        """An image already encoded as base64 (``format_type=base64``, JSON body).

        Line breaks (as ``base64.encodebytes`` writes them) and a ``data:...;base64,`` prefix are
        accepted and removed.

        Raises:
            InvalidInputError: the text is empty, not valid base64, or does not decode to a
                supported format.
        """
        if isinstance(data, (bytes, bytearray)):
            try:
                data = bytes(data).decode("ascii")
            except UnicodeDecodeError:
                raise InvalidInputError("base64 data holds non-ASCII bytes") from None
        if not isinstance(data, str):
            raise InvalidInputError(f"from_base64() takes str or bytes, not {type(data).__name__}")
        text = _DATA_URI_RE.sub("", "".join(data.split()), count=1)
        if not text:
            raise InvalidInputError("base64 data is empty")
        try:
            decoded_head = base64.b64decode(text[:88], validate=True)
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInputError(
                "base64 data is not valid base64 (only A-Z a-z 0-9 + / and = padding are allowed)"
            ) from None
        _check_format(decoded_head, "base64 data", allow_pdf=True, photo_ok=True)
        src = cls()
        src._kind = "base64"
        src._data = text
        src._send_as = "base64"
        return src

    @property
    def kind(self) -> Literal["path", "bytes", "url", "base64"]:
        """Where the image comes from: ``"path"``, ``"bytes"``, ``"url"`` or ``"base64"``."""
        return self._kind

    @property
    def format_type(self) -> FormatType:
        """The ``format_type`` this source is sent with: ``"file"``, ``"url"`` or ``"base64"``."""
        if self._kind == "url":
            return "url"
        return self._send_as

    def __repr__(self) -> str:
        if self._kind == "path":
            return f"ImageSource.from_path({_shown(self._path or '')})"
        if self._kind == "url":
            return f"ImageSource.from_url({_redact_url(self._url)!r})"
        if self._kind == "base64":
            return f"ImageSource.from_base64(<{len(self._data)} chars>)"
        return f"ImageSource.from_bytes(<{len(self._data)} bytes>)"

    def load(self, *, max_size: int = DEFAULT_MAX_FILE_SIZE, allow_pdf: bool = True) -> Payload:
        """Read and check the image, and return what its request carries.

        Args:
            max_size: largest accepted file, in bytes (base64 is measured decoded).
            allow_pdf: whether the endpoint takes PDFs.

        Raises:
            InvalidInputError: the file vanished or changed into something unreadable, is over
                ``max_size``, or is not a supported format.
        """
        if self._kind == "url":
            return Payload("url", self._url)
        if self._kind == "base64":
            text = self._data
            assert isinstance(text, str)
            size = len(text) * 3 // 4 - text.count("=", -2)
            head = base64.b64decode(text[:88])
            check_size(size, max_size, "base64 data", head=head)
            _check_format(head, "base64 data", allow_pdf=allow_pdf)
            return Payload("base64", text)
        data, what = self.read_bytes(max_size)
        return self.payload_of(data, what, max_size=max_size, allow_pdf=allow_pdf)

    def read_bytes(self, limit: int, hint: str = "") -> tuple[bytes, str]:
        """The file's bytes (base64 decoded) and how messages name it; not for URLs.

        Raises:
            InvalidInputError: the file cannot be read, is empty or is over ``limit`` bytes.
        """
        if self._kind == "path":
            assert self._path is not None
            return _read_file(self._path, limit, hint), f"image file {_shown(self._path)}"
        if self._kind == "base64":
            assert isinstance(self._data, str)
            text = self._data
            size = len(text) * 3 // 4 - text.count("=", -2)
            check_size(size, limit, "base64 data", hint, head=base64.b64decode(text[:88]))
            return base64.b64decode(text), "base64 data"
        assert isinstance(self._data, bytes)
        check_size(len(self._data), limit, self._what, hint, head=self._data[:16])
        return self._data, self._what

    def payload_of(
        self, data: bytes, what: str, *, max_size: int, allow_pdf: bool, renamed: str = ""
    ) -> Payload:
        """What a request carries for ``data``, this source's bytes or their prepared form
        (``renamed``: the suffix the upload's name takes then), checked as every input is.

        Raises:
            InvalidInputError: over ``max_size``, or not a format the endpoint takes.
        """
        check_size(len(data), max_size, what, head=data[:16])
        fmt = _check_format(data[:_SNIFF_LEN], what, allow_pdf=allow_pdf, size=len(data))
        if self._send_as == "base64":
            return Payload("base64", base64.b64encode(data).decode("ascii"))
        filename = self._filename
        if renamed:
            stem = filename.rsplit(".", 1)[0] if "." in filename else filename
            filename = (stem or "image") + renamed
        return Payload("file", data, filename, _MIME[fmt])


def _check_send_as(send_as: str) -> None:
    if send_as not in ("file", "base64"):
        raise InvalidInputError(f"send_as must be 'file' or 'base64', not {send_as!r}")


def check_size(size: int, max_size: int, what: str, hint: str = "", *, head: bytes = b"") -> None:
    """Refuse an input over ``max_size`` bytes, saying how to fix it (``hint``, or the
    client's ``max_file_size``); a PDF is said to be sent whole."""
    if size <= max_size:
        return
    if head.startswith(b"%PDF-"):
        raise InvalidInputError(
            f"{what} is a PDF of {size:,} bytes, over the {max_size:,}-byte limit: PDFs are "
            "sent whole (their pages are not rasterised or split here); split it into smaller "
            "PDFs, or raise max_file_size if the service takes more"
        )
    hint = hint or "raise it with max_file_size=..., or turn on prepare to downscale images"
    raise InvalidInputError(f"{what} is {size:,} bytes, over the {max_size:,}-byte limit ({hint})")


def _read_file(path: Path, max_size: int, hint: str = "") -> bytes:
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_size:
                check_size(size, max_size, f"image file {_shown(path)}", hint, head=fh.read(8))
            # Read by the size fstat gave, plus a byte to see whether it grew since: a read of
            # the cap itself would allocate (and fault in) a buffer of the cap for each file.
            # A file that grew, or one whose size fstat does not know (a pipe, /proc), is read
            # on, still to one byte past the cap.
            data = fh.read(size + 1)
            if len(data) > size:
                data += fh.read(max_size + 1 - len(data))
    except FileNotFoundError:
        raise InvalidInputError(f"image file not found: {_shown(path)}") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{_shown(path)} is a directory, not an image file") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read image file {_shown(path)}: {exc.strerror}") from None
    if len(data) > max_size:  # grew past the cap since fstat
        check_size(len(data), max_size, f"image file {_shown(path)}", hint, head=data[:8])
    if not data:
        raise InvalidInputError(f"image file {_shown(path)} is empty")
    return data


ImageInput = Union[str, "os.PathLike[str]", bytes, ImageSource]
"""What an image argument may be: a path, a URL, file bytes, or an ``ImageSource``."""


def as_source(value: ImageInput, what: str = "image") -> ImageSource:
    """Turn a plain argument into an ``ImageSource`` (see the module docstring for the rules).

    Raises:
        InvalidInputError: the argument is no image, path or URL that can be used.
    """
    try:
        return _as_source(value, what)
    except InvalidInputError:
        raise
    except (ValueError, TypeError) as exc:
        # A path with a NUL byte, a URL that does not parse, a PathLike that gives bytes...
        raise InvalidInputError(
            f"{what} is neither a usable path nor a URL ({type(exc).__name__})"
        ) from None


def _as_source(value: ImageInput, what: str) -> ImageSource:
    if isinstance(value, ImageSource):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ImageSource.from_bytes(bytes(value))
    if isinstance(value, str):
        m = _SCHEME_RE.match(value.strip())
        if m is not None:
            return ImageSource.from_url(value)
        if _DATA_URI_RE.match(value.lstrip()):
            return ImageSource.from_base64(value)  # a data: URI is base64, not a path
        if value.lstrip()[:5].lower() == "data:":
            raise InvalidInputError(
                f"{what} is a data: URI that is not base64; pass the image's bytes instead"
            )
        if not value:
            raise InvalidInputError(f"{what} path is empty")
        return ImageSource.from_path(value)
    if isinstance(value, os.PathLike):
        return ImageSource.from_path(value)
    raise InvalidInputError(
        f"{what} must be a path, a URL, bytes or an ImageSource, not {type(value).__name__}"
    )
