"""What ``cvekyc batch`` reads and writes: inputs from paths and manifests, shards, the JSONL
record of results, and resuming from it.

Every input has a key (its path or URL as given, or ``front<TAB>back`` for a pair) that names it
in the output file, in the shard split and on resume.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from ._batch import BatchResult
from ._errors import APIError, APIStatusError, CVError
from ._inputs import sniff_format
from .checks import Assessment

__all__ = [
    "Job",
    "ManifestError",
    "ResultLog",
    "Shard",
    "discover",
    "key_hash",
    "result_record",
]

_MANIFEST_SUFFIXES = {".csv", ".jsonl", ".ndjson"}
_SINGLE_COLUMNS = ("path", "url", "image", "img", "input", "file")
_IMAGE_FORMATS = {"jpeg", "png", "pdf", "webp", "bmp", "tiff"}


class ManifestError(ValueError):
    """A path or manifest cannot be read as inputs (a usage error: exit status 2)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One input of a batch: the value sent, and the key it is recorded under."""

    key: str
    value: Any  # a path or URL string, or a (front, back) pair of them


@dataclass(frozen=True, slots=True)
class Shard:
    """Part ``index`` (from 1) of ``count`` equal parts of a batch, split by key hash."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            left, right = text.split("/")
            shard = cls(int(left), int(right))
        except ValueError:
            raise ValueError(f"--shard takes K/N, such as 1/4, not {text!r}") from None
        if not 1 <= shard.index <= shard.count:
            raise ValueError(f"--shard {text}: K must be from 1 to N")
        return shard

    def __contains__(self, key: str) -> bool:
        return key_hash(key) % self.count == self.index - 1


def key_hash(key: str) -> int:
    """A stable 64-bit hash of an input key (the same on every machine and run)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _resolve(text: str, base: Path) -> str:
    if _is_url(text):
        return text
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else base / path)


def _sniffs_as_image(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return sniff_format(fh.read(16)) in _IMAGE_FORMATS
    except OSError:
        return False


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() not in _MANIFEST_SUFFIXES and _sniffs_as_image(path):
                yield path


def _row_job(row: dict[str, Any], pairs: bool, base: Path, where: str) -> Job:
    lowered = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    if pairs:
        front, back = lowered.get("front"), lowered.get("back")
        if not isinstance(front, str) or not isinstance(back, str) or not front or not back:
            raise ManifestError(f"{where}: --endpoint cards needs 'front' and 'back' columns")
        f, b = _resolve(front.strip(), base), _resolve(back.strip(), base)
        return Job(f"{f}\t{b}", (f, b))
    for column in _SINGLE_COLUMNS:
        value = lowered.get(column)
        if isinstance(value, str) and value.strip():
            text = _resolve(value.strip(), base)
            return Job(text, text)
    raise ManifestError(f"{where}: no path or url ({', '.join(_SINGLE_COLUMNS)})")


def _csv_jobs(path: Path, pairs: bool) -> Iterator[Job]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        first = fh.readline()
        header = [c.strip().lower() for c in next(csv.reader([first]), [])]
        known = set(_SINGLE_COLUMNS) | {"front", "back"}
        if not known.intersection(header):
            # No header: the first column is the input (or the first two, a pair).
            fh.seek(0)
            for n, cells in enumerate(csv.reader(fh), 1):
                if not cells or not "".join(cells).strip():
                    continue
                if pairs:
                    if len(cells) < 2:
                        raise ManifestError(f"{path}:{n}: a pair needs two columns")
                    row = {"front": cells[0], "back": cells[1]}
                else:
                    row = {"path": cells[0]}
                yield _row_job(row, pairs, path.parent, f"{path}:{n}")
            return
        reader = csv.DictReader(fh, fieldnames=header)
        for n, row in enumerate(reader, 2):
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            yield _row_job(row, pairs, path.parent, f"{path}:{n}")


def _jsonl_jobs(path: Path, pairs: bool) -> Iterator[Job]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except ValueError:
                raise ManifestError(f"{where}: not JSON") from None
            if isinstance(obj, str):
                obj = {"path": obj}
            elif isinstance(obj, list) and pairs and len(obj) == 2:
                obj = {"front": obj[0], "back": obj[1]}
            if not isinstance(obj, dict):
                raise ManifestError(f"{where}: expected a string or an object")
            yield _row_job(obj, pairs, path.parent, where)


def discover(sources: list[str], *, pairs: bool) -> Iterator[Job]:
    """The jobs named by command-line arguments, lazily, in order.

    Args:
        sources: files, directories (searched recursively for images and PDFs by content),
            URLs, and manifests (``.csv``, ``.jsonl``).
        pairs: whether inputs are (front, back) pairs (``--endpoint cards``): they can only
            come from manifests.

    Raises:
        ManifestError: an argument that does not exist or a manifest line that cannot be read.
    """
    for source in sources:
        if _is_url(source):
            if pairs:
                raise ManifestError(f"{source}: --endpoint cards takes pairs from a manifest")
            yield Job(source, source)
            continue
        path = Path(source).expanduser()
        if path.is_dir():
            if pairs:
                raise ManifestError(f"{source}: --endpoint cards takes pairs from a manifest")
            for found in _walk(path):
                yield Job(str(found), str(found))
        elif path.is_file() and path.suffix.lower() == ".csv":
            yield from _csv_jobs(path, pairs)
        elif path.is_file() and path.suffix.lower() in (".jsonl", ".ndjson"):
            yield from _jsonl_jobs(path, pairs)
        elif path.is_file():
            if pairs:
                raise ManifestError(f"{source}: --endpoint cards takes pairs from a manifest")
            yield Job(str(path), str(path))
        else:
            raise ManifestError(f"{source}: no such file or directory")


def _error_record(error: CVError) -> dict[str, Any]:
    record: dict[str, Any] = {"type": type(error).__name__, "message": error.message}
    if isinstance(error, APIError):
        record["error_code"] = error.error_code
    if isinstance(error, (APIError, APIStatusError)):
        record["status_code"] = error.status_code
    return record


def result_record(
    job: Job, result: BatchResult, assessment: Assessment | None = None
) -> dict[str, Any]:
    """The JSONL record of one finished input, with the trust checks' verdict when it was read."""
    value = job.value
    return {
        "input": list(value) if isinstance(value, tuple) else value,
        "ok": result.ok,
        "result": None if result.result is None else result.result.to_dict(),
        "error": None if result.error is None else _error_record(result.error),
        "attempts": result.attempts,
        "elapsed": round(result.elapsed, 4),
        "billed": result.billed,
        "assessment": assessment,
    }


class _RecordInput(msgspec.Struct):
    input: Any = None


_RECORD_INPUT = msgspec.json.Decoder(_RecordInput)


def _end_of_last_line(fh: BinaryIO, block: int = 65536) -> int:
    """The offset just past the file's last newline (0 if it has none)."""
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


class ResultLog:
    """The JSONL output file: one line per finished input, appended and flushed as each ends.

    The file is created readable by its owner only (it holds personal data). Each line goes out
    in one ``write`` on an ``O_APPEND`` descriptor, so a process killed at any moment leaves at
    most one partial last line, which ``open(resume=True)`` cuts off (that input is sent again).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._encoder = msgspec.json.Encoder()
        self.done: set[int] = set()  # key hashes of inputs already recorded
        self.recorded = 0

    def open(self, *, resume: bool, overwrite: bool) -> None:
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and not (resume or overwrite):
            raise ManifestError(
                f"{self.path} already holds results: add --resume to continue it, or "
                "--overwrite to start again"
            )
        if exists and resume:
            self._load()
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        if overwrite and not resume:
            flags |= os.O_TRUNC
        self._fd = os.open(self.path, flags, 0o600)
        os.fchmod(self._fd, 0o600)

    def _load(self) -> None:
        # Streamed line by line, reading only each record's input: an output of millions of
        # results is resumed without holding it in memory.
        with self.path.open("r+b") as fh:
            end = _end_of_last_line(fh)
            if end < fh.seek(0, os.SEEK_END):  # a line cut short by a kill: its input goes again
                fh.truncate(end)
            fh.seek(0)
            for line in fh:
                try:
                    value = _RECORD_INPUT.decode(line).input
                except msgspec.MsgspecError:
                    continue
                key = "\t".join(value) if isinstance(value, list) else value
                if isinstance(key, str):
                    self.done.add(key_hash(key))

    def is_done(self, job: Job) -> bool:
        return key_hash(job.key) in self.done

    def write(self, job: Job, result: BatchResult, assessment: Assessment | None = None) -> None:
        line = self._encoder.encode(result_record(job, result, assessment)) + b"\n"
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.recorded += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
