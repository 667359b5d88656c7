"""Ground truth embedded in specimen images, and what the emulator reads off any image.

A specimen carries its documents as JSON behind a marker, in a JPEG comment, a PNG text chunk or
a comment line per page after a PDF's end. An image without one gets a synthetic card derived from
its hash, so any picture gets a stable answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from ._fake import card_truth, fake_person

__all__ = [
    "MARKER",
    "Document",
    "encode_truth",
    "read_documents",
    "synthetic_documents",
]

MARKER = b"CVEKYC-TRUTH:"
_MARKER_RE = re.compile(rb"CVEKYC-TRUTH:([A-Za-z0-9+/=]+);")

Document = dict[str, Any]
"""One document as the service reports it: ``type``, ``info``, ``valid``, ``invalidMessage``,
and, for the emulator's own use, ``box`` (where it lies in the image)."""

_VALIDATED_TYPES = {
    "9_id_card_front",
    "12_id_card_front",
    "chip_id_card_front",
    "9_id_card_back",
    "12_id_card_back",
    "chip_id_card_back",
    "passport",
}


def encode_truth(documents: list[Document]) -> bytes:
    """The marker and payload to embed in an image (one per page for a PDF)."""
    payload = base64.b64encode(json.dumps(documents, ensure_ascii=False).encode())
    return MARKER + payload + b";"


_MAX_PAGES = 64


def _valid(doc: object) -> bool:
    """A document the emulator can report: a type, an info object, a box of four numbers."""
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        return False
    if not isinstance(doc.get("info"), dict):
        return False
    box = doc.get("box")
    return box is None or (
        isinstance(box, list)
        and len(box) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
    )


def read_documents(data: bytes) -> list[list[Document]] | None:
    """The documents embedded in ``data``, one list per page; ``None`` when there are none.

    At most 64 pages are read, and a marker that does not hold well-formed documents is passed
    over: an upload can carry anything.
    """
    if MARKER not in data:
        return None
    pages: list[list[Document]] = []
    for match in _MARKER_RE.finditer(data):
        if len(pages) == _MAX_PAGES:
            break
        try:
            docs = json.loads(base64.b64decode(match.group(1)))
        except (ValueError, RecursionError):
            continue
        if isinstance(docs, list):
            pages.append([d for d in docs if _valid(d)])
    return pages or None


def _seed(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def synthetic_documents(data: bytes, kinds: tuple[str, ...]) -> list[Document]:
    """Deterministic fake cards for an image without ground truth, one per kind."""
    person = fake_person(_seed(data))
    docs = []
    for kind in kinds:
        doc: Document = {"type": kind, "info": card_truth(kind, person)}
        if kind in _VALIDATED_TYPES:
            doc["valid"] = "True"
            doc["invalidMessage"] = "Successful"
        docs.append(doc)
    return docs
