"""Reading batch outputs back: the record that counts for each input, over one output or the
parts of a sharded run, streamed.

Within one output the latest record of a key counts (as ``--resume`` reads it). Across parts,
an ok record wins over a failure, and among equals the later part wins (as ``cvekyc merge``
has always combined shards and reruns). A ``same_as`` record (an input whose bytes were read
under another key, not paid for again) takes the answer it shares.

Only a small index is held (per key: where its record lies, and whether it is ok); records are
read again from the files when they are used, so an output of any size is read in bounded
memory.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

__all__ = [
    "DOCUMENTED_TYPES",
    "SCHEMA_VERSION",
    "NotRecordsError",
    "RecordsChangedError",
    "Results",
    "cards_of",
    "complete_end",
    "key_of",
]

#: The version of the record format (see the README's "Batch records"); records without a
#: ``schema`` field were written before it was kept, and read as version 1.
SCHEMA_VERSION = 2

# The card types the API documents (API notes, "type" values).
DOCUMENTED_TYPES = frozenset(
    {
        "9_id_card_front",
        "9_id_card_back",
        "12_id_card_front",
        "12_id_card_back",
        "chip_id_card_front",
        "chip_id_card_back",
        "chip_id_card_2024_front",
        "chip_id_card_2024_back",
        "passport",
        "driving_license",
        "vehicle_registration_front",
        "vehicle_registration_back",
    }
)


class NotRecordsError(ValueError):
    """A file given as batch output holds something else (its first line is no record)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} holds something other than cvekyc batch records")
        self.path = path


_NULL = msgspec.Raw(b"null")


class RecordsChangedError(OSError):
    """A batch output changed (cut, replaced, rewritten) between its index and its reading:
    what was indexed is no longer what the file holds."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            errno.ESTALE,
            "it changed while it was read (a batch or merge is writing it?)",
            str(path),
        )


class _Head(msgspec.Struct):
    """What the index reads of a record: never its result."""

    key: Any = None
    input: Any = None
    ok: Any = None
    sha256: Any = None
    same_as: Any = None
    withdrawn: Any = None
    result: msgspec.Raw = msgspec.field(default_factory=lambda: _NULL)


_HEAD = msgspec.json.Decoder(_Head)
_RECORD = msgspec.json.Decoder(dict[str, Any])


def key_of(head: Any) -> str | None:
    """A record's key from its decoded head (``key``, or ``input`` in records older than keys)."""
    if isinstance(head.key, str):
        return head.key
    value = head.input  # records written before keys existed
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\t".join(value)
    return value if isinstance(value, str) else None


def complete_end(fh: BinaryIO, block: int = 65536) -> int:
    """The offset just past the file's last newline: a last line cut short by a kill is not
    read."""
    position = fh.seek(0, os.SEEK_END)
    while position > 0:
        start = max(0, position - block)
        fh.seek(start)
        chunk = fh.read(position - start)
        found = chunk.rfind(b"\n")
        if found >= 0:
            return start + found + 1
        position = start
    return 0


def _lines(fh: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of each complete line; a last line without its newline counts when it
    is a whole JSON value (one cut short by a kill is not)."""
    end = complete_end(fh)
    size = fh.seek(0, os.SEEK_END)
    if end < size:
        fh.seek(end)
        tail = fh.read()
        if _whole_json(tail):
            end = size
    fh.seek(0)
    offset = 0
    while offset < end:
        line = fh.readline()
        if not line:
            break
        yield offset, line
        offset += len(line)


def _whole_json(data: bytes) -> bool:
    try:
        msgspec.json.decode(data)
    except (msgspec.MsgspecError, RecursionError):
        return False
    return True


def _line_at(fh: BinaryIO, offset: int) -> bytes:
    fh.seek(offset)
    return fh.readline()


@dataclass(frozen=True, slots=True)
class _Place:
    part: int
    offset: int
    ok: bool
    shared: bytes | None  # a same_as record: a digest of the bytes it shares


class Results:
    """The record that counts for each key over batch outputs (``parts``, in order).

    Args:
        parts: JSONL outputs of ``cvekyc batch`` (or ``cvekyc merge``).

    Raises:
        NotRecordsError: a part holds something other than batch records.
        OSError: a part cannot be read.
    """

    def __init__(self, parts: Sequence[Path]) -> None:
        self.parts: list[Path] = []
        self._stats: list[tuple[int, int, int]] = []
        for part in map(Path, parts):
            info = part.stat()
            seen = (info.st_dev, info.st_ino, info.st_size)
            # The same file given twice (by any name) is read once.
            if not any(s[:2] == seen[:2] for s in self._stats):
                self.parts.append(part)
                self._stats.append(seen)
        self._index: dict[str, _Place] = {}
        # The latest ok record with an answer, by a digest of its bytes' SHA-256, of the answers
        # that same_as records share.
        self._answers: dict[bytes, tuple[int, int]] = {}
        #: Records read, every one (not only those that count).
        self.read = 0
        self._wanted: set[bytes] = set()
        self._skipped = 0
        for number in range(len(self.parts)):
            self._index_part(number)
        #: Lines that are not records (not JSON, or without a key), left out.
        self.unreadable = self._skipped
        if self._wanted:
            self._find_answers()

    def _heads(self, number: int) -> Iterator[tuple[int, str, _Head]]:
        """(offset, key, head) of each record of a part; what is no record is counted.

        Raises:
            NotRecordsError: the part's first line is no record.
        """
        part = self.parts[number]
        with part.open("rb") as fh:
            first = True
            for offset, line in _lines(fh):
                try:
                    head = _HEAD.decode(line)
                    # The whole record must read too (a number out of range, say, is only
                    # found by reading it): one that does not is no record, here as later.
                    _RECORD.decode(line)
                except (msgspec.MsgspecError, RecursionError):
                    head = None
                key = None if head is None else key_of(head)
                if head is None or key is None or not isinstance(head.ok, bool):
                    if first:
                        raise NotRecordsError(part)
                    self._skipped += 1
                    continue
                first = False
                yield offset, key, head

    def _index_part(self, number: int) -> None:
        latest: dict[str, _Place | None] = {}
        for offset, key, head in self._heads(number):
            self.read += 1
            if isinstance(head.withdrawn, str):
                # A lone side's record, withdrawn once its pair was sent: no input any more.
                latest[key] = None
                continue
            shared = _digest(head.sha256) if isinstance(head.same_as, str) else None
            if shared is not None:
                self._wanted.add(shared)
            latest[key] = _Place(number, offset, head.ok, shared)
        for key, place in latest.items():
            held = self._index.get(key)
            if place is None:
                if held is not None and not held.ok:
                    del self._index[key]
            elif held is None or place.ok or not held.ok:
                self._index[key] = place

    def _find_answers(self) -> None:
        """Where the answers that ``same_as`` records share lie: looked for only when there are
        such records, and only those (no index of every answer is held)."""
        for number in range(len(self.parts)):
            for offset, _, head in self._heads(number):
                if head.ok is True and not isinstance(head.same_as, str) and _has_answer(head):
                    digest = _digest(head.sha256)
                    if digest in self._wanted:
                        self._answers[digest] = (number, offset)

    def __len__(self) -> int:
        return len(self._index)

    @property
    def ok(self) -> int:
        """How many keys' records are ok."""
        return sum(place.ok for place in self._index.values())

    def keys(self) -> set[str]:
        return set(self._index)

    def lines(self) -> Iterator[bytes]:
        """The records that count, in the order their keys first appeared: as written, except
        that a ``same_as`` record carries the answer it shares (see ``records``), so that it
        stands on its own wherever it is copied.

        Raises:
            RecordsChangedError: a part changed since it was indexed.
        """
        encoder = msgspec.json.Encoder()
        for place, record, line in self._read():
            if place.shared is not None and self._share(record):
                yield encoder.encode(record) + b"\n"
            else:
                yield line if line.endswith(b"\n") else line + b"\n"

    def records(self) -> Iterator[dict[str, Any]]:
        """The records that count, decoded, in the order their keys first appeared. A
        ``same_as`` record carries the answer (``result``), verdict (``assessment``) and saved
        card images (``thumbnails``) it shares; it keeps ``billed: false`` (it was not paid for
        again).

        Raises:
            RecordsChangedError: a part changed since it was indexed.
        """
        for place, record, _ in self._read():
            if place.shared is not None:
                self._share(record)
            yield record

    def _read(self) -> Iterator[tuple[_Place, dict[str, Any], bytes]]:
        self._check_unchanged()
        handles: dict[int, BinaryIO] = {}
        try:
            for key, place in self._index.items():
                line = _line_at(self._handle(handles, place.part), place.offset)
                record = self._decode(line, place.part)
                if record.get("key", record.get("input")) not in (key, key.split("\t")):
                    raise RecordsChangedError(self.parts[place.part])
                yield place, record, line
        finally:
            for fh in handles.values():
                fh.close()
        self._check_unchanged()

    def _decode(self, line: bytes, part: int) -> dict[str, Any]:
        try:
            return _RECORD.decode(line)
        except (msgspec.MsgspecError, RecursionError):
            raise RecordsChangedError(self.parts[part]) from None

    def _share(self, record: dict[str, Any]) -> bool:
        """Fill a ``same_as`` record with what it shares; whether anything was found."""
        if record.get("result") is not None:
            return False
        shared = _digest(record.get("sha256"))
        found = None if shared is None else self._answers.get(shared)
        if found is None:
            return False
        with self.parts[found[0]].open("rb") as fh:
            source = self._decode(_line_at(fh, found[1]), found[0])
        for name in ("result", "assessment", "thumbnails"):
            if name in source:
                record[name] = source[name]
        return True

    def _check_unchanged(self) -> None:
        for part, seen in zip(self.parts, self._stats, strict=True):
            try:
                info = part.stat()
            except OSError:
                raise RecordsChangedError(part) from None
            # Records appended since (a batch still running) leave what was indexed in place.
            if (info.st_dev, info.st_ino) != seen[:2] or info.st_size < seen[2]:
                raise RecordsChangedError(part)

    def _handle(self, handles: dict[int, BinaryIO], part: int) -> BinaryIO:
        fh = handles.get(part)
        if fh is None:
            fh = handles[part] = self.parts[part].open("rb")
        return fh


def _digest(value: Any) -> bytes | None:
    """A short digest of a record's ``sha256`` text (one file's, or ``front+back`` for a
    pair), to find the record whose answer a ``same_as`` record shares."""
    if isinstance(value, str) and value:
        return hashlib.blake2b(value.encode("utf-8", "replace"), digest_size=16).digest()
    return None


def _has_answer(head: _Head) -> bool:
    return bytes(head.result).strip() not in (b"null", b"")


def cards_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The cards of a record's answer (none for a failure, or a record without an answer)."""
    result = record.get("result")
    if not isinstance(result, dict):
        return []
    cards = result.get("cards")
    return [c for c in cards if isinstance(c, dict)] if isinstance(cards, list) else []
