"""What messages and reprs may show of data that can be personal.

Card data (names, ID numbers, dates, addresses, images) is personal data under Decree
13/2023/ND-CP. It must never reach an exception message, a log line or a ``repr()``, since error
trackers and log pipelines store those. This module describes such data instead of quoting it:
masked field values for reprs, and a description (kind, size, title) for bodies and files.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from http import HTTPStatus
from typing import Any

__all__ = [
    "HIDE_IMAGE_URLS",
    "describe_body",
    "describe_head",
    "is_known_text",
    "mask_value",
    "masked_fields",
    "masked_text",
    "safe_name",
    "safe_token",
]

# Fields whose value is a document number: shown with its first third and last digits, the way
# card numbers are masked on receipts, so two reprs can still be told apart.
_NUMBER_FIELDS = frozenset({"id", "person_number", "document_number"})
_TITLE_RE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_TITLE_MAX = 60
# Words with their combining marks (text in decomposed form keeps its diacritics apart).
_WORD_RE = re.compile(r"[\w\u0300-\u036f]+")
# A plain name starts with a letter and holds no long run of digits (an ID number is no name).
_NAME_RE = re.compile(r"(?!.*\d{6})[A-Za-z0-9][A-Za-z0-9_]{0,47}")
_DIGITS_RE = re.compile(r"[0-9]{6}")
_TOKEN_RE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,40}(/[A-Za-z0-9!#$&^_.+-]{1,60})?")


def safe_name(text: object, fallback: str) -> str:
    """``text`` when it is a plain identifier (a card type, a field name), else ``fallback``:
    names come from the service, and a hostile one could carry anything."""
    return text if isinstance(text, str) and _NAME_RE.fullmatch(text) else fallback


def safe_token(text: str, fallback: str) -> str:
    """``text`` when it is an HTTP token or media type (``gzip``, ``text/html``) with no long
    run of digits (which could be an ID number), else ``fallback``."""
    text = text.strip()
    return text if _TOKEN_RE.fullmatch(text) and not _DIGITS_RE.search(text) else fallback


def _mask_number(text: str) -> str:
    front = len(text) // 3
    back = 2 if len(text) >= 12 else 1
    if len(text) < 6:
        return "*" * len(text)
    return text[:front] + "*" * (len(text) - front - back) + text[len(text) - back :]


def _mask_text(text: str) -> str:
    # Each word keeps its first letter (not a digit) and its length: enough to see that a
    # field was read, not enough to read it.
    def word(m: re.Match[str]) -> str:
        w = m.group(0)
        keep = w[0] if w[0].isalpha() else "*"
        return keep + "*" * (len(w) - 1)

    return _WORD_RE.sub(word, unicodedata.normalize("NFC", text))


def _numbers(value: Any, bound: float) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return -bound <= value <= bound  # a long number could be an ID number
    return isinstance(value, list) and len(value) <= 8 and all(_numbers(v, bound) for v in value)


def mask_value(field: str, value: Any) -> str:
    """The repr of a card field's value with its personal content masked.

    Confidences and boxes (numbers about the reading, not about the person) are shown when they
    are numbers; the thumbnail by its size; text masked; anything else by its type.
    """
    if (field.endswith("_confidence") or field == "confidence") and _numbers(value, 1.0):
        return repr(value)
    if field.endswith("_box") and _numbers(value, 100_000.0):
        return repr(value)
    if field == "image":
        return f"<{len(value)} base64 chars>" if isinstance(value, str) else "<image>"
    if isinstance(value, str):
        if field in _NUMBER_FIELDS:
            return repr(_mask_number(value))
        return repr(_mask_text(value))
    if value is None or isinstance(value, bool):
        return repr(value)
    return f"<{type(value).__name__}>"


# Formats users send by mistake, named so the message says what the file is.
_KNOWN_HEADS: tuple[tuple[bytes, int, str], ...] = (
    (b"GIF8", 0, "a GIF image"),
    (b"PK\x03\x04", 0, "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", 0, "gzip-compressed data"),
    (b"ftypheic", 4, "a HEIC photo"),
    (b"ftypheix", 4, "a HEIC photo"),
    (b"ftypmif1", 4, "a HEIF photo"),
    (b"ftypavif", 4, "an AVIF image"),
    (b"ftyp", 4, "a video or ISO media file"),
    (b"\x00\x00\x01\x00", 0, "an icon file"),
)


def describe_head(head: bytes, size: int | None = None) -> str:
    """Say what a file that is not an accepted image looks like, without quoting it.

    Args:
        head: its first bytes (16 are enough).
        size: its size in bytes, when known.
    """
    sized = f"{size:,} bytes, " if size is not None else ""
    for magic, offset, name in _KNOWN_HEADS:
        if head[offset : offset + len(magic)] == magic:
            return f"{sized}{name}"
    stripped = head.lstrip()
    if stripped[:1] == b"<":
        return f"{sized}starting like HTML or XML"
    if stripped[:1] in (b"{", b"["):
        return f"{sized}starting like JSON"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # The head may cut a multi-byte character: judge by what decodes.
        text = head.decode("utf-8", "ignore")
        if len(text) < len(head) // 2:
            return f"{sized}binary data of no image format"
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"{sized}starting with text"
    return f"{sized}binary data of no image format"


# The words of error pages' titles (gateways, proxies, CDNs, web servers): a title made of these,
# status codes and punctuation only is shown; any other could carry anything (a name, a number).
_TITLE_WORDS = frozenset(
    {phrase.lower() for status in HTTPStatus for phrase in status.phrase.replace("-", " ").split()}
    | {
        "access", "attention", "cloudflare", "denied", "error", "gateway", "http", "nginx",
        "openresty", "apache", "iis", "envoy", "haproxy", "varnish", "upstream", "origin",
        "temporarily", "time", "out", "timeout", "page", "server", "service", "site", "the",
        "is", "are", "we", "be", "back", "soon", "down", "maintenance", "under", "please", "try",
        "again", "later", "blocked", "just", "a", "moment", "request", "rejected", "connection",
        "refused", "reset", "host", "web", "unreachable", "unavailable", "aws", "elb", "cdn",
    }
)  # fmt: skip
_TITLE_WORD_RE = re.compile(r"[A-Za-z]+|\b[0-9]{3}\b")
_TITLE_REST_RE = re.compile(r"[\s.,:;!|()/\-]*")  # no digits: a longer number is no status


def _is_error_page_title(title: str) -> bool:
    if len(title) > _TITLE_MAX:
        return False
    words = _TITLE_WORD_RE.findall(title)
    if not all(w.isdigit() or w.lower() in _TITLE_WORDS for w in words):
        return False
    return _TITLE_REST_RE.fullmatch(_TITLE_WORD_RE.sub("", title)) is not None


def describe_body(body: bytes, content_type: str) -> str:
    """Describe an answer body for an error message: its content type, its length and, for an
    HTML page (a proxy's error page), its title; never its content."""
    media = content_type.split(";")[0].strip()
    shown = safe_token(media, "an unreadable content type") if media else "no content type"
    parts = [shown, f"{len(body):,} bytes"]
    if b"<" in body[:1024]:
        match = _TITLE_RE.search(body[:4096])
        if match is not None:
            title = " ".join(match.group(1).decode("utf-8", "replace").split())
            if title:
                parts.append(f"title {title!r}" if _is_error_page_title(title) else "an HTML page")
    return ", ".join(parts)


def masked_fields(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, masked repr) for a repr: names that are not plain identifiers are not shown."""
    return [(safe_name(k, "<field>"), mask_value(k, v)) for k, v in fields.items()]


def is_known_text(text: str, known: tuple[str, ...]) -> bool:
    """Whether ``text`` is one of the ``known`` texts: case and spacing aside, nothing more
    than one of them (a known text with more around it could carry anything)."""
    folded = " ".join(text.lower().split()).strip(" .")
    return folded in known


def masked_text(text: str | None, known: tuple[str, ...] = ()) -> str:
    """The repr of a text the service sent: shown when it is one of the ``known`` texts, else
    only its length."""
    if text is None or text == "":
        return repr(text)
    if is_known_text(text, known):
        return repr(text)
    return f"<{len(text)} chars>"


class _ImageURLFilter(logging.Filter):
    """Hides the query of this client's URL requests in httpx's own log lines.

    An image given by URL travels in the query of a GET (``?img=...&format_type=url``), signed
    tokens and all; httpx logs every request's URL at INFO, which a web backend's logging
    shows. Requests of this client are recognised by ``format_type=url`` in the query.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(_is_image_url(a) for a in args):
            record.args = tuple(_without_query(a) if _is_image_url(a) else a for a in args)
        return True


def _is_image_url(value: object) -> bool:
    query = getattr(value, "query", None)
    return isinstance(query, bytes) and b"format_type=url" in query


def _without_query(url: Any) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}?<image URL hidden>"


#: Added to the ``httpx`` logger when a client sends through a caller's ``http_client``.
HIDE_IMAGE_URLS = _ImageURLFilter()
